"""Where a user would meet PyTorch's raw errors, FEC says what is wrong and what to change:
a checkpoint of another arch, ``in_channels`` or task, images with another number of
channels, and outputs the neck never reads (DDP's unused parameters)."""
import logging
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

import mmfec  # noqa: F401  (registers FEC, the safe loader and mmfec:: bases)
from mmfec.engine import UnusedOutputsHook
from mmfec.models import FEC
from mmfec.models.backbones.fec_checkpoint_check import CheckpointMismatchError, infer_fec_arch
from mmfec.utils import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
MAX_MESSAGE = 1000  # "a few lines" (PyTorch's dump for Small -> Base: 34,702 characters)


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def _save(tmp_path, payload, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(payload, path)
    return str(path)


def _init(arch, checkpoint, **kwargs):
    model = FEC(arch, init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                                    **kwargs.pop('init', {})), **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('arch, layers, dims', [
    ('small', (3, 4, 5, 2), (32, 64, 196, 320)),
    ('base', (2, 2, 6, 2), (64, 128, 320, 512)),
    ('large', (4, 4, 12, 4), (64, 128, 320, 512)),
])
def test_arch_is_read_from_the_widths(arch, layers, dims):
    inferred = infer_fec_arch(FEC(arch).state_dict())
    assert inferred['layers'] == layers and inferred['embed_dims'] == dims
    assert inferred['in_channels'] == 3


def test_small_checkpoint_into_base_names_both_archs(tmp_path):
    path = _save(tmp_path, {'state_dict': FEC('small').state_dict()})
    with pytest.raises(CheckpointMismatchError) as error:
        _init('base', path)
    message = str(error.value)
    assert len(message) < MAX_MESSAGE, message
    assert 'holds FEC-Small (layers 3, 4, 5, 2; embed dims 32, 64, 196, 320)' in message
    assert "this backbone is FEC-Base (arch='base'" in message
    assert "Set arch='small'" in message and path in message
    assert isinstance(error.value, CheckpointError)  # the tools print it as `error: ...`


def test_detector_checkpoint_of_another_arch_fails_in_load_from_too(tmp_path):
    """mmengine's own (non-strict) load, as load_from / tools/test.py use it: the
    mismatch is an error, not a warning followed by a model with random weights."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.runner import load_checkpoint
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'maskrcnn_fec_toy.py'))
    small = MODELS.build(cfg.model)
    path = _save(tmp_path, {'state_dict': small.state_dict(), 'meta': {}})
    cfg.model.backbone.arch = 'large'
    cfg.model.neck.in_channels = [64, 128, 320, 512]
    large = MODELS.build(cfg.model)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)FEC-Small.*FEC-Large \(arch='large'"
                       r".*backbone\.patch_embed\.proj\.weight") as error:
        load_checkpoint(large, path, map_location='cpu')
    assert len(str(error.value)) < MAX_MESSAGE


def test_checkpoint_of_other_in_channels_names_in_channels(tmp_path):
    path = _save(tmp_path, FEC('small', in_channels=1).state_dict())
    with pytest.raises(CheckpointMismatchError,
                       match=r'trained on 1-channel images .* in_channels=3\. Set the '
                             r"backbone's in_channels=1"):
        _init('small', path)


def test_detector_checkpoint_without_prefix_says_prefix(tmp_path):
    detector = OrderedDict(('backbone.' + k, v) for k, v in FEC('small').state_dict().items())
    detector['rpn_head.rpn_cls.weight'] = torch.zeros(3, 64, 1, 1)
    path = _save(tmp_path, {'state_dict': detector})
    with pytest.raises(CheckpointMismatchError,
                       match=r"whole model .*backbone\.\*, rpn_head\.\*.*FEC-Small.*add "
                             r"prefix='backbone\.'"):
        _init('small', path)


def test_backbone_checkpoint_with_a_prefix_says_drop_it(tmp_path):
    path = _save(tmp_path, {'model': FEC('base').state_dict()})
    with pytest.raises(CheckpointMismatchError,
                       match=r"no keys starting with prefix 'backbone\.': it is a backbone-only"
                             r" .*FEC-Base.*drop `prefix`"):
        _init('base', path, init={'prefix': 'backbone.'})


def test_checkpoint_of_another_model_says_it_is_not_fec(tmp_path):
    from mmdet.models.backbones import ResNet
    path = _save(tmp_path, ResNet(depth=18).state_dict())
    with pytest.raises(CheckpointMismatchError,
                       match=r'holds no FEC backbone weights.*conv1\.\*, bn1\.\*, layer1\.\*'):
        _init('small', path)


def test_images_with_other_channels_name_in_channels():
    with pytest.raises(ValueError, match=r"in_channels=3 .* \(1, 4, 64, 64\).*set the "
                                         r"backbone's in_channels=4"):
        FEC('small')(torch.zeros(1, 4, 64, 64))


def test_tools_print_an_image_error_as_one_line(capsys):
    from mmfec.utils.cli import USAGE_EXIT_CODE, user_errors
    with pytest.raises(SystemExit) as exit_:
        with user_errors():
            FEC('small')(torch.zeros(1, 1, 64, 64))
    assert exit_.value.code == USAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert err.startswith('error: FEC was built with in_channels=3')


def test_in_channels_other_than_three_works():
    outs = FEC('small', in_channels=1)(torch.zeros(1, 1, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64, 196, 320]


# ------------------------------------------------------------------ unused outputs
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = _Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _retinanet_step(model):
    from mmdet.testing import demo_mm_inputs
    data = model.data_preprocessor(demo_mm_inputs(1, [(3, 64, 64)], num_items=[2],
                                                  num_classes=80), True)
    losses = model(**data, mode='loss')
    sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
        for k, v in losses.items() if k.startswith('loss')).backward()


def test_forward_alone_checks_nothing(warnings_logged):
    """The diagnostic is a hook's job: FEC.forward itself reports nothing."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'retinanet_fec.py'))
    cfg.model.backbone.update(init_cfg=None, out_indices=(0, 1, 2, 3))
    cfg.model.neck.update(in_channels=[32, 64, 196, 320], start_level=1)
    model = MODELS.build(cfg.model).train()
    _retinanet_step(model)
    assert not [m for m in warnings_logged if m.startswith('FEC: the neck reads no output')]


def test_neck_that_skips_stage_0_is_reported_once_with_the_fix(warnings_logged):
    """mmdet's RetinaNet FPN (start_level=1) on all four outputs: norm0 gets no gradient."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'retinanet_fec.py'))
    cfg.model.backbone.update(init_cfg=None, out_indices=(0, 1, 2, 3))
    cfg.model.neck.update(in_channels=[32, 64, 196, 320], start_level=1)
    model = MODELS.build(cfg.model).train()
    hook = UnusedOutputsHook()
    for step in range(2):  # what a Runner does: the hook before each step
        hook.before_train_iter(SimpleNamespace(model=model), step)
        _retinanet_step(model)
    reports = [m for m in warnings_logged if m.startswith('FEC: the neck reads no output')]
    assert len(reports) == 1 and '\n' not in reports[0]
    assert 'stage(s) 0, so norm0 got no gradient' in reports[0]
    assert "out_indices=(1, 2, 3) with the neck's in_channels=[64, 196, 320]" in reports[0]
    assert model.backbone.norm0.weight.grad is None  # what the warning is about


def test_shipped_retinanet_config_is_not_reported(warnings_logged):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'retinanet_fec.py'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).train()
    UnusedOutputsHook().before_train_iter(SimpleNamespace(model=model), 0)
    _retinanet_step(model)
    assert not [m for m in warnings_logged if m.startswith('FEC: the neck reads no output')]
    assert all(p.grad is not None for n, p in model.backbone.named_parameters()
               if p.requires_grad and n.startswith('norm'))


@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT / 'configs').glob('*.py')
                                        if p.name != 'fec_small_backbone.py'))
def test_every_shipped_neck_reads_every_backbone_output(name):
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    backbone, neck = cfg.model.backbone, cfg.model.neck
    dims = FEC.arch_settings[backbone.arch]['embed_dims']
    if neck.type == 'GlobalAveragePooling':  # a classifier: its head reads the one output
        assert len(backbone.out_indices) == 1
        assert cfg.model.head.in_channels == dims[backbone.out_indices[0]]
        return
    assert neck.get('start_level', 0) == 0
    assert neck.get('end_level', -1) == -1
    assert list(neck.in_channels) == [dims[i] for i in backbone.out_indices]
