"""Checkpoints load as data only: Runner checkpoints work, booby traps do not.

Each trap, if unpickled for real, creates a marker file; every test asserts
the marker is absent and that the error names the file and what was refused.
"""
import collections
import functools
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch.utils.data import Dataset

from mmfec.utils.safe_checkpoint import (
    CheckpointNotFoundError,
    InvalidCheckpointError,
    UnsafeCheckpointError,
    install_safe_checkpoint_loader,
    safe_torch_load,
)

install_safe_checkpoint_loader()


# ---------------------------------------------------------------- tiny Runner
class TinyModel(BaseModel):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.fc(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


class TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)), labels=torch.tensor(i))


_runs = iter(range(10**6))


def _runner(work_dir, max_iters=2, **kwargs):
    return Runner(
        model=TinyModel(),
        work_dir=str(work_dir),
        experiment_name=f'safe_ckpt_{os.getpid()}_{next(_runs)}',
        train_dataloader=dict(
            dataset=TinyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=99),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        randomness=dict(seed=0),
        **kwargs)


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A checkpoint written by a real mmengine Runner (2 iterations, CPU)."""
    work_dir = tmp_path_factory.mktemp('runner')
    _runner(work_dir).train()
    return work_dir / 'iter_2.pth'


# --------------------------------------------------------------- booby traps
class _Reduce:
    """Pickles as ``func(*args)``, then ``__setstate__(state)`` if given."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def _touch_code(marker):
    return f'open({str(marker)!r}, "w").close()'


def _trap_objects(marker):
    """name -> object whose unpickling would create ``marker``."""
    return {
        'os.system': _Reduce(os.system, f'touch {marker}'),
        'builtins.exec': _Reduce(exec, _touch_code(marker)),
        'builtins.eval': _Reduce(eval, f'exec({_touch_code(marker)!r})'),
        # getattr is allowlisted for HistoryBuffer.min & co only
        'getattr-chain': _Reduce(getattr, HistoryBuffer, '__init__'),
    }


def _raw_getattr_import_chain(marker):
    """``getattr(__import__('os'), 'system')('touch marker')``, as opcodes."""
    return (b'c__builtin__\ngetattr\n(c__builtin__\n__import__\n(Vos\ntR'
            b'Vsystem\ntR(V' + f'touch {marker}'.encode() + b'\ntR.')


def _save_trap(path, obj):
    torch.save({'state_dict': {'fc.weight': torch.zeros(1, 2)}, 'x': obj},
               path)
    return path


def _torch_zip_with_pickle(path, payload):
    """A genuine torch zip checkpoint whose data.pkl is replaced."""
    torch.save({'w': torch.zeros(1)}, path)
    with zipfile.ZipFile(path) as src:
        items = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, 'w') as dst:
        for info, data in items:
            is_pickle = info.filename.endswith('/data.pkl')
            dst.writestr(info, payload if is_pickle else data)
    return path


@pytest.fixture
def traps(tmp_path):
    """(name, path, marker) for every trap file, each with its own marker."""
    found = []
    for name in _trap_objects(tmp_path / 'unused'):
        marker = tmp_path / f'marker_{name}'
        path = _save_trap(tmp_path / f'{name}.pth',
                          _trap_objects(marker)[name])
        found.append((name, path, marker))
    marker = tmp_path / 'marker_raw_zip'
    found.append(('zip-import-chain',
                  _torch_zip_with_pickle(tmp_path / 'chain.pth',
                                         _raw_getattr_import_chain(marker)),
                  marker))
    marker = tmp_path / 'marker_raw_pickle'
    raw = tmp_path / 'chain.pkl'
    raw.write_bytes(_raw_getattr_import_chain(marker))
    found.append(('plain-pickle-import-chain', raw, marker))
    return found


def test_traps_are_live(tmp_path):
    """Sanity: without the allowlist, the trap files do run code."""
    marker = tmp_path / 'marker'
    path = _save_trap(tmp_path / 'exec.pth',
                      _trap_objects(marker)['builtins.exec'])
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(_raw_getattr_import_chain(marker))
    assert marker.exists()


