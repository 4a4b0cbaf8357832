# FEC-Small image classifier on ImageNet-1k (224x224), the recipe of the paper's code
# release (timm's train.py): AdamW lr 1e-3 at 1024 images per iteration (4 GPUs x 256),
# weight decay 0.05 (none on norms, biases and other 1-D parameters), 5 warm-up epochs from
# 1e-6, cosine to 1e-6 at epoch 300 then 10 epochs at 1e-6 (timm's cooldown), RandAugment
# m9 mstd0.5 increasing, random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1,
# drop path 0.1; test: short side to 248 (crop_pct 0.9, bicubic), centre crop 224.
# Train with --amp (the release used native AMP). Where MMPretrain's parts differ from
# timm's: classification/README.md, "Recipe".
#
# Data: data/imagenet/{train,val}/<wnid>/*.JPEG (classification/README.md).
#   python tools/train.py configs/fec_small_in1k.py --amp
#   python tools/test.py configs/fec_small_in1k.py checkpoints/fec_small_imagenet.pth
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
# Long runs (docs/long_runs.md): RNG states in checkpoints, checkpoints written whole or not
# at all (--resume passes over a damaged one), exact resume with any number of data workers,
# a checkpoint on SIGTERM/SIGUSR1, a one-line error naming a bad image (or skip them:
# train_cfg.bad_samples='skip').
custom_hooks = [dict(type='RNGStateHook'), dict(type='PreemptionHook'),
                dict(type='UnusedOutputsHook')]

model = dict(
    # MMPretrain's ImageClassifier that also reads the official release's checkpoints
    # (patch_embed.*, network.*, norm.*, head.*) as downloaded.
    type='FECImageClassifier',
    backbone=dict(
        type='FEC',
        arch='small',
        proposal_sizes=(4, 4, 2, 2),  # the paper's ImageNet setting
        fold_sizes=1,
        out_indices=(3, ),  # the last stage, through its GroupNorm (official `norm`)
        drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=320,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# The release's evaluation: short side to int(224 / 0.9) = 248, bicubic, centre crop 224.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# 4 GPUs x 256 images = 1024 per iteration; with other GPU counts keep 1024, or pass
# --auto-scale-lr (linear in the total batch, base 1024).
train_dataloader = dict(batch_size=256)
val_dataloader = dict(batch_size=256, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=1e-3))  # AdamW, wd 0.05, no decay on 1-D params
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),  # 1e-6 -> 1e-3 over 5 epochs
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=300,
         convert_to_iter_based=True),
]  # epochs 300-310 stay at 1e-6 (timm's 10 cooldown epochs)
train_cfg = dict(_delete_=True, type='ExactEpochBasedTrainLoop', max_epochs=310, val_interval=10)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=3,
                                     save_best='auto'))
