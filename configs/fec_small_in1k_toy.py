# Demo: an FEC-Small classifier trained from scratch on the toy ImageNet-layout set, on a CPU.
#
#   python tools/make_toy_data.py                          # writes data/toy_imagenet (seconds)
#   python tools/train.py configs/fec_small_in1k_toy.py    # trains, then evaluates toy val
#   python tools/test.py configs/fec_small_in1k_toy.py work_dirs/fec_small_in1k_toy/epoch_12.pth
#
# It is configs/fec_small_in1k.py with what 4 classes of 64-pixel images and a CPU need:
# MMPretrain's CustomDataset (classes from the folder names), 64-pixel crops, a short
# schedule, no batch augments (Mixup/CutMix slow down a 12-epoch run) and no drop path.
# Measured results: classification/README.md.
_base_ = ['./fec_small_in1k.py']

data_root = 'data/toy_imagenet'
num_classes = 4  # disc, ring, square, triangle: one folder each under train/ and val/
max_epochs = 12

model = dict(
    backbone=dict(drop_path_rate=0.),
    head=dict(num_classes=num_classes),
    train_cfg=None)
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=71, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),  # crop_pct 0.9, as in the ImageNet config
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 2))  # top-2 of 4 classes
test_evaluator = val_evaluator
auto_scale_lr = dict(base_batch_size=16)

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