def _assert_refused(excinfo, path, marker):
    assert not marker.exists(), 'the checkpoint ran code'
    message = str(excinfo.value)
    assert str(path) in message
    assert 'never runs code' in message


def test_safe_torch_load_refuses_traps(traps):
    for name, path, marker in traps:
        with pytest.raises(UnsafeCheckpointError) as excinfo:
            safe_torch_load(path)
        _assert_refused(excinfo, path, marker)


@pytest.fixture
def without_safe_globals_api(monkeypatch):
    """The loader torch 2.1-2.4 get (no ``safe_globals`` API to extend torch's restricted
    unpickler: Python's unpickler with the allowlist), forced on this torch."""
    from mmfec.utils import safe_checkpoint
    monkeypatch.setattr(safe_checkpoint, '_has_safe_globals', lambda: False)


def test_without_the_safe_globals_api_traps_are_refused(without_safe_globals_api, traps):
    for name, path, marker in traps:
        with pytest.raises(UnsafeCheckpointError) as excinfo:
            safe_torch_load(path)
        _assert_refused(excinfo, path, marker)


def test_without_the_safe_globals_api_runner_checkpoints_load(without_safe_globals_api,
                                                              runner_ckpt):
    checkpoint = safe_torch_load(runner_ckpt)
    buffer = checkpoint['message_hub']['log_scalars']['train/lr']
    assert type(buffer) is HistoryBuffer
    reference = torch.load(runner_ckpt, weights_only=False)
    assert buffer.current() == pytest.approx(
        reference['message_hub']['log_scalars']['train/lr'].current())
    assert torch.equal(checkpoint['state_dict']['fc.weight'],
                       reference['state_dict']['fc.weight'])


def test_protocol_2_bytes_decoder_accepts_only_latin1_text():
    from mmfec.utils.safe_checkpoint import _latin1_encode
    assert _latin1_encode('\xff\x00', 'latin1') == b'\xff\x00'
    for args in ((b'x', 'latin1'), ('x', 'utf-8'), (['x'], 'latin1')):
        with pytest.raises(pickle.UnpicklingError):
            _latin1_encode(*args)


def test_refusal_names_the_global(tmp_path):
    marker = tmp_path / 'marker'
    path = _save_trap(tmp_path / 'exec.pth',
                      _trap_objects(marker)['builtins.exec'])
    with pytest.raises(UnsafeCheckpointError, match='`builtins.exec`'):
        safe_torch_load(path)
    path = _save_trap(tmp_path / 'getattr.pth',
                      _trap_objects(marker)['getattr-chain'])
    with pytest.raises(UnsafeCheckpointError,
                       match=r"getattr\(HistoryBuffer, '__init__'\)"):
        safe_torch_load(path)


def test_mmengine_load_paths_refuse_traps(traps):
    for name, path, marker in traps:
        with pytest.raises(UnsafeCheckpointError) as excinfo:
            load_checkpoint(TinyModel(), str(path))
        _assert_refused(excinfo, path, marker)
        with pytest.raises(UnsafeCheckpointError):
            _load_checkpoint(str(path))


def test_pretrained_init_cfg_refuses_trap(traps):
    name, path, marker = traps[1]
    model = TinyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        model.init_weights()
    _assert_refused(excinfo, path, marker)


def test_runner_resume_refuses_trap(traps, tmp_path):
    name, path, marker = traps[0]
    runner = _runner(tmp_path / 'resume', load_from=str(path), resume=True)
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        runner.train()
    _assert_refused(excinfo, path, marker)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


def test_http_download_refuses_trap(traps, tmp_path, monkeypatch):
    """mmengine's own http loader passes weights_only=False; ours does not."""
    name, path, marker = traps[1]
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/{path.name}'
        with pytest.raises(UnsafeCheckpointError):
            load_checkpoint(TinyModel(), url)
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()
    assert (tmp_path / 'torch_home' / 'hub' / 'checkpoints' /
            path.name).exists()


