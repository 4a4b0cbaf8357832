"""Load checkpoints as data only, and send every mmengine load through that.

Why this exists: torch >= 2.6 loads with ``weights_only=True``, and that
restricted unpickler rejects the numpy and mmengine objects a Runner puts
into its own checkpoints, so mmengine 0.10.7 cannot load what it saved (and
its http loader even passes ``weights_only=False``, which lets a downloaded
file run code). Switching ``weights_only`` off is not an option: a
checkpoint from the internet must never run code. So we keep torch's
restricted unpickler and give it, for the duration of our own load calls
only, the few extra names a Runner checkpoint needs:

* numpy arrays, scalars and dtypes of plain numeric kinds, rebuilt by our own
  code from raw bytes: numpy's ``__setstate__`` never sees checkpoint data
  (it accepts forged dtype flags, which could corrupt memory);
* ``mmengine.logging.history_buffer.HistoryBuffer`` (the message hub's logs),
  rebuilt by our own code from a checked state: neither its ``__init__`` nor
  its ``__setstate__`` runs on checkpoint data (``__init__`` hands its
  arguments to ``np.array``, which trusts an ``__array_interface__`` found on
  any object, i.e. raw pointers; ``__setstate__`` writes into a class-wide
  table of methods);
* ``builtins.getattr``, resolved only for ``HistoryBuffer.min`` (and
  ``max``, ``current``, ``mean``): pickle stores those methods as
  ``getattr(HistoryBuffer, 'min')``;
* ``builtins.bytes``, called without arguments only (pickle's ``b''``).

Each name maps to a stand-in in this module that checks its arguments; the
stand-ins are swapped for real objects after unpickling. That last pass also
refuses special ``__x__`` attributes which torch's unpickler lets a pickle
set on an OrderedDict or a tensor.

Anything else is refused with an error that names the file and the global.

torch 2.1-2.4 have no ``safe_globals`` API to extend torch's restricted unpickler with.
There torch loads through ``pickle_module=``: Python's own unpickler whose ``find_class``
resolves a global only from the same two lists, torch's own weights-only allowlist
(tensors, storages, dtypes, ``OrderedDict``) and the one above; the stand-ins and the
final checks are the same.
"""
import _compat_pickle
import collections
import functools
import io
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
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.utils import dl_utils
from torch import _weights_only_unpickler

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

    def __init__(self, name=None, align=False, copy=False):
        if not isinstance(name, str) or not _NUMPY_DTYPE_NAME.fullmatch(name):
            raise pickle.UnpicklingError(
                f'{_REFUSED} numpy dtype {name!r} (only plain numeric dtypes '
                'such as f8, i8, b1 are allowed)')
        self.dtype = np.dtype(name)

    def __setstate__(self, state):
        """Accept only the state numpy itself writes for this dtype."""
        if self.dtype is None or type(state) is not tuple or len(
                state) != 8 or not all(
                    type(x) in (int, str, type(None)) for x in state
                ) or state[1] not in ('<', '>', '|', '='):
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
# HistoryBuffer and getattr, for exactly what a Runner checkpoint holds
# --------------------------------------------------------------------------
_STATISTICS = ('min', 'max', 'current', 'mean')


class _HistoryBuffer:
    """Stand-in for ``HistoryBuffer``: pickle creates it empty (NEWOBJ) and
    sets its state (BUILD); ``_resolve`` then makes the real buffer."""
    state = None

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise pickle.UnpicklingError(
                f'{_REFUSED} HistoryBuffer created with arguments (a Runner '
                'checkpoint creates it empty and sets its state)')
        return super().__new__(cls)

    def __init__(self):
        raise pickle.UnpicklingError(
            f'{_REFUSED} a call of HistoryBuffer(...) (a Runner checkpoint '
            'creates it empty and sets its state)')

    def __setstate__(self, state):
        if not isinstance(state, dict) or not {
                'max_length', '_log_history', '_count_history'
        } <= set(state) <= {
                'max_length', '_log_history', '_count_history',
                'statistics_methods'
        }:
            keys = sorted(map(str, state)) if isinstance(state,
                                                         dict) else state
            raise pickle.UnpicklingError(
                f'{_REFUSED} HistoryBuffer state {keys!r}')
        if type(state['max_length']) is not int or state['max_length'] < 1:
            raise pickle.UnpicklingError(
                f'{_REFUSED} HistoryBuffer max_length {state["max_length"]!r}')
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                name not in _STATISTICS
                or method is not getattr(HistoryBuffer, name)
                for name, method in methods.items()):
            raise pickle.UnpicklingError(
                f'{_REFUSED} HistoryBuffer statistics methods other than '
                f'HistoryBuffer.{"/".join(_STATISTICS)}')
        for key in ('_log_history', '_count_history'):
            if not isinstance(state[key], _NumpyArray):
                raise pickle.UnpicklingError(
                    f'{_REFUSED} HistoryBuffer {key} that is not a numpy '
                    'array')
        self.state = state

    def build(self, resolve):
        """The real HistoryBuffer, its arrays rebuilt by ``resolve``."""
        if self.state is None:
            raise pickle.UnpicklingError(
                f'{_REFUSED} a HistoryBuffer without state')
        for name in _STATISTICS:  # what its own __setstate__ would ensure
            HistoryBuffer._statistics_methods.setdefault(
                name, getattr(HistoryBuffer, name))
        buffer = HistoryBuffer.__new__(HistoryBuffer)
        buffer.max_length = self.state['max_length']
        buffer._log_history = resolve(self.state['_log_history'])
        buffer._count_history = resolve(self.state['_count_history'])
        return buffer


