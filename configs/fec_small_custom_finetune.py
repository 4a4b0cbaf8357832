# Fine-tune a released FEC-Small ImageNet classifier on your own images: one sub-folder
# per class, any number of classes (MMPretrain's CustomDataset; labels follow the sorted
# folder names). The head is re-initialised for your classes; everything else starts from
# the ImageNet weights.
#
#   data/my_images/train/<class>/*.jpg     data/my_images/val/<class>/*.jpg
#   python tools/train.py configs/fec_small_custom_finetune.py \
#       --cfg-options num_classes=... (or copy this file and set num_classes, data_root)
#
# A starting point, not a tuned recipe: the ImageNet augmentation, AdamW at lr 1e-4 for a
# batch of 64, 30 epochs with 1 warm-up epoch. Guide: classification/README.md, "Your own
# images".
_base_ = ['./fec_small_in1k.py']

data_root = 'data/my_images'
num_classes = 10  # the number of class folders under train/
max_epochs = 30

model = dict(
    # The official file (or a checkpoint of configs/fec_small_in1k.py) as downloaded: its
    # 1000-class head does not fit and is left at its init, with a one-line warning.
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fec_small_imagenet.pth'),
    head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

train_dataloader = dict(
    batch_size=64,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
auto_scale_lr = dict(base_batch_size=64)

optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
