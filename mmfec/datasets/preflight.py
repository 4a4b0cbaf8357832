"""Pre-flight check of a config's data: decode every file before training starts.

Why: a truncated JPEG or a label map saved in RGB stops training when the loader first
reaches it, which on COCO or ADE20K can be hours in. :func:`check_config_data` builds
the config's train/val/test datasets (reading their annotation files), collects every
image and label map they would load, and decodes them all in parallel (a process pool,
with a progress bar), sorting the failures into:

* ``missing``: the file does not exist;
* ``empty``: the file has 0 bytes;
* ``truncated``: the file ends before its image data does;
* ``unreadable``: not an image the decoder understands (or an annotation file that
  cannot be read);
* ``wrong mode``: an image that is not RGB or grayscale (CMYK, 16-bit, with alpha), or a
  label map that is not one 8-bit channel ('L' or 'P').

``tools/check_data.py CONFIG`` prints them with a count and exits 1 if there are any.
"""
import contextlib
import copy
import io
import os
import os.path as osp
import sys
from collections import Counter
from multiprocessing import get_context
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from mmengine.registry import DATASETS, init_default_scope
from mmengine.utils import ProgressBar
from PIL import Image, ImageFile

from .checks import DATALOADER_KEYS

KINDS = ('missing', 'empty', 'truncated', 'unreadable', 'wrong mode')
IMAGE_MODES = ('RGB', 'L')
LABEL_MODES = ('L', 'P')
_ROLES = (('img_path', 'image'), ('seg_map_path', 'label map'))


class Fault(NamedTuple):
    kind: str  # one of KINDS
    path: str
    role: str  # 'image', 'label map', 'annotation file'
    detail: str
    where: str  # e.g. 'train_dataloader'


def inspect_file(path: str, role: str) -> Optional[Tuple[str, str]]:
    """(kind, detail) of what is wrong with one image or label map file, or None."""
    if not osp.exists(path):
        return 'missing', 'no such file'
    size = osp.getsize(path)
    if size == 0:
        return 'empty', '0 bytes'
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: finds truncation and corrupt data
            mode = image.mode
    except OSError as error:
        text = str(error)
        if 'truncated' in text or 'premature' in text.lower():
            return 'truncated', f'{text} ({size} bytes)'
        return 'unreadable', text.splitlines()[0] if text else type(error).__name__
    except Exception as error:  # noqa: BLE001 - any decoder failure is a finding
        return 'unreadable', f'{type(error).__name__}: {error}'.splitlines()[0]
    allowed = LABEL_MODES if role == 'label map' else IMAGE_MODES
    if mode not in allowed:
        return 'wrong mode', f'mode {mode}; {role}s must be {" or ".join(allowed)}'
    return None


def _inspect_task(task):
    path, role, where = task
    found = inspect_file(path, role)
    return None if found is None else Fault(found[0], path, role, found[1], where)


def _dataset_configs(cfg, splits: Iterable[str]):
    for key in DATALOADER_KEYS:
        if key.split('_')[0] not in splits:
            continue
        loaders = cfg.get(key)
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if loader and loader.get('dataset') is not None:
                yield key, loader['dataset']


def collect_files(cfg, splits=('train', 'val', 'test')) -> Tuple[List[tuple], List[Fault]]:
    """Every (path, role, where) the config's datasets load, each path once, and the
    faults found while building the datasets (annotation files that cannot be read)."""
    if cfg.get('default_scope'):
        init_default_scope(cfg.get('default_scope'))
    tasks, faults, seen = [], [], set()
    for where, dataset_cfg in _dataset_configs(cfg, splits):
        dataset_cfg = copy.deepcopy(dataset_cfg)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' chatter
                dataset = DATASETS.build(dataset_cfg) if isinstance(dataset_cfg, dict) \
                    else dataset_cfg
                if hasattr(dataset, 'full_init'):
                    dataset.full_init()
            size = len(dataset)
        except Exception as error:  # noqa: BLE001 - reported as a fault
            ann = dataset_cfg.get('ann_file', '') if isinstance(dataset_cfg, dict) else ''
            root = dataset_cfg.get('data_root', '') if isinstance(dataset_cfg, dict) else ''
            path = osp.join(root or '', ann) if ann else str(root)
            text = str(error).strip().splitlines()
            faults.append(Fault('unreadable', path, 'annotation file',
                                f'{type(error).__name__}: {text[-1] if text else ""}',
                                where))
            continue
        for index in range(size):
            info = dataset.get_data_info(index)
            for key, role in _ROLES:
                path = info.get(key) if isinstance(info, dict) else None
                if path and path not in seen:
                    seen.add(path)
                    tasks.append((str(path), role, where))
    return tasks, faults


def check_config_data(cfg, splits=('train', 'val', 'test'), workers: Optional[int] = None,
                      progress: bool = True) -> Tuple[int, List[Fault]]:
    """Decode every file of the config's data sets; returns (files checked, faults)."""
    tasks, faults = collect_files(cfg, splits)
    workers = workers or min(len(tasks), os.cpu_count() or 1) or 1
    bar = None
    if progress and tasks:
        bar = ProgressBar(len(tasks), file=sys.stderr)
    results = []
    if workers > 1:
        with get_context('fork' if hasattr(os, 'fork') else 'spawn').Pool(workers) as pool:
            for result in pool.imap_unordered(_inspect_task, tasks, chunksize=8):
                results.append(result)
                if bar is not None:
                    bar.update()
    else:
        for task in tasks:
            results.append(_inspect_task(task))
            if bar is not None:
                bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    faults += [r for r in results if r is not None]
    order = {kind: i for i, kind in enumerate(KINDS)}
    faults.sort(key=lambda f: (order[f.kind], f.path))
    return len(tasks), faults


def format_report(checked: int, faults: List[Fault]) -> str:
    """What tools/check_data.py prints: one line per bad file, then the counts."""
    if not faults:
        return f'checked {checked} files: all good'
    width = max(len(kind) for kind in KINDS)
    lines = [f'{f.kind:<{width}}  {f.path}  ({f.role}, {f.where}: {f.detail})'
             for f in faults]
    counts: Dict[str, int] = Counter(f.kind for f in faults)
    summary = ', '.join(f'{counts[k]} {k}' for k in KINDS if counts[k])
    lines.append(f'{len(faults)} bad of {checked} files checked: {summary}')
    return '\n'.join(lines)
