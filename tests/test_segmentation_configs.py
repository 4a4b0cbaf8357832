"""Every segmentation config in configs/ builds its model and runs forward passes.

No data and no pretrained weights are needed: ``init_cfg`` is set to None. Inference
uses an image whose sides are not multiples of 32, goes through the config's own data
preprocessor, and must reach the backbone unpadded.
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData

import mmfec  # noqa: F401  (registers FEC)
from mmfec.datasets.checks import check_data_exists

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
EXPECTED = ('semfpn_fec.py', 'semfpn_fec_base.py', 'semfpn_fec_large.py',
            'semfpn_fec_toy.py')
ODD_SIZE = (70, 101)  # inference image: neither side a multiple of 32


def _load_segmentation_configs():
    found = {}
    for path in sorted(CONFIGS.glob('*.py')):
        cfg = Config.fromfile(str(path))
        if cfg.get('default_scope') == 'mmseg':
            found[path.name] = cfg
    return found


_LOADED = _load_segmentation_configs()  # parsed once: mmseg:: bases are slow to resolve
SEG_CONFIGS = sorted(_LOADED)


def _config(name):
    return copy.deepcopy(_LOADED[name])


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def _build(name):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = _config(name)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def test_all_segmentation_configs_found():
    assert set(EXPECTED) <= set(SEG_CONFIGS), SEG_CONFIGS


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_config_builds_and_runs(name):
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    cfg, model = _build(name)
    assert type(model.backbone).__name__ == 'FEC'
    num_classes = cfg.model.decode_head.num_classes

    # training forward + backward on a tiny batch (tensors straight to the model: the
    # config's preprocessor would pad them to the full crop size)
    model.train()
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, 64, 64), dtype=torch.long))
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(sample)
    losses = model(torch.randn(2, 3, 64, 64), samples, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None

    # inference through the config's preprocessor on a non-multiple-of-32 image
    model.eval()
    seen = []
    handle = model.backbone.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    image = torch.randint(0, 256, (3, *ODD_SIZE), dtype=torch.uint8)
    meta = dict(img_shape=ODD_SIZE, ori_shape=ODD_SIZE, scale_factor=(1.0, 1.0))
    data = dict(inputs=[image], data_samples=[SegDataSample(metainfo=meta)])
    with torch.no_grad():
        result = model.test_step(data)[0]
    handle.remove()
    assert seen == [ODD_SIZE], f'backbone saw {seen}, not the unpadded {ODD_SIZE} image'
    pred = result.pred_sem_seg.data
    assert tuple(pred.shape[-2:]) == ODD_SIZE
    assert int(pred.min()) >= 0 and int(pred.max()) < num_classes


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_no_padding_at_test_time(name):
    preprocessor = _config(name).model.data_preprocessor
    assert not preprocessor.get('test_cfg'), \
        'test_cfg pads test images (size/size_divisor); FEC needs no padding'


def test_main_config_matches_paper_settings():
    cfg = _config('semfpn_fec.py')
    backbone = cfg.model.backbone
    assert backbone.type == 'FEC' and backbone.arch == 'small'
    assert tuple(backbone.proposal_sizes) == (10, 10, 5, 5) and backbone.fold_sizes == 1
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint='checkpoints/fec_small_imagenet.pth')
    assert list(cfg.model.neck.in_channels) == [32, 64, 196, 320]
    assert cfg.model.decode_head.num_classes == 150
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    assert cfg.custom_imports == dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 1e-4)
    assert 'momentum' not in optimizer
    [poly] = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 0.0, 80000)
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (80000, 8000)
    assert cfg.default_hooks.checkpoint.interval == 8000
    assert cfg.train_dataloader.batch_size * 4 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    resize = cfg.test_dataloader.dataset.pipeline[1]
    assert (resize.type, tuple(resize.scale), resize.keep_ratio) == \
        ('Resize', (2048, 512), True)


@pytest.mark.parametrize('name, arch, channels, checkpoint', [
    ('semfpn_fec_base.py', 'base', [64, 128, 320, 512], 'checkpoints/fec_base_imagenet.pth'),
    ('semfpn_fec_large.py', 'large', [64, 128, 320, 512],
     'checkpoints/fec_large_imagenet.pth'),
])
def test_variants(name, arch, channels, checkpoint):
    cfg = _config(name)
    assert cfg.model.backbone.arch == arch
    assert list(cfg.model.neck.in_channels) == channels
    assert cfg.model.backbone.init_cfg.checkpoint == checkpoint
    assert tuple(cfg.model.backbone.proposal_sizes) == (10, 10, 5, 5)


def test_missing_ade20k_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/ade/ADEChallengeData2016 does not exist here
    with pytest.raises(FileNotFoundError) as error:
        check_data_exists(str(CONFIGS / 'semfpn_fec.py'))
    message = str(error.value)
    for needle in ('data/ade/ADEChallengeData2016', 'images/training',
                   'annotations/validation', 'ADEChallengeData2016.zip',
                   'python tools/make_toy_data.py', 'data/toy_ade20k'):
        assert needle in message, message
