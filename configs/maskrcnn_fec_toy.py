# Demo: FEC-Small Mask R-CNN trained from scratch on the synthetic toy COCO set
# (data/toy_coco, made by `python tools/make_toy_data.py`: 128x128 images with red
# discs = 'sports ball', green triangles = 'kite', blue squares = 'tv').
# It inherits the real COCO config and changes only the data, the image scale, the
# schedule and a lighter head (FPN/RoI widths, sampled RoIs), so that 2 CPU cores
# train it in minutes. Measured AP and time: detection/README.md.
_base_ = './maskrcnn_fec.py'

data_root = 'data/toy_coco/'
# In COCO category-id order (37, 38, 72): mmdet numbers the labels in id order.
metainfo = dict(classes=('sports ball', 'kite', 'tv'))
image_scale = (128, 128)  # the toy images' own size
num_classes = 3
width = 64  # FPN and head channels (256 for COCO)

model = dict(
    backbone=dict(init_cfg=None),  # no pretrained weights offline: train from scratch
    neck=dict(out_channels=width),
    rpn_head=dict(
        in_channels=width,
        feat_channels=width,
        # objects are 20-56 px: anchors 24/48/96/... px instead of 32/64/128/...
        anchor_generator=dict(scales=[6])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# 200 images / 4 per batch = 50 iterations per epoch.
max_epochs = 2
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 1], gamma=0.2)
]
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)  # the same numbers on every run of the demo (same machine)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
