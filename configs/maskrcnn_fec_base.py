# Mask R-CNN + FPN with an FEC-Base backbone, COCO 2017, 1x: as maskrcnn_fec.py
# (FEC-Small) but with the Base widths. Weights: checkpoints/fec_base_imagenet.pth.
_base_ = './maskrcnn_fec.py'

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fec_base_imagenet.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
