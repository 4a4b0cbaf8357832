"""Load checkpoints as data only, and send every mmengine load through that.

Why this exists: torch >= 2.6 loads with ``weights_only=True``, and that
restricted unpickler rejects the numpy and mmengine objects a Runner puts into
its own checkpoints, so mmengine 0.10.7 cannot load what it saved (and its
http loader even passes ``weights_only=False``, which lets a downloaded file run
code). Switching ``weights_only`` off is not an option: a checkpoint from the
internet must never run code. So we keep torch's restricted unpickler and give
it, for the duration of our own load calls only, the few extra names a Runner
checkpoint needs:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's logs);
  its class-wide table of statistics methods is repaired after every load, so
  a checkpoint cannot change it for the rest of the process;
* ``builtins.getattr``, resolved only for ``HistoryBuffer.min/max/current/mean``
  (pickle stores those methods as ``getattr(HistoryBuffer, 'min')``);
* numpy arrays, scalars and dtypes of plain numeric kinds, rebuilt by our own
  code from raw bytes: numpy's ``__setstate__`` never sees checkpoint data
  (it accepts forged dtype flags, which could corrupt memory).

Anything else is refused with an error that names the file and the global.
"""
import math
import os
import os.path as osp
import pickle
import re
import struct
import threading
from contextlib import contextmanager
from tempfile import TemporaryDirectory
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'CheckpointError', 'CheckpointNotFoundError', 'InvalidCheckpointError',
    'UnsafeCheckpointError', 'safe_torch_load', 'safe_load_url',
    'install_safe_checkpoint_loader'
]


class CheckpointError(Exception):
    """Base of the errors below, so callers (the tools) can catch them all."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not point to a file."""


class InvalidCheckpointError(CheckpointError, ValueError):
    """The file is not a PyTorch checkpoint, or it is truncated/corrupt."""


class UnsafeCheckpointError(CheckpointError, RuntimeError):
    """The file asks to import or call something outside the allowlist."""


# Marks refusals raised by our own allowlist entries, to tell them from
# corrupt data when torch hands the error back to us.
_REFUSED = 'mmfec-refused:'

# --------------------------------------------------------------------------
# numpy, rebuilt from raw bytes
# --------------------------------------------------------------------------
_NUMPY_DTYPE_NAME = re.compile(r'[biufc]\d{1,2}')


class _LoadSession(threading.local):
    """Per-thread note that a load created numpy stand-ins to resolve."""
    made_stand_ins = False


_session = _LoadSession()


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only _NumpyArray accepts it.

    It is neither callable nor a class, so a checkpoint cannot instantiate or
    build anything with it.
    """

    def __repr__(self):
        return 'numpy.ndarray'


_NDARRAY = _NdarrayToken()


class _NumpyDtype:
    """Stand-in for ``numpy.dtype(name, align, copy)`` in a pickle."""
    dtype = None

    def __new__(cls, *args, **kwargs):
        _session.made_stand_ins = True
        return super().__new__(cls)

    def __init__(self, name=None, align=False, copy=False):
        if not isinstance(name, str) or not _NUMPY_DTYPE_NAME.fullmatch(name):
            raise pickle.UnpicklingError(
                f'{_REFUSED} numpy dtype {name!r} (only plain numeric dtypes '
                'such as f8, i8, b1 are allowed)')
        self.dtype = np.dtype(name)

    def __setstate__(self, state):
        """Accept only the state numpy itself writes for this dtype."""
        if self.dtype is None or not isinstance(state, tuple) or len(
                state) != 8 or state[1] not in ('<', '>', '|', '='):
            raise pickle.UnpicklingError(
                f'{_REFUSED} malformed numpy dtype state {state!r}')
        dtype = self.dtype
        if state[1] in '<>' and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(state[1])
        if state != dtype.__reduce__()[2]:
            raise pickle.UnpicklingError(
                f'{_REFUSED} numpy dtype state {state!r} differs from the '
                f'one numpy writes for {dtype.str}')
        self.dtype = dtype


def _plain_dtype(spec):
    if not isinstance(spec, _NumpyDtype) or spec.dtype is None:
        raise pickle.UnpicklingError(
            f'{_REFUSED} expected a numpy dtype, got {type(spec).__name__}')
    return spec.dtype


class _NumpyArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``; holds the array
    rebuilt from raw bytes, swapped in by ``_resolve`` after unpickling."""
    array = None

    def __new__(cls, *args, **kwargs):
        _session.made_stand_ins = True
        return super().__new__(cls)

    def __init__(self, subtype=None, shape=None, typecode=None):
        if subtype is not _NDARRAY or typecode not in (b'b', 'b'):
            raise pickle.UnpicklingError(
                f'{_REFUSED} numpy array of type {subtype!r} (only plain '
                'numpy.ndarray is allowed)')

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(
                f'{_REFUSED} malformed numpy array state')
        version, shape, dtype_spec, fortran, data = state
        dtype = _plain_dtype(dtype_spec)
        if (version != 1 or not isinstance(shape, tuple) or not all(
                type(n) is int and n >= 0 for n in shape)
                or not isinstance(fortran, bool)
                or not isinstance(data, (bytes, bytearray))):
            raise pickle.UnpicklingError(
                f'{_REFUSED} malformed numpy array state (an object array '
                'or a format other than numpy pickle version 1)')
        count = math.prod(shape)
        if len(data) != count * dtype.itemsize:
            raise pickle.UnpicklingError(
                f'{_REFUSED} numpy array data has {len(data)} bytes, its '
                f'shape {shape} and dtype {dtype} need '
                f'{count * dtype.itemsize}')
        flat = np.frombuffer(bytes(data), dtype=dtype, count=count)
        self.array = flat.reshape(shape, order='F' if fortran else 'C').copy(
            order='K')


