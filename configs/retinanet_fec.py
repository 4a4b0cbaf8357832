# RetinaNet + FPN with an FEC-Small backbone, COCO 2017, 1x schedule (12 epochs).
# As MMDetection's RetinaNet configs for PVT/Swin: the FPN starts from the stride-8
# stage (stages 1-3 of the backbone) and adds P6/P7 by convs on that input
# (add_extra_convs='on_input' from the RetinaNet base). Optimisation as maskrcnn_fec.py.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

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
        proposal_sizes=7,
        fold_sizes=(2, 2, 1, 1),
        out_indices=(1, 2, 3),  # only what the FPN reads, so no parameter is unused
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fec_small_imagenet.pth')),
    neck=dict(in_channels=[64, 196, 320], start_level=0, num_outs=5))

# 16 images per iteration (4 GPUs x 4 images); see maskrcnn_fec.py.
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 9, 11],
         gamma=0.2)
]
