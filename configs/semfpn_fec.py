# Semantic FPN with an FEC-Small backbone on ADE20K, 512x512 crops, 80k iterations.
#
# Train:  python tools/train.py configs/semfpn_fec.py
# Test:   python tools/test.py configs/semfpn_fec.py CHECKPOINT        (prints mIoU)
# 8 GPUs: tools/dist_train.sh configs/semfpn_fec.py 8  (see segmentation/README.md)
#
# Everything not set here comes unchanged from MMSegmentation 1.x: the FPN model, the
# ADE20K data pipelines (random resize of (2048, 512) x 0.5-2.0, crop 512 with
# cat_max_ratio 0.75, flip, photometric distortion; test at (2048, 512) keep ratio), the
# runtime and the 80k schedule (evaluation and checkpoint every 8k iterations).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
# Long runs (docs/long_runs.md): RNG states in checkpoints, checkpoints written whole or not
# at all (--resume passes over a damaged one), exact resume with any number of data workers
# that skips trained batches by index (no replay), a checkpoint on SIGTERM/SIGUSR1, and a
# one-line error naming a bad image (or skip them: train_cfg.bad_samples='skip').
# UnusedOutputsHook: one line at the first step if the neck leaves an FEC output unread.
custom_hooks = [dict(type='RNGStateHook'), dict(type='PreemptionHook'),
                dict(type='UnusedOutputsHook')]
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
train_cfg = dict(type='ExactIterBasedTrainLoop')

crop_size = (512, 512)
# Training batches are padded to the crop size (as in every mmseg config). Testing has
# no padding at all: with test_cfg=None the preprocessor only stacks the image, so the
# backbone sees the resized image as it is (FEC needs no multiple of 32).
data_preprocessor = dict(size=crop_size, test_cfg=None)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # the base's ResNet weights; FEC loads its own through init_cfg
    backbone=dict(
        _delete_=True,
        type='FEC',
        arch='small',
        proposal_sizes=(10, 10, 5, 5),  # the paper's ADE20K setting
        fold_sizes=1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/fec_small_imagenet.pth')),
    neck=dict(in_channels=[32, 64, 196, 320]),
    decode_head=dict(num_classes=150))

# The paper's optimisation: AdamW lr 1e-4, weight decay 1e-4, poly decay (power 0.9) to 0.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=80000, by_epoch=False)
]

# 16 images per iteration in total, as the paper (4 GPUs x 4). On another number of GPUs
# keep the total at 16 (8 GPUs: train_dataloader.batch_size=2) or pass --auto-scale-lr,
# which scales lr by (GPUs x batch_size) / 16.
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# FEC's clustering poolings assign points by a hard arg-max, so their similarity convs
# (backbone.network.{1,3,5}.conv_f) get no gradient, and DDP must be told. Written as a
# wrapper config (not the top-level find_unused_parameters) so that tools/train.py's
# CPU/gloo set-up, which builds its own wrapper config, keeps it too.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True, broadcast_buffers=False)