def _numpy_scalar(dtype_spec, data):
    """Stand-in for ``numpy.core.multiarray.scalar``: one value from bytes."""
    dtype = _plain_dtype(dtype_spec)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(
            f'{_REFUSED} malformed numpy scalar of dtype {dtype}')
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _empty_bytes(*args):
    """Stand-in for ``builtins.bytes``: pickle protocol 2 writes ``b''`` as
    ``bytes()`` (other bytes go through ``_codecs.encode``, allowed by torch).
    Only the empty call is accepted; ``bytes(n)`` could allocate any size."""
    if args:
        raise pickle.UnpicklingError(
            f'{_REFUSED} bytes() with arguments (only bytes() is allowed)')
    return b''


# --------------------------------------------------------------------------
# getattr, for exactly the pairs a Runner checkpoint holds
# --------------------------------------------------------------------------
_STATISTICS = ('min', 'max', 'current', 'mean')


def _restricted_getattr(obj, name):
    """Stand-in for ``builtins.getattr``: only ``HistoryBuffer.<statistic>``."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    owner = getattr(obj, '__qualname__', type(obj).__name__)
    raise pickle.UnpicklingError(
        f'{_REFUSED} getattr({owner}, {name!r}) (only getattr(HistoryBuffer, '
        f'name) for name in {_STATISTICS} is allowed)')


def _numpy_module_paths():
    # numpy 2 pickles name numpy._core, numpy 1 numpy.core: accept both.
    return ('numpy._core.multiarray', 'numpy.core.multiarray')


def _allowlist():
    entries = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_restricted_getattr, 'builtins.getattr'),
        (_empty_bytes, 'builtins.bytes'),
        (_NumpyDtype, 'numpy.dtype'),
        (_NDARRAY, 'numpy.ndarray'),
    ]
    for module in _numpy_module_paths():
        entries.append((_NumpyArray, f'{module}._reconstruct'))
        entries.append((_numpy_scalar, f'{module}.scalar'))
    return entries


_lock = threading.RLock()


@contextmanager
def _allowlist_only():
    """Make our allowlist the only user allowlist while we load.

    Swapping (rather than adding) keeps a global added elsewhere in the
    process, e.g. a real ``builtins.getattr``, from shadowing ours.
    """
    serialization = torch.serialization
    if not hasattr(serialization, 'safe_globals'):
        raise RuntimeError(
            f'mmfec needs torch >= 2.5 to load checkpoints safely, found '
            f'torch {torch.__version__}; upgrade torch')
    with _lock:
        previous = serialization.get_safe_globals()
        statistics = dict(HistoryBuffer._statistics_methods)
        serialization.clear_safe_globals()
        serialization.add_safe_globals(_allowlist())
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(previous)
            _repair_statistics(statistics)


def _repair_statistics(before):
    """Undo what a checkpoint wrote into the class-wide statistics table.

    ``HistoryBuffer.__setstate__`` copies the checkpoint's methods into that
    table; keep what was there, plus mmengine's own four defaults.
    """
    table = HistoryBuffer._statistics_methods
    repaired = dict(before)
    for name in _STATISTICS:
        repaired.setdefault(name, getattr(HistoryBuffer, name))
    if table != repaired:
        table.clear()
        table.update(repaired)


def _resolve(obj, seen):
    """Swap numpy stand-ins for the real arrays/dtypes, containers in place."""
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _NumpyArray):
        if obj.array is None:
            raise pickle.UnpicklingError(
                f'{_REFUSED} a numpy array without data')
        result = obj.array
    elif isinstance(obj, _NumpyDtype):
        result = _plain_dtype(obj)
    elif isinstance(obj, dict):
        seen[key] = obj
        for k, v in obj.items():
            if isinstance(k, (_NumpyArray, _NumpyDtype)):
                raise pickle.UnpicklingError(
                    f'{_REFUSED} a numpy object as a dict key')
            obj[k] = _resolve(v, seen)
        return obj
    elif isinstance(obj, list):
        seen[key] = obj
        obj[:] = [_resolve(v, seen) for v in obj]
        return obj
    elif type(obj) is tuple:
        seen[key] = obj
        items = tuple(_resolve(v, seen) for v in obj)
        result = obj if all(a is b for a, b in zip(items, obj)) else items
    elif type(obj) is HistoryBuffer:
        seen[key] = obj
        state = vars(obj)
        for k, v in state.items():
            state[k] = _resolve(v, seen)
        return obj
    else:
        result = obj
    seen[key] = result
    return result


# --------------------------------------------------------------------------
# safe_torch_load
# --------------------------------------------------------------------------
_UNSAFE_PATTERNS = (
    (re.compile(re.escape(_REFUSED) + r'\s*(.+)'), '{}'),
    (re.compile(r'GLOBAL (\S+) was not an allowed global'), 'the global {}'),
    (re.compile(r'unsupported GLOBAL (\S+) whose module'), 'the global {}'),
    (re.compile(r'reduce for unrecognized function (.+?)(?: which belongs|$)',
                re.M), 'a call to {}'),
    (re.compile(r'Can only build .*? but got (.+)'), 'building a {}'),
    (re.compile(r'Can only create new object .*? but got (.+)'),
     'creating a {}'),
)
_CORRUPT_RUNTIME = re.compile(
    r'PytorchStreamReader|magic number|corrupt|zip archive|TorchScript|'
    r'truncated|invalid header', re.I)
_MALFORMED = (pickle.UnpicklingError, EOFError, TypeError, AttributeError,
              IndexError, KeyError, ValueError, struct.error,
              UnicodeDecodeError, RecursionError, OverflowError)


def _unsafe_reason(message):
    for pattern, template in _UNSAFE_PATTERNS:
        found = pattern.search(message)
        if found:
            what = found.group(1).strip()
            if template == '{}':  # our own refusal, already worded
                return what
            if template == 'the global {}' and '.' not in what:
                what = f'builtins.{what}'  # torch strips 'builtins.'
            return template.format(f'`{what}`')
    return None


def _first_line(message):
    lines = [line.strip() for line in str(message).splitlines()]
    return next((line for line in lines if line), 'no details')


def _translate(error, name):
    """Turn torch's unpickling errors into one of our clear errors."""
    message = str(error)
    reason = _unsafe_reason(message)
    if reason is not None:
        return UnsafeCheckpointError(
            f'refusing to load checkpoint {name}: it asks for {reason}, '
            'which is not on mmfec\'s allowlist of plain data. mmfec loads '
            'checkpoints as data only and never runs code from them; if you '
            'made this file yourself, re-save just its state_dict of tensors.')
    if isinstance(error, EOFError):
        detail = 'the file is empty or truncated'
    elif isinstance(error, RecursionError):
        detail = 'its data is nested too deeply'
    else:
        detail = _first_line(message.split('WeightsUnpickler error:')[-1])
    return InvalidCheckpointError(
        f'cannot load checkpoint {name}: it is not a PyTorch checkpoint or it '
        f'is corrupt ({detail})')