# ------------------------------------------------------ real checkpoints load
def test_runner_checkpoint_loads_as_data(runner_ckpt):
    checkpoint = safe_torch_load(runner_ckpt)
    assert set(checkpoint) >= {'meta', 'state_dict', 'message_hub',
                               'optimizer', 'param_schedulers'}
    buffer = checkpoint['message_hub']['log_scalars']['train/lr']
    assert type(buffer) is HistoryBuffer
    assert isinstance(buffer._log_history, np.ndarray)
    reference = torch.load(runner_ckpt, weights_only=False)
    assert buffer.current() == pytest.approx(
        reference['message_hub']['log_scalars']['train/lr'].current())
    assert torch.equal(checkpoint['state_dict']['fc.weight'],
                       reference['state_dict']['fc.weight'])
    np.testing.assert_array_equal(
        buffer._count_history,
        reference['message_hub']['log_scalars']['train/lr']._count_history)


def test_load_checkpoint_and_pretrained_accept_runner_checkpoint(runner_ckpt):
    expected = torch.load(runner_ckpt, weights_only=False)['state_dict']
    model = TinyModel()
    load_checkpoint(model, str(runner_ckpt))
    assert torch.equal(model.fc.weight, expected['fc.weight'])
    model = TinyModel(
        init_cfg=dict(type='Pretrained', checkpoint=str(runner_ckpt)))
    model.init_weights()
    assert torch.equal(model.fc.weight, expected['fc.weight'])


def test_runner_resumes_from_its_own_checkpoint(runner_ckpt, tmp_path):
    runner = _runner(
        tmp_path / 'resume', max_iters=3, load_from=str(runner_ckpt),
        resume=True)
    runner.train()
    assert runner.iter == 3
    # the resumed message hub carries on the logs of the first two iterations
    lr_log = runner.message_hub.get_scalar('train/lr')
    assert len(lr_log.data[0]) == 3


def test_numpy_values_round_trip(tmp_path):
    values = {
        'f8': np.arange(6, dtype='f8').reshape(2, 3),
        'fortran': np.asfortranarray(np.arange(6, dtype='i4').reshape(2, 3)),
        'big_endian': np.arange(3, dtype='>i8'),
        'bool': np.array([True, False]),
        'u1': np.arange(4, dtype='u1'),
        'c8': np.array([1 + 2j], dtype='c8'),
        'zero_d': np.array(2.5),
        'empty': np.zeros((0, 3), dtype='f4'),
        'scalars': [np.float32(1.5), np.int64(-3), np.bool_(True)],
        'dtype': np.dtype('f2'),
        'tuple': (np.arange(2), 1),
    }
    torch.save(values, tmp_path / 'np.pth')
    loaded = safe_torch_load(tmp_path / 'np.pth')
    for key in ('f8', 'fortran', 'big_endian', 'bool', 'u1', 'c8', 'zero_d',
                'empty'):
        assert loaded[key].dtype == values[key].dtype, key
        np.testing.assert_array_equal(loaded[key], values[key])
        assert loaded[key].flags.writeable
    assert loaded['fortran'].flags.f_contiguous
    assert [type(v) for v in loaded['scalars']] == [
        np.float32, np.int64, np.bool_]
    assert loaded['scalars'] == values['scalars']
    assert loaded['dtype'] == np.dtype('f2')
    assert type(loaded['tuple']) is tuple
    np.testing.assert_array_equal(loaded['tuple'][0], np.arange(2))


def test_numpy_object_arrays_and_forged_dtypes_refused(tmp_path):
    torch.save({'a': np.array([1, 'x'], dtype=object)}, tmp_path / 'o.pth')
    with pytest.raises(UnsafeCheckpointError, match="numpy dtype 'O"):
        safe_torch_load(tmp_path / 'o.pth')
    # a float64 dtype whose pickled flags claim it holds Python objects
    forged = _Reduce(np.dtype, 'f8', False, True,
                     state=(3, '<', None, None, None, -1, -1, 63))
    torch.save({'d': forged}, tmp_path / 'forged.pth')
    with pytest.raises(UnsafeCheckpointError, match='dtype state'):
        safe_torch_load(tmp_path / 'forged.pth')


