# Mask R-CNN + FPN with an FEC-Large backbone, COCO 2017, 1x: as maskrcnn_fec.py
# (FEC-Small) but with the Large depths and widths. Weights:
# checkpoints/fec_large_imagenet.pth.
_base_ = './maskrcnn_fec.py'

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fec_large_imagenet.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