def _restricted_getattr(obj, name):
    """Stand-in for ``builtins.getattr``: ``HistoryBuffer.<statistic>``."""
    if obj is _HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    owner = 'HistoryBuffer' if obj is _HistoryBuffer else getattr(
        obj, '__qualname__', type(obj).__name__)
    raise pickle.UnpicklingError(
        f'{_REFUSED} getattr({owner}, {name!r}) (only getattr(HistoryBuffer, '
        f'name) for name in {_STATISTICS} is allowed)')


def _numpy_module_paths():
    # numpy 2 pickles name numpy._core, numpy 1 numpy.core: accept both.
    return ('numpy._core.multiarray', 'numpy.core.multiarray')


def _allowlist():
    entries = [
        (_HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
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


def _latin1_encode(text, encoding='latin1'):
    """Stand-in for ``_codecs.encode``, which pickle protocol 2 uses for ``bytes``
    (``encode(str, 'latin1')``); nothing else."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError(
            f"{_REFUSED} _codecs.encode with {type(text).__name__}, {encoding!r} (only "
            "str, 'latin1' is allowed)")
    return text.encode('latin1')


class _RestrictedUnpickler(pickle.Unpickler):
    """Python's unpickler resolving globals only from torch's weights-only allowlist
    and mmfec's (torch < 2.5, which cannot extend its own restricted unpickler)."""

    def find_class(self, module, name):
        # Python 2 names (protocol < 3), mapped as pickle's own find_class maps them;
        # the C unpickler does not show the protocol, and no Python 3 module bears a
        # Python 2 name, so the mapping is applied to every name. The result must
        # still be on the allowlist.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full_name = f'{module}.{name}'
        found = _legacy_globals().get(full_name)
        if found is None:
            raise pickle.UnpicklingError(
                f'{_REFUSED} the global `{full_name}`')
        return found


@functools.lru_cache(maxsize=1)
def _legacy_globals():
    """Name -> object for every global the torch < 2.5 path resolves (built once)."""
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update((name, obj) for obj, name in _allowlist())
    allowed['_codecs.encode'] = _latin1_encode
    # plain containers that torch >= 2.5's own weights-only list has and 2.1's lacks
    # (a Runner's message hub pickles a Counter)
    allowed.update({'collections.Counter': collections.Counter, 'builtins.set': set,
                    'builtins.frozenset': frozenset})
    return allowed


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` uses: ``Unpickler`` and ``load``."""
    Unpickler = _RestrictedUnpickler
    __name__ = 'mmfec_restricted_pickle'

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _has_safe_globals():
    serialization = torch.serialization
    return all(hasattr(serialization, name) for name in (
        'safe_globals', 'get_safe_globals', 'clear_safe_globals', 'add_safe_globals'))


def _load_restricted(file, map_location):
    """``torch.load`` with only the allowlisted globals resolvable."""
    if not _has_safe_globals():  # torch 2.1-2.4
        return torch.load(file, map_location=map_location,
                          pickle_module=_RestrictedPickleModule, weights_only=False)
    with _allowlist_only():
        return torch.load(file, map_location=map_location, weights_only=True)


@contextmanager
def _allowlist_only():
    """Make our allowlist the only user allowlist while we load (torch >= 2.5).

    Swapping (rather than adding) keeps a global added elsewhere in the
    process, e.g. a real ``builtins.getattr``, from shadowing ours.
    """
    serialization = torch.serialization
    with _lock:
        previous = serialization.get_safe_globals()
        serialization.clear_safe_globals()
        serialization.add_safe_globals(_allowlist())
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(previous)


_STAND_INS = (_NumpyArray, _NumpyDtype, _HistoryBuffer)


def _check_attributes(obj):
    """Refuse special (``__x__``) instance attributes set by the pickle.

    torch's unpickler lets BUILD put any attribute on an OrderedDict or a
    tensor; numpy honours an ``__array_interface__`` found there, i.e. raw
    pointers, so one such object handed to numpy later could corrupt memory.
    Real checkpoints only carry plain names such as ``_metadata``.
    """
    attributes = getattr(obj, '__dict__', None)
    if not isinstance(attributes, dict):  # classes have a mappingproxy
        return None
    for name in attributes:
        if not isinstance(name, str) or name.startswith('__'):
            raise pickle.UnpicklingError(
                f'{_REFUSED} a {type(obj).__name__} with the attribute '
                f'{name!r} (special attributes are refused)')
    return attributes


def _resolve(obj, seen):
    """Swap stand-ins for the real objects, fixing containers in place, and
    check the attributes of everything else."""
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _NumpyArray):
        if obj.array is None:
            raise pickle.UnpicklingError(
                f'{_REFUSED} a numpy array without data')
        seen[key] = obj.array
        return obj.array
    if isinstance(obj, _NumpyDtype):
        seen[key] = _plain_dtype(obj)
        return seen[key]
    if isinstance(obj, _HistoryBuffer):
        buffer = obj.build(lambda value: _resolve(value, seen))
        if not all(
                isinstance(a, np.ndarray) and a.ndim == 1
                for a in (buffer._log_history, buffer._count_history)):
            raise pickle.UnpicklingError(
                f'{_REFUSED} HistoryBuffer logs that are not 1-d arrays')
        seen[key] = buffer
        return buffer
    seen[key] = obj
    attributes = _check_attributes(obj)
    if attributes:
        for name, value in attributes.items():
            attributes[name] = _resolve(value, seen)
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, _STAND_INS):
                raise pickle.UnpicklingError(
                    f'{_REFUSED} a numpy object or HistoryBuffer as a dict '
                    'key')
            obj[k] = _resolve(v, seen)
    elif isinstance(obj, list):
        obj[:] = [_resolve(v, seen) for v in obj]
    elif type(obj) is tuple:
        items = tuple(_resolve(v, seen) for v in obj)
        if any(a is not b for a, b in zip(items, obj)):
            seen[key] = items
            return items
    elif isinstance(obj, (set, frozenset)):
        for item in obj:
            if isinstance(item, _STAND_INS):
                raise pickle.UnpicklingError(
                    f'{_REFUSED} a numpy object or HistoryBuffer in a set')
            _resolve(item, seen)
    return obj


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
        detail = f'{type(error).__name__}: {detail.split(". ")[0]}'
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
    try:
        checkpoint = _load_restricted(file, map_location)
        return _resolve(checkpoint, {})
    except _MALFORMED as error:
        raise _translate(error, name) from None
    except RuntimeError as error:
        if _unsafe_reason(str(error)) or _CORRUPT_RUNTIME.search(str(error)):
            raise _translate(error, name) from None
        raise


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


_HANDED_OVER = {}  # at most one checkpoint, read ahead by a tool for the Runner's load


def _file_key(filename):
    try:
        stat = os.stat(filename)
    except (OSError, TypeError, ValueError):
        return None
    return osp.realpath(filename), stat.st_mtime_ns, stat.st_size


def hand_over(filename, checkpoint) -> None:
    """Keep ``checkpoint``, just read from ``filename`` onto the CPU, for the next load
    of that unchanged file onto the CPU: a tool that checks a checkpoint before the Runner
    loads it (``tools/test.py CHECKPOINT``, ``tools/train.py --resume PATH``) reads the
    file once. The kept object is handed out once and must not have been modified."""
    key = _file_key(filename)
    with _lock:
        _HANDED_OVER.clear()
        if key is not None:
            _HANDED_OVER[key] = checkpoint


def load_from_local(filename, map_location=None):
    """Safe version of mmengine's loader for plain paths."""
    if _HANDED_OVER:
        # taken (or dropped) by the next load of the same file: a load onto another
        # device (a GPU resume) reads the file itself, and the CPU copy is not kept
        with _lock:
            checkpoint = _HANDED_OVER.pop(_file_key(filename), None)
        if checkpoint is not None and str(map_location) in ('None', 'cpu'):
            return checkpoint
    return safe_torch_load(filename, map_location)


def load_from_http(filename,
                   map_location=None,
                   model_dir=None,
                   progress=os.isatty(0)):
    """Safe version of mmengine's http(s) loader; rank 0 downloads first."""
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
    prefix = 'modelzoo://' if filename.startswith('modelzoo://') \
        else 'torchvision://'
    model_name = filename[len(prefix):]
    return load_from_http(
        mm_checkpoint.get_torchvision_models()[model_name], map_location=map_location)


def load_from_openmmlab(filename, map_location=None):
    """Safe version of mmengine's ``open-mmlab://`` loader."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') \
        else 'openmmlab://'
    model_name = filename[len(prefix):]
    model_name = mm_checkpoint.get_deprecated_model_names().get(model_name, model_name)
    model_url = mm_checkpoint.get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location=map_location)
    return safe_torch_load(
        osp.join(mm_checkpoint._get_mmengine_home(), model_url), map_location)


def load_from_mmcls(filename, map_location=None):
    """Safe version of mmengine's ``mmcls://`` loader."""
    checkpoint = load_from_http(
        mm_checkpoint.get_mmcls_models()[filename[len('mmcls://'):]],
        map_location=map_location)
    return mm_checkpoint._process_mmcls_checkpoint(checkpoint)


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
    with _lock:
        loader = mm_checkpoint.CheckpointLoader
        for prefixes, ours in _SCHEMES:
            names = [prefixes] if isinstance(prefixes, str) else prefixes
            if any(loader._schemes.get(p) is not ours for p in names):
                loader.register_scheme(prefixes, ours, force=True)
            setattr(mm_checkpoint, ours.__name__, ours)
        mm_checkpoint.load_url = safe_load_url
        dl_utils.load_url = safe_load_url