def test_checkpoint_cannot_replace_history_buffer_statistics(tmp_path):
    """HistoryBuffer.__setstate__ would copy these into a class-wide table."""
    buffer = HistoryBuffer([1.0, 2.0], [1, 1])
    table = HistoryBuffer._statistics_methods
    genuine = table['mean']
    table['mean'] = collections.Counter  # allowlisted by torch itself
    try:
        torch.save({'b': buffer}, tmp_path / 'hb.pth')
    finally:
        table['mean'] = genuine
    with pytest.raises(UnsafeCheckpointError, match='statistics methods'):
        safe_torch_load(tmp_path / 'hb.pth')
    assert HistoryBuffer._statistics_methods['mean'] is genuine


def test_history_buffer_is_never_called_with_checkpoint_data(tmp_path):
    """HistoryBuffer(log) runs np.array(log); numpy trusts a raw pointer in
    an ``__array_interface__`` found on any object, e.g. an OrderedDict whose
    attributes the pickle sets. So the buffer may only be created empty."""
    evil = collections.OrderedDict()
    evil.__dict__['__array_interface__'] = dict(
        data=(8, False), shape=(1, ), typestr='<u8', version=3)
    torch.save({'b': _Reduce(HistoryBuffer, [evil], [1])}, tmp_path / 'e.pth')
    with pytest.raises(UnsafeCheckpointError, match='HistoryBuffer'):
        safe_torch_load(tmp_path / 'e.pth')
    # created empty like a real one, but with a forged state
    forged = HistoryBuffer()
    forged.__getstate__ = lambda: dict(
        max_length=10, _log_history=[evil], _count_history=[1])
    torch.save({'b': forged}, tmp_path / 's.pth')
    with pytest.raises(UnsafeCheckpointError, match='not a numpy array'):
        safe_torch_load(tmp_path / 's.pth')


def test_special_attributes_on_loaded_objects_refused(tmp_path):
    """torch lets BUILD set any attribute on an OrderedDict; a later
    np.array() of it would follow the raw pointer in __array_interface__."""
    evil = collections.OrderedDict(a=1)
    evil.__dict__['__array_interface__'] = dict(
        data=(8, False), shape=(1, ), typestr='<u8', version=3)
    torch.save({'meta': {'palette': [evil]}}, tmp_path / 'od.pth')
    with pytest.raises(UnsafeCheckpointError, match='__array_interface__'):
        safe_torch_load(tmp_path / 'od.pth')
    plain = collections.OrderedDict(a=torch.ones(1))
    plain._metadata = {'': {'version': 1}}
    torch.save(plain, tmp_path / 'plain.pth')
    assert safe_torch_load(tmp_path / 'plain.pth')._metadata == {
        '': {'version': 1}}


@pytest.mark.skipif(
    tuple(int(v) for v in torch.__version__.split('.')[:2]) < (2, 6),
    reason='torch < 2.6: no weights_only default to keep, and before 2.5 no process-wide '
    'allowlist (mmfec loads through its own restricted unpickler there)')
def test_allowlist_is_scoped_to_our_loads(runner_ckpt):
    before = set(torch.serialization.get_safe_globals())
    safe_torch_load(runner_ckpt)
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_ckpt)  # torch's own default is left as it was


def test_in_memory_file_like(runner_ckpt):
    buffer = io.BytesIO(runner_ckpt.read_bytes())
    assert 'state_dict' in safe_torch_load(buffer)


