"""FEC as an MMPretrain classifier: the configs build the paper's classifier, train a step
(fp32 and bf16 autocast), and the official release's ImageNet files load unchanged.

The official file is a stand-in with the release's key layout (``patch_embed.*``,
``network.*``, ``norm.*``, ``head.*``) and random values; the logits it must give are
computed here from the paper's definition (last stage -> GroupNorm(1, C) -> mean over
height and width -> Linear), independently of mmpretrain's parts.
"""
import logging
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint
from tool_utils import ROOT

import mmfec  # noqa: F401  (registers FEC and FECImageClassifier)
from mmfec.apis import build_model
from mmfec.models import FEC
from mmfec.models.backbones.fec_checkpoint_check import CheckpointMismatchError

pytestmark = pytest.mark.usefixtures('one_thread')
CONFIGS = {'small': 'fec_small_in1k.py', 'base': 'fec_base_in1k.py',
           'large': 'fec_large_in1k.py'}
# Parameters of the released ImageNet checkpoints (shared/paper_numbers.md).
RELEASED_PARAMS_M = {'small': 5.73, 'base': 15.09, 'large': 29.72}


def _config(name):
    return Config.fromfile(str(ROOT / 'configs' / name))


def _classifier(arch='small', **head):
    cfg = _config(CONFIGS[arch])
    cfg.model.head.update(head)
    return build_model(cfg)


def _official_state_dict(arch='small', num_classes=1000, seed=0):
    """Random weights in the official release's ImageNet layout."""
    torch.manual_seed(seed)
    backbone = FEC(arch=arch, out_indices=(3, ))
    for param in backbone.parameters():
        param.data.normal_(0, 0.05)
    width = backbone.embed_dims[-1]
    state = OrderedDict((k, v) for k, v in backbone.state_dict().items()
                        if not k.startswith('norm'))
    state['norm.weight'] = 1 + 0.1 * torch.randn(width)
    state['norm.bias'] = 0.1 * torch.randn(width)
    state['head.weight'] = 0.05 * torch.randn(num_classes, width)
    state['head.bias'] = 0.05 * torch.randn(num_classes)
    return state


def _paper_logits(state, x, arch='small'):
    """The release's classifier on ``x``: stem and stages, GroupNorm with one group,
    global average pool, Linear."""
    net = FEC(arch=arch, out_indices=(3, ))
    net.load_state_dict({k: v for k, v in state.items() if k.startswith(('patch_embed',
                                                                         'network'))},
                        strict=False)
    net.eval()
    with torch.no_grad():
        y = net.patch_embed(x)
        for stage in net.network:
            y = stage(y)
        y = F.group_norm(y, 1, state['norm.weight'], state['norm.bias'], eps=1e-5)
        return F.linear(y.mean((2, 3)), state['head.weight'], state['head.bias'])


@pytest.mark.parametrize('arch', sorted(CONFIGS))
def test_config_builds_the_papers_classifier_with_the_released_parameter_count(arch):
    model = _classifier(arch)
    assert type(model).__name__ == 'FECImageClassifier'
    assert model.backbone.out_indices == (3, )
    assert type(model.neck).__name__ == 'GlobalAveragePooling'
    assert model.head.fc.out_features == 1000
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == RELEASED_PARAMS_M[arch]


def test_small_config_has_the_release_recipe():
    cfg = _config('fec_small_in1k.py')
    assert cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.flat_decay_mult == 0.0
    assert cfg.train_dataloader.batch_size * 4 == cfg.auto_scale_lr.base_batch_size == 1024
    warmup, cosine = cfg.param_scheduler
    assert (warmup.start_factor * cfg.optim_wrapper.optimizer.lr, warmup.end) == (1e-6, 5)
    assert (cosine.eta_min, cosine.end, cfg.train_cfg.max_epochs) == (1e-6, 300, 310)
    resize, crop = cfg.test_dataloader.dataset.pipeline[1:3]
    assert (resize.scale, resize.interpolation, crop.crop_size) == (248, 'bicubic', 224)
    augment = [t for t in cfg.train_pipeline if t['type'] == 'RandAugment'][0]
    assert (augment.magnitude_level, augment.magnitude_std) == (9, 0.5)
    erasing = [t for t in cfg.train_pipeline if t['type'] == 'RandomErasing'][0]
    assert erasing.erase_prob == 0.25