def safe_torch_load(file, map_location='cpu'):
    """Load a checkpoint (path or file-like) as data only.

    Raises CheckpointNotFoundError (a FileNotFoundError) for a missing path,
    InvalidCheckpointError (a ValueError) for a corrupt file and
    UnsafeCheckpointError (a RuntimeError) for a file that asks to import or
    call anything outside the allowlist in this module's docstring.
    """
    if isinstance(file, (str, os.PathLike)):
        file = osp.expanduser(os.fspath(file))
        if not osp.isfile(file):
            what = 'is a directory' if osp.isdir(file) else 'does not exist'
            raise CheckpointNotFoundError(
                f'checkpoint not found: {file} {what}; pass the path of a '
                '.pth file')
        name = file
    else:
        name = getattr(file, 'name', '<in-memory checkpoint>')
    _session.made_stand_ins = False
    try:
        with _allowlist_only():
            checkpoint = torch.load(
                file, map_location=map_location, weights_only=True)
            if _session.made_stand_ins:
                checkpoint = _resolve(checkpoint, {})
    except _MALFORMED as error:
        raise _translate(error, name) from None
    except RuntimeError as error:
        if _unsafe_reason(str(error)) or _CORRUPT_RUNTIME.search(str(error)):
            raise _translate(error, name) from None
        raise
    finally:
        _session.made_stand_ins = False
    return checkpoint


