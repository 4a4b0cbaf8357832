# Semantic FPN with an FEC-Base backbone on ADE20K: configs/semfpn_fec.py with the Base
# architecture (channels 64, 128, 320, 512) and its ImageNet checkpoint.
_base_ = ['./semfpn_fec.py']

model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='checkpoints/fec_base_imagenet.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
