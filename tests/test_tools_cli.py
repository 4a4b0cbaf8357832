"""Fast checks of tools/train.py and tools/test.py: arguments, scope, errors.

No training here: user mistakes must give one ``error: ...`` line and exit
code 2, and the tools must tell mmdet configs from mmseg ones.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from tool_utils import load_tool

from mmfec.utils.cli import UsageError, detect_scope, setup_cpu_distributed

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / 'tools'


def _load_tool(name):
    return load_tool(f'{name}.py')


train_tool = _load_tool('train')
test_tool = _load_tool('test')


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)],
                          cwd=cwd,
                          capture_output=True,
                          text=True,
                          timeout=120,
                          env={**os.environ, 'PYTHONWARNINGS': 'ignore'})


def _assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), result.stderr
    for needle in needles:
        assert needle in last, last


# ------------------------------------------------------------------ --help
@pytest.mark.parametrize('tool, options', [
    ('train.py', ['--work-dir', '--resume', '--amp', '--auto-scale-lr',
                  '--cfg-options', '--launcher', '--local_rank']),
    ('test.py', ['--work-dir', '--out', '--show', '--show-dir', '--wait-time',
                 '--cfg-options', '--launcher', '--tta']),
])
def test_help(tool, options):
    result = _run(TOOLS / tool, '--help')
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout


def test_arguments_match_mmdet():
    args = train_tool.parse_args(['c.py', '--resume', '--local-rank', '1'])
    assert args.resume == 'auto' and args.local_rank == 1
    args = train_tool.parse_args(['c.py', '--resume', 'x.pth', '--cfg-options',
                                  'a.b=1', 'c=[1,2]'])
    assert args.resume == 'x.pth'
    assert args.cfg_options == {'a.b': 1, 'c': [1, 2]}
    args = test_tool.parse_args(['c.py', 'x.pth', '--show-dir', 'vis'])
    assert (args.checkpoint, args.show_dir, args.wait_time,
            args.launcher) == ('x.pth', 'vis', 2, 'none')


# --------------------------------------------------------- one-line errors
def test_missing_config_train(tmp_path):
    result = _run(TOOLS / 'train.py', tmp_path / 'nope.py')
    _assert_one_line_error(result, 'nope.py', 'does not exist')


def test_missing_config_test(tmp_path):
    result = _run(TOOLS / 'test.py', tmp_path / 'nope.py', 'x.pth')
    _assert_one_line_error(result, 'nope.py')


def test_missing_checkpoint(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text("default_scope = 'mmdet'\nmodel = dict(type='X')\n")
    result = _run(TOOLS / 'test.py', config, tmp_path / 'missing.pth')
    _assert_one_line_error(result, 'missing.pth', 'does not exist')
    result = _run(TOOLS / 'train.py', config, '--resume',
                  tmp_path / 'missing.pth')
    _assert_one_line_error(result, 'missing.pth', 'does not exist')


def test_broken_config(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text('model = dict(type=\n')
    result = _run(TOOLS / 'train.py', config)
    _assert_one_line_error(result, 'cannot read config', 'cfg.py')


# ---------------------------------------------------------- scope detection
@pytest.mark.parametrize('cfg, scope', [
    (dict(default_scope='mmdet', model=dict(type='EncoderDecoder')), 'mmdet'),
    (dict(default_scope='mmseg'), 'mmseg'),
    (dict(model=dict(type='FasterRCNN')), 'mmdet'),
    (dict(model=dict(type='RetinaNet', backbone=dict(type='FEC'))), 'mmdet'),
    (dict(model=dict(type='EncoderDecoder')), 'mmseg'),
    (dict(model=dict(type='mmseg.EncoderDecoder')), 'mmseg'),
    (dict(model=dict(type='mmdet.MaskRCNN')), 'mmdet'),
    (dict(default_scope='mmpretrain'), 'mmpretrain'),
    (dict(model=dict(type='FECImageClassifier')), 'mmpretrain'),
])
def test_detect_scope(cfg, scope):
    assert detect_scope(cfg) == scope
    assert detect_scope(Config(cfg)) == scope


@pytest.mark.parametrize('cfg, message', [
    (dict(default_scope='mmocr'), 'not supported'),
    (dict(model=dict(type='NoSuchModel')), 'none of mmdet, mmseg, mmpretrain registers'),
    (dict(train_cfg=dict()), 'neither default_scope nor model.type'),
])
def test_detect_scope_errors(cfg, message):
    with pytest.raises(UsageError, match=message):
        detect_scope(cfg)


# ------------------------------------------- command line folded into config
def _train_args(*argv):
    return train_tool.parse_args(['configs/x.py', *argv])


def _test_args(*argv, checkpoint):
    return test_tool.parse_args(['configs/x.py', str(checkpoint), *argv])


def test_train_options(tmp_path):
    cfg = train_tool.apply_args(Config(dict()), _train_args('--resume'))
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == os.path.join('./work_dirs', 'x')
    with pytest.raises(UsageError, match='--resume'):
        train_tool.apply_args(
            Config(dict()), _train_args('--resume', str(tmp_path / 'no.pth')))
    with pytest.raises(UsageError, match='auto_scale_lr'):
        train_tool.apply_args(Config(dict()), _train_args('--auto-scale-lr'))
    cfg = train_tool.apply_args(
        Config(dict(auto_scale_lr=dict(enable=False, base_batch_size=16))),
        _train_args('--auto-scale-lr', '--work-dir', str(tmp_path)))
    assert cfg.auto_scale_lr.enable is True and cfg.work_dir == str(tmp_path)


def test_amp_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(train_tool, '_has_accelerator', lambda: False)
    with pytest.raises(UsageError, match='--amp needs a GPU'):
        train_tool.apply_args(
            Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
            _train_args('--amp'))
    monkeypatch.setattr(train_tool, '_has_accelerator', lambda: True)
    cfg = train_tool.apply_args(
        Config(dict(optim_wrapper=dict(type='OptimWrapper'))),
        _train_args('--amp'))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'


def _test_cfg():
    return Config(
        dict(
            default_hooks=dict(visualization=dict(type='X')),
            visualizer=dict(type='V'),
            test_evaluator=dict(type='IoUMetric'),
            test_dataloader=dict(dataset=dict(pipeline=[dict(type='A')])),
            model=dict(type='M')))


def test_show_dir_uses_the_task_hook(tmp_path):
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    args = _test_args('--show-dir', 'vis', checkpoint=ckpt)
    det = test_tool.apply_args(_test_cfg(), args, 'mmdet')
    assert det.default_hooks.visualization.test_out_dir == 'vis'
    assert det.default_hooks.visualization.draw is True
    assert det.load_from == str(ckpt)
    seg = test_tool.apply_args(_test_cfg(), args, 'mmseg')
    assert seg.visualizer.save_dir == 'vis'
    assert seg.default_hooks.visualization.interval == 1
    cfg = _test_cfg()
    del cfg.default_hooks['visualization']
    with pytest.raises(UsageError, match='SegVisualizationHook'):
        test_tool.apply_args(cfg, args, 'mmseg')


def test_out_and_tta_per_task(tmp_path):
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(UsageError, match='.pkl'):
        test_tool.apply_args(
            _test_cfg(), _test_args('--out', 'r.json', checkpoint=ckpt),
            'mmdet')
    seg = test_tool.apply_args(
        _test_cfg(), _test_args('--out', 'preds', checkpoint=ckpt), 'mmseg')
    assert seg.test_evaluator.output_dir == 'preds'
    with pytest.raises(UsageError, match='tta_model and tta_pipeline'):
        test_tool.apply_args(_test_cfg(),
                             _test_args('--tta', checkpoint=ckpt), 'mmseg')
    with pytest.warns(UserWarning):
        det = test_tool.apply_args(
            _test_cfg(), _test_args('--tta', checkpoint=ckpt), 'mmdet')
    assert det.model.type == 'DetTTAModel' and det.model.module.type == 'M'


def test_cpu_distributed_needs_gloo(monkeypatch):
    """mmengine's pytorch launcher calls torch.cuda.set_device, which fails
    without a GPU; the tools start gloo themselves, or explain the option."""
    from mmengine.device import get_device
    if get_device() != 'cpu':
        pytest.skip('this machine has an accelerator')
    cfg = Config(dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict())))
    with pytest.raises(UsageError, match='env_cfg.dist_cfg.backend=gloo'):
        setup_cpu_distributed(cfg)
    import torch.distributed as dist
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)  # no group
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    setup_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', device_ids=None)
    setup_cpu_distributed(Config(dict(launcher='none')))  # no-op


def test_dist_scripts_usage():
    for script in ('dist_train.sh', 'dist_test.sh', 'torchrun.sh'):
        result = subprocess.run(['bash', str(TOOLS / script)],
                                capture_output=True,
                                text=True)
        assert result.returncode == 2
        assert 'usage:' in result.stderr
        if script != 'torchrun.sh':
            text = (TOOLS / script).read_text()
            assert 'torchrun.sh' in text and '--launcher pytorch' in text
    launcher = (TOOLS / 'torchrun.sh').read_text()
    assert 'torch.distributed.run' in launcher and '.venv/bin/python' in launcher


def test_finish_distributed_closes_the_process_group(tmp_path):
    """The tools close their process group, so no rank exits with gloo's
    threads still running while another rank saves a checkpoint."""
    import torch.distributed as dist

    from mmfec.utils.cli import finish_distributed
    finish_distributed()  # no group: nothing to do
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rendezvous',
                            rank=0, world_size=1)
    try:
        finish_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class _FakeRunner:
    def __init__(self):
        self.model, self.ran = None, []

    def train(self):
        self.ran.append('train')

    def test(self):
        self.ran.append('test')


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_the_tools_keep_freed_memory_on_the_device_they_run_on(tool, monkeypatch, tmp_path):
    module = train_tool if tool == 'train' else test_tool
    runner, devices = _FakeRunner(), []
    monkeypatch.setattr(module, 'keep_freed_memory_on_cpu', devices.append)
    monkeypatch.setattr(module, 'check_data', lambda cfg, splits: None)
    monkeypatch.setattr(module, 'build_runner', lambda cfg, scope: runner)
    monkeypatch.setattr(module, 'load_weights', lambda *args, **kwargs: None)
    monkeypatch.setattr(module, 'unwrap_model', lambda model: model)
    monkeypatch.setattr(module, 'get_device', lambda: 'cpu')
    config = str(ROOT / 'configs' / 'fec_small_in1k_toy.py')
    args = [config, '--work-dir', str(tmp_path)]
    if tool == 'test':
        checkpoint = tmp_path / 'c.pth'
        checkpoint.write_bytes(b'')
        args.insert(1, str(checkpoint))
    module.main(args)
    assert devices == ['cpu'] and runner.ran == [tool]
