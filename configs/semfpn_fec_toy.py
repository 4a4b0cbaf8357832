# Demo: FEC-Small Semantic FPN trained from scratch on the toy ADE20K set, on a CPU.
#
#   python tools/make_toy_data.py                     # writes data/toy_ade20k (seconds)
#   python tools/train.py configs/semfpn_fec_toy.py   # trains, then evaluates toy val
#   python tools/test.py configs/semfpn_fec_toy.py work_dirs/semfpn_fec_toy/iter_100.pth
#
# It is configs/semfpn_fec.py with what a 4-class, 128-pixel data set and a CPU need:
# no pretrained weights (nothing to download), plain BN (SyncBN cannot sync on a CPU),
# small crops, a larger learning rate, a short schedule and fewer cluster centers.
# Validation images keep their own sizes (90-224 pixels, none a multiple of 32) and are
# neither resized nor padded. Measured results: segmentation/README.md.
_base_ = ['./semfpn_fec.py']

data_root = 'data/toy_ade20k'
classes = ('wall', 'building', 'sky', 'floor')  # labels 1..4 on disk; 0 is ignored
palette = [[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50]]  # ADE20K's
crop_size = (96, 96)
max_iters = 100
norm_cfg = dict(type='BN', requires_grad=True)

data_preprocessor = dict(size=crop_size, test_cfg=None)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        # 96-pixel crops give 24, 12, 6 and 3 pixel maps: the ADE20K setting (10, 10, 5, 5)
        # would have more centers than points in the last stages.
        proposal_sizes=(4, 4, 2, 2),
        init_cfg=None),
    decode_head=dict(num_classes=len(classes), norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # the val images' scales (90-224 px) around the 128-px training images
    dict(type='RandomResize', scale=(128, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=dict(classes=classes, palette=palette),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=8)

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=10, by_epoch=False),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=10, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