def _train_step(model, autocast_dtype=None):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    inputs = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i) for i in (3, 7)]
    model.train()
    data = model.data_preprocessor(dict(inputs=list(inputs), data_samples=samples), True)
    with torch.autocast('cpu', dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    loss.backward()
    return loss


@pytest.mark.parametrize('dtype', [None, torch.bfloat16], ids=['fp32', 'bf16'])
def test_small_classifier_trains_a_step_with_mixup_cutmix_and_label_smoothing(dtype):
    model = _classifier('small')
    assert model.data_preprocessor.batch_augments is not None  # Mixup / CutMix
    loss = _train_step(model, dtype)
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.head.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('wrapping', ['plain', 'state_dict', 'model'])
def test_official_checkpoint_loads_unchanged_and_gives_the_papers_logits(tmp_path, wrapping,
                                                                           caplog):
    state = _official_state_dict()
    saved = {'plain': state, 'state_dict': {'state_dict': state},
             'model': {'model': state}}[wrapping]
    path = tmp_path / 'fec_small.pth'
    torch.save(saved, path)
    model = _classifier('small')
    with caplog.at_level(logging.INFO, logger='mmengine'):
        load_checkpoint(model, str(path), map_location='cpu', strict=True)
    model.eval()
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x, mode='tensor')
    expected = _paper_logits(state, x)
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_official_checkpoint_of_another_arch_fails_naming_both_archs(tmp_path):
    path = tmp_path / 'fec_base.pth'
    torch.save(_official_state_dict('base'), path)
    with pytest.raises(CheckpointMismatchError, match=r'FEC-Base.*FEC-Small'):
        load_checkpoint(_classifier('small'), str(path), map_location='cpu')


def test_detector_checkpoint_in_a_classifier_fails_and_says_how_to_use_it(tmp_path):
    state = OrderedDict(('backbone.' + k, v) for k, v in _official_state_dict().items()
                        if not k.startswith(('norm', 'head')))
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 32, 1, 1)
    state['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 1024)
    path = tmp_path / 'maskrcnn.pth'
    torch.save({'state_dict': state}, path)
    with pytest.raises(CheckpointMismatchError, match=r"detector.*prefix='backbone\.'"):
        load_checkpoint(_classifier('small'), str(path), map_location='cpu')


def test_head_of_another_number_of_classes_stays_at_init_for_fine_tuning(tmp_path):
    path = tmp_path / 'fec_small.pth'
    state = _official_state_dict()
    torch.save(state, path)
    model = _classifier('small', num_classes=5)
    head_before = model.head.fc.weight.detach().clone()
    load_checkpoint(model, str(path), map_location='cpu')
    assert torch.equal(model.head.fc.weight, head_before)
    assert torch.equal(model.backbone.norm6.weight, state['norm.weight'])
    assert torch.equal(model.backbone.patch_embed.proj.weight,
                       state['patch_embed.proj.weight'])


def test_official_classifier_file_still_initialises_a_detection_backbone(tmp_path):
    path = tmp_path / 'fec_small.pth'
    state = _official_state_dict()
    torch.save(state, path)
    backbone = FEC(arch='small', proposal_sizes=7, fold_sizes=(2, 2, 1, 1),
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    assert torch.equal(backbone.network[6][1].mlp.fc2.weight,
                       state['network.6.1.mlp.fc2.weight'])


def test_a_users_config_inherits_the_fine_tuning_config_through_mmfec_bases(tmp_path):
    config = tmp_path / 'my_classifier.py'
    config.write_text(
        "_base_ = 'mmfec::fec/fec_small_custom_finetune.py'\n"
        "num_classes = 12\n"
        "model = dict(head=dict(num_classes=num_classes))\n"
        "data_preprocessor = dict(num_classes=num_classes)\n"
        "train_dataloader = dict(dataset=dict(data_root='/data/my_images'))\n")
    cfg = Config.fromfile(str(config))
    assert cfg.train_dataloader.dataset.type == 'CustomDataset'
    assert cfg.train_dataloader.dataset.data_root == '/data/my_images'
    assert cfg.model.init_cfg.type == 'Pretrained'
    assert build_model(cfg).head.fc.out_features == 12


def test_import_mmfec_works_without_mmpretrain():
    """Detection/segmentation users need not install the `cls` extra."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['mmpretrain'] = None\n"  # as if not installed
            "import mmfec\n"
            "from mmdet.registry import MODELS\n"
            "assert 'FEC' in MODELS.module_dict\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]
