# FEC-Large image classifier on ImageNet-1k: configs/fec_small_in1k.py with the Large
# architecture (channels 64, 128, 320, 512; the head reads 512).
_base_ = ['./fec_small_in1k.py']

model = dict(backbone=dict(arch='large'), head=dict(in_channels=512))
