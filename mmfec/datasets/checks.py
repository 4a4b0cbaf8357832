"""Fail before building a Runner when a config points at data that is not on disk.

Why: without this, a missing data set shows up minutes later as a deep traceback from
pycocotools or a silent empty dataset. :func:`check_data_exists` names the missing
path, shows the layout the dataset type expects, where to download the real data and
how to make the toy data instead.
"""
import os
import os.path as osp
from collections.abc import Mapping

from mmengine.config import Config

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
TOY_COMMAND = 'python tools/make_toy_data.py'

_SEG_TYPES = {'ADE20KDataset', 'BaseSegDataset', 'CityscapesDataset', 'PascalVOCDataset',
              'COCOStuffDataset', 'PascalContextDataset', 'PascalContextDataset59',
              'LoveDADataset', 'PotsdamDataset', 'ISPRSDataset', 'iSAIDDataset',
              'MapillaryDataset_v1', 'MapillaryDataset_v2', 'SynapseDataset'}
_DET_TYPES = {'CocoDataset', 'CocoPanopticDataset', 'LVISDataset', 'LVISV05Dataset',
              'LVISV1Dataset', 'Objects365V1Dataset', 'Objects365V2Dataset',
              'BaseDetDataset', 'VOCDataset', 'XMLDataset', 'OpenImagesDataset',
              'CrowdHumanDataset', 'DeepFashionDataset', 'WIDERFaceDataset'}

_CLS_TYPES = {'ImageNet', 'ImageNet21k', 'CustomDataset', 'CUB', 'Places205', 'StanfordCars',
              'Food101', 'Caltech101', 'OxfordIIITPet', 'DTD', 'FGVCAircraft', 'SUN397',
              'Flowers102', 'CIFAR10', 'CIFAR100', 'MNIST', 'FashionMNIST', 'VOC'}

_LAYOUTS = {
    'det': ('COCO 2017 layout (CocoDataset and the other mmdet datasets)',
            """\
  <data_root>/
  ├── annotations/instances_train2017.json
  ├── annotations/instances_val2017.json
  ├── train2017/*.jpg
  └── val2017/*.jpg""",
            'COCO 2017 from https://cocodataset.org/#download '
            '(train2017.zip, val2017.zip, annotations_trainval2017.zip)',
            'data/toy_coco'),
    'seg': ('ADE20K layout (ADE20KDataset, BaseSegDataset and the other mmseg datasets)',
            """\
  <data_root>/
  ├── images/training/*.jpg
  ├── images/validation/*.jpg
  ├── annotations/training/*.png   (uint8 label maps, same stem as the image)
  └── annotations/validation/*.png""",
            'ADEChallengeData2016 from '
            'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip',
            'data/toy_ade20k'),
    'cls': ('ImageNet folder layout (ImageNet and CustomDataset: one folder per class, '
            'no annotation files needed)',
            """\
  <data_root>/
  ├── train/<class or wnid>/*.JPEG
  └── val/<class or wnid>/*.JPEG""",
            'ILSVRC2012 from https://image-net.org/download.php (train and val, with '
            'val sorted into one folder per class)',
            'data/toy_imagenet'),
}


def _type_info(dataset_type):
    """(class name, module or scope prefix) of a dataset ``type`` (string or class)."""
    if isinstance(dataset_type, str):
        scope, _, name = dataset_type.rpartition('.')
        return name, scope
    return getattr(dataset_type, '__name__', str(dataset_type)), \
        getattr(dataset_type, '__module__', '')


def _family(dataset_type, default_scope):
    """'det', 'seg', 'cls' or None: which layout to describe for this dataset type."""
    name, scope = _type_info(dataset_type)
    for prefix in (scope, default_scope or ''):
        if prefix.startswith('mmdet'):
            return 'det'
        if prefix.startswith('mmseg'):
            return 'seg'
        if prefix.startswith('mmpretrain'):
            return 'cls'
    if name in _CLS_TYPES:
        return 'cls'
    if name in _SEG_TYPES:
        return 'seg'
    if name in _DET_TYPES:
        return 'det'
    return None


def _is_remote(path):
    return '://' in path or path.startswith('s3:')


def _join(data_root, path):
    """Join like mmengine's BaseDataset: absolute or remote paths stay as they are."""
    if not data_root or osp.isabs(path) or _is_remote(path):
        return path
    return osp.join(data_root, path)


def _walk(dataset, where):
    """Yield (where, dataset dict) for ``dataset`` and datasets wrapped inside it."""
    if not isinstance(dataset, Mapping):
        return
    yield where, dataset
    inner = dataset.get('dataset')
    if isinstance(inner, Mapping):
        yield from _walk(inner, f'{where}.dataset')
    for i, child in enumerate(dataset.get('datasets') or ()):
        yield from _walk(child, f'{where}.datasets[{i}]')


