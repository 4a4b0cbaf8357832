# Mask R-CNN + FPN with an FEC-Small backbone, COCO 2017, 1x schedule (12 epochs).
# Only what FEC needs differs from MMDetection's ResNet-50 config: the backbone, the
# FPN input widths and the paper's optimisation (AdamW, x0.2 steps at 8/9/11).
# Data: data/coco/ in COCO 2017 layout (see detection/README.md).
# Weights: the official FEC-Small ImageNet checkpoint at checkpoints/fec_small_imagenet.pth.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# mmfec registers FEC; mmfec.engine registers RNGStateHook, which stores the RNG states in
# each checkpoint so that --resume continues exactly like an uninterrupted run, and
# UnusedOutputsHook, which reports in one line an FEC output the neck never reads.
custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
custom_hooks = [dict(type='RNGStateHook'), dict(type='PreemptionHook'),
                dict(type='UnusedOutputsHook')]
# Long runs (docs/long_runs.md): checkpoints written whole or not at all (--resume passes
# over a damaged one), exact and fast resume with any number of data workers, a checkpoint
# on SIGTERM/SIGUSR1, and a one-line error naming a bad image (or skip: bad_samples='skip').
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
train_cfg = dict(type='ExactEpochBasedTrainLoop')

model = dict(
    backbone=dict(
        _delete_=True,
        type='FEC',
        arch='small',
        proposal_sizes=7,  # 7x7 cluster centers per region in every stage
        fold_sizes=(2, 2, 1, 1),  # stages 1-2 cluster within 2x2 regions
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fec_small_imagenet.pth')),
    neck=dict(in_channels=[32, 64, 196, 320]))

# Paper: 4 GPUs x 4 images = 16 images per iteration. With another number of GPUs,
# keep 16 by changing batch_size, or pass --auto-scale-lr to scale lr linearly
# with (GPUs x batch_size) / base_batch_size.
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 9, 11],
         gamma=0.2)
]
