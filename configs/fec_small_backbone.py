# FEC-Small as a bare backbone (no detector or segmentor around it), for looking at its
# cluster maps, e.g. with the official ImageNet weights:
#
#   python tools/visualize_clusters.py configs/fec_small_backbone.py \
#       checkpoints/fec_small_imagenet.pth IMAGE.jpg --out-dir vis
#
# What such a config needs: `custom_imports` (registers FEC) and `model = dict(type='FEC',
# ...)` with the settings the weights were trained with. Optional: `data_preprocessor`
# (mean/std/bgr_to_rgb; ImageNet statistics when absent) and a `test_pipeline` whose
# `Resize` sets the size images are fed at (their own size when absent). A detector or
# segmentor checkpoint also loads here: its `backbone.*` weights are used.
custom_imports = dict(imports=['mmfec'], allow_failed_imports=False)

model = dict(
    type='FEC',
    arch='small',
    proposal_sizes=(4, 4, 2, 2),  # the paper's ImageNet setting (224x224 inputs)
    fold_sizes=1,
    out_indices=(0, 1, 2, 3))

# The statistics FEC was pre-trained with on ImageNet (RGB, 0-255 scale).
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)

# ImageNet's test resolution: the short side to 224 (long side at most 1024), ratio kept.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1024, 224), keep_ratio=True),
]