# ------------------------------------------------------- missing and corrupt
def test_missing_path_names_it(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_torch_load(missing)
    with pytest.raises(CheckpointNotFoundError, match='nope.pth'):
        load_checkpoint(TinyModel(), str(missing))
    with pytest.raises(FileNotFoundError, match='is a directory'):
        safe_torch_load(tmp_path)


@pytest.mark.parametrize('content', [
    b'', b'this is not a checkpoint\n', bytes(range(256)) * 4, 'truncated'
])
def test_corrupt_file_gives_clear_error(tmp_path, runner_ckpt, content):
    path = tmp_path / 'bad.pth'
    if content == 'truncated':
        content = runner_ckpt.read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(InvalidCheckpointError) as excinfo:
        safe_torch_load(path)
    message = str(excinfo.value)
    assert str(path) in message and 'corrupt' in message
    assert isinstance(excinfo.value, ValueError)


def test_install_is_idempotent_and_covers_schemes():
    install_safe_checkpoint_loader()
    install_safe_checkpoint_loader()
    for prefix in ('', 'http://', 'https://', 'torchvision://',
                   'open-mmlab://', 'openmmlab://', 'mmcls://', 'pavi://',
                   'modelzoo://', r'(\S+\:)?s3://', r'(\S+\:)?petrel://'):
        loader = CheckpointLoader._schemes[prefix]
        assert loader.__module__ == 'mmfec.utils.safe_checkpoint', prefix


# ------------------------------------------------- through the real tools
ROOT = Path(__file__).resolve().parents[1]

TINY_TASK = """
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmdet.registry import DATASETS, METRICS, MODELS


@MODELS.register_module()
class TinyCliModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.fc(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        if mode == 'predict':
            return [dict(pred=o, label=t) for o, t in zip(out, labels)]
        return out


@DATASETS.register_module()
class TinyCliData(torch.utils.data.Dataset):
    metainfo = dict(classes=('thing', ))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)),
                    labels=torch.tensor(float(i)))


@METRICS.register_module()
class TinyCliMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results += [float((d['pred'] - d['label'])**2)
                         for d in data_samples]

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))
"""

TINY_CONFIG = """
default_scope = 'mmdet'
custom_imports = dict(imports=['tiny_mmfec_task'], allow_failed_imports=False)
model = dict(type='TinyCliModel')
_loader = dict(
    dataset=dict(type='TinyCliData'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    batch_size=2,
    num_workers=0,
    collate_fn=dict(type='default_collate'))
train_dataloader = _loader
test_dataloader = _loader
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=100)
test_cfg = dict(type='TestLoop')
test_evaluator = dict(type='TinyCliMetric')
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
"""


@pytest.fixture(scope='module')
def tiny_cli(tmp_path_factory):
    """A folder with a tiny mmdet-scoped config (no FEC, no data files)."""
    folder = tmp_path_factory.mktemp('cli')
    (folder / 'tiny_mmfec_task.py').write_text(TINY_TASK)
    (folder / 'tiny_cfg.py').write_text(TINY_CONFIG)
    return folder


def _tool(tool, *args, cwd):
    path = os.pathsep.join(filter(None, [str(cwd), os.environ.get(
        'PYTHONPATH')]))
    return subprocess.run(
        [sys.executable, str(ROOT / 'tools' / tool), *map(str, args)],
        cwd=cwd,
        env={**os.environ, 'PYTHONPATH': path},
        capture_output=True,
        text=True,
        timeout=300)


def _assert_cli_refused(result, path, marker):
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: refusing to load checkpoint'), last
    assert str(path) in last
    assert not marker.exists()


@pytest.fixture(scope='module')
def cli_trained(tiny_cli):
    """tools/train.py on the tiny config: 2 iterations, CPU."""
    result = _tool('train.py', 'tiny_cfg.py', '--work-dir', 'wd', cwd=tiny_cli)
    return result, tiny_cli / 'wd' / 'iter_2.pth'


@pytest.mark.slow
def test_cli_train_saves_checkpoint(cli_trained):
    result, checkpoint = cli_trained
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint.exists()


@pytest.mark.slow
def test_cli_test_loads_runner_checkpoint(cli_trained, tiny_cli):
    result, checkpoint = cli_trained
    result = _tool('test.py', 'tiny_cfg.py', checkpoint, '--work-dir',
                   'wd_test', '--cfg-options', 'test_evaluator.prefix=tiny',
                   cwd=tiny_cli)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'tiny/mse' in result.stdout + result.stderr


@pytest.mark.slow
def test_cli_test_refuses_trapped_checkpoint(tiny_cli, traps):
    name, path, marker = traps[1]
    result = _tool('test.py', 'tiny_cfg.py', path, '--work-dir', 'wd_trap',
                   cwd=tiny_cli)
    _assert_cli_refused(result, path, marker)


@pytest.mark.slow
def test_cli_resume_refuses_trapped_checkpoint(tiny_cli, traps):
    name, path, marker = traps[4]
    result = _tool('train.py', 'tiny_cfg.py', '--resume', path, '--work-dir',
                   'wd_resume_trap', cwd=tiny_cli)
    _assert_cli_refused(result, path, marker)