def _dataset_paths(ds):
    """(field, path) pairs that must exist for one dataset dict; [] if not local."""
    backend = (ds.get('backend_args') or {}).get('backend', 'local')
    data_root = ds.get('data_root') or ''
    if backend != 'local' or _is_remote(str(data_root)):
        return []
    if data_root and not osp.exists(data_root):
        return [('data_root', str(data_root))]  # its children would all be missing too
    paths = []
    if ds.get('ann_file'):
        paths.append(('ann_file', _join(data_root, str(ds['ann_file']))))
    data_prefix = ds.get('data_prefix') or ''
    if isinstance(data_prefix, str):  # mmpretrain: one folder; ImageNet: `split` names it
        split = ds.get('split')
        if not data_prefix and isinstance(split, str) and split and data_root:
            paths.append(('split', _join(data_root, split)))
        elif data_prefix:
            paths.append(('data_prefix', _join(data_root, data_prefix)))
        data_prefix = {}
    for key, prefix in data_prefix.items():
        if isinstance(prefix, str) and (prefix or data_root):
            paths.append((f'data_prefix.{key}', _join(data_root, prefix)))
    return [(f, p) for f, p in paths if not _is_remote(p)]


def _load(cfg):
    if isinstance(cfg, (str, os.PathLike)):
        return Config.fromfile(str(cfg))
    return cfg


def find_missing_data(cfg):
    """Missing local paths of the config's data loaders, as a list of dicts.

    Each dict has ``path``, ``where`` (e.g. ``train_dataloader.dataset.ann_file``),
    ``type`` (dataset class name), ``family`` ('det', 'seg', 'cls' or None) and ``data_root``.
    """
    cfg = _load(cfg)
    default_scope = cfg.get('default_scope')
    missing, seen = [], set()
    for key in DATALOADER_KEYS:
        loaders = cfg.get(key)
        for j, loader in enumerate(loaders if isinstance(loaders, (list, tuple))
                                   else [loaders]):
            if not isinstance(loader, Mapping):
                continue
            root_where = f'{key}[{j}].dataset' if isinstance(loaders, (list, tuple)) \
                else f'{key}.dataset'
            for where, ds in _walk(loader.get('dataset'), root_where):
                for field, path in _dataset_paths(ds):
                    if osp.exists(path) or path in seen:
                        continue
                    seen.add(path)
                    missing.append(dict(
                        path=path, where=f'{where}.{field}',
                        type=_type_info(ds.get('type'))[0],
                        family=_family(ds.get('type'), default_scope),
                        data_root=str(ds.get('data_root') or '')))
    return missing


def format_missing_data(missing):
    """The multi-line explanation used by :func:`check_data_exists`."""
    lines = ['The data this config reads is not on disk. Missing:']
    for m in missing:
        lines.append(f'  - {m["path"]}')
        lines.append(f'      ({m["where"]}, {m["type"]})')
    if any(not osp.isabs(m['path']) for m in missing):
        lines.append(f'  (relative paths are read from the current directory, {os.getcwd()})')
    families = [f for f in ('det', 'seg', 'cls') if any(m['family'] == f for m in missing)]
    for family in families:
        title, tree, download, _ = _LAYOUTS[family]
        roots = sorted({m['data_root'] for m in missing if m['family'] == family} - {''})
        under = f' under data_root {", ".join(map(repr, roots))}' if roots else ''
        lines += ['', f'Expected {title}{under}:', tree, f'Real data: {download}.']
    if not families:
        lines += ['', 'Check data_root, ann_file and data_prefix of the datasets above.']
    toy = [_LAYOUTS[f][3] for f in families] or ['data/toy_coco', 'data/toy_ade20k',
                                                 'data/toy_imagenet']
    lines += ['',
              'Or make the small synthetic toy data instead (seconds, no download), '
              'from the mmfec repository root:',
              f'  {TOY_COMMAND}',
              f'It writes data/toy_coco (COCO layout), data/toy_ade20k (ADE20K layout) and '
              f'data/toy_imagenet (ImageNet folder layout); '
              f'then use a config whose data_root is {" or ".join(t + "/" for t in toy)}.']
    return '\n'.join(lines)


def check_data_exists(cfg):
    """Raise FileNotFoundError, with a fix, if a dataset path of ``cfg`` is missing.

    ``cfg`` is an mmengine ``Config``, a dict, or a config file path. Walks
    train/val/test dataloaders (missing or None ones are skipped) and wrapped datasets
    (``dataset``/``datasets`` of RepeatDataset, ConcatDataset, ClassBalancedDataset,
    ...), joining ``ann_file`` and ``data_prefix`` with ``data_root`` the way mmengine's
    BaseDataset does. Remote paths (``s3://``, ``http://``, non-local backends) are
    not checked.
    """
    missing = find_missing_data(cfg)
    if missing:
        raise FileNotFoundError(format_missing_data(missing))