# --------------------------------------------------------------------------
# mmengine's loaders, each ending in safe_torch_load
# --------------------------------------------------------------------------
def _download(url, model_dir=None, progress=True, file_name=None):
    """Fetch ``url`` into torch's hub cache once; return the local path."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, file_name
                      or osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return cached


def safe_load_url(url,
                  model_dir=None,
                  map_location=None,
                  progress=True,
                  check_hash=False,
                  file_name=None):
    """Drop-in for ``torch.hub.load_state_dict_from_url`` as mmengine calls
    it, but loading the download as data only (``check_hash`` is ignored,
    as mmengine never sets it)."""
    return safe_torch_load(
        _download(url, model_dir, progress, file_name), map_location)


def load_from_local(filename, map_location=None):
    """Safe version of mmengine's loader for plain paths."""
    return safe_torch_load(filename, map_location)


def load_from_http(filename,
                   map_location=None,
                   model_dir=None,
                   progress=os.isatty(0)):
    """Safe version of mmengine's http(s) loader; rank 0 downloads first."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = safe_load_url(
            filename, model_dir, map_location, progress=progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_load_url(
                filename, model_dir, map_location, progress=progress)
    return checkpoint


def load_from_torchvision(filename, map_location=None):
    """Safe version of mmengine's ``torchvision://`` (and modelzoo) loader."""
    from mmengine.runner.checkpoint import get_torchvision_models
    prefix = 'modelzoo://' if filename.startswith('modelzoo://') \
        else 'torchvision://'
    model_name = filename[len(prefix):]
    return load_from_http(
        get_torchvision_models()[model_name], map_location=map_location)


def load_from_openmmlab(filename, map_location=None):
    """Safe version of mmengine's ``open-mmlab://`` loader."""
    from mmengine.runner.checkpoint import (_get_mmengine_home,
                                            get_deprecated_model_names,
                                            get_external_models)
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') \
        else 'openmmlab://'
    model_name = filename[len(prefix):]
    model_name = get_deprecated_model_names().get(model_name, model_name)
    model_url = get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location=map_location)
    return safe_torch_load(
        osp.join(_get_mmengine_home(), model_url), map_location)


def load_from_mmcls(filename, map_location=None):
    """Safe version of mmengine's ``mmcls://`` loader."""
    from mmengine.runner.checkpoint import (_process_mmcls_checkpoint,
                                            get_mmcls_models)
    checkpoint = load_from_http(
        get_mmcls_models()[filename[len('mmcls://'):]],
        map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


def load_from_pavi(filename, map_location=None):
    """Safe version of mmengine's ``pavi://`` loader."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(
            'pavi:// checkpoints need the pavi package; install it') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return safe_torch_load(downloaded, map_location)


def load_from_ceph(filename, map_location=None, backend='petrel'):
    """Safe version of mmengine's ``s3://`` / ``petrel://`` loader."""
    import io

    from mmengine.fileio import get_file_backend
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        buffer.name = filename
        return safe_torch_load(buffer, map_location)


# (prefixes as mmengine registers them, our loader)
_SCHEMES = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    ('pavi://', load_from_pavi),
    ([r'(\S+\:)?s3://', r'(\S+\:)?petrel://'], load_from_ceph),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
)


def install_safe_checkpoint_loader():
    """Route every mmengine checkpoint load through ``safe_torch_load``.

    ``load_checkpoint``, ``_load_checkpoint``, ``Runner.load_checkpoint`` /
    ``resume`` and ``init_cfg=dict(type='Pretrained')`` all end in
    ``CheckpointLoader``'s schemes, so replacing the schemes covers them. The
    module-level names are replaced too, for code that calls them directly.
    Idempotent: calling it again re-installs only what something undid.
    """
    from mmengine.runner import checkpoint as mm_checkpoint
    from mmengine.utils import dl_utils
    with _lock:
        loader = mm_checkpoint.CheckpointLoader
        for prefixes, ours in _SCHEMES:
            names = [prefixes] if isinstance(prefixes, str) else prefixes
            if any(loader._schemes.get(p) is not ours for p in names):
                loader.register_scheme(prefixes, ours, force=True)
            setattr(mm_checkpoint, ours.__name__, ours)
        mm_checkpoint.load_url = safe_load_url
        dl_utils.load_url = safe_load_url
