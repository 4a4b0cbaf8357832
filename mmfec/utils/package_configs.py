"""``mmfec::`` bases: any config, anywhere, inherits mmfec's configs from the package.

    _base_ = 'mmfec::fec/maskrcnn_fec.py'      # = configs/maskrcnn_fec.py of this repository

As mmdet ships its configs in ``mmdet/.mim/configs`` for ``mmdet::`` bases, mmfec ships
the repository's ``configs/`` as ``mmfec/.mim/configs`` (symbolic links in a checkout and
in an editable install, copies in a wheel), with ``model-index.yml`` beside it. The
folder ``fec/`` in the name is required by mmengine's ``package::folder/file.py`` form
and stands for that configs folder.

Why mmfec resolves the name itself instead of adding itself to mmengine's
``MODULE2PACKAGE``: mmengine would then (1) look in ``get_installed_path('mmfec')``, which
is ``site-packages/mmfec`` for an editable install, a folder that does not exist, and
(2) give the base's top-level typed dicts ``_scope_='mmfec'``, a registry scope that does
not exist, so they are built from mmengine's root registries: a user's
``pipeline={{_base_.train_pipeline}}`` then gets mmcv's ``LoadAnnotations`` instead of
mmdet's and fails (``unexpected keyword argument 'with_mask'``). Here a ``mmfec::`` base
is read exactly like the file itself: from the imported package's ``.mim/configs``, with
no scope of its own, so its dicts are built in the task's default scope (``mmdet`` or
``mmseg``, set by the ``mmdet::``/``mmseg::`` bases it inherits).

mmengine reads ``_base_`` before a config's ``custom_imports``, so mmfec must already be
imported when ``Config.fromfile`` runs: ``import mmfec`` installs this (mmfec's tools
import it first; ``mim train mmfec CONFIG`` runs them).
"""
import os
import os.path as osp

from mmengine.config import Config

PREFIX = 'mmfec::'
FOLDER = 'fec'


def package_configs_dir() -> str:
    """The folder mmfec's configs are shipped in: ``<package>/.mim/configs``."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim', 'configs')


def shipped_configs() -> list:
    """The file names of the shipped configs (``maskrcnn_fec.py``, ...), sorted."""
    root = package_configs_dir()
    if not osp.isdir(root):
        return []
    return sorted(name for name in os.listdir(root) if name.endswith('.py'))


def resolve_mmfec_config(name: str) -> str:
    """``'mmfec::fec/maskrcnn_fec.py'`` -> the absolute path of that shipped config.

    Raises:
        ValueError: the name is not of the form ``mmfec::fec/<file>.py``.
        FileNotFoundError: no such config is shipped (the message lists the ones that are).
    """
    relative = name[len(PREFIX):] if name.startswith(PREFIX) else name
    folder, _, file_name = relative.partition('/')
    if folder != FOLDER or not file_name:
        raise ValueError(f"'{name}': mmfec's configs are named '{PREFIX}{FOLDER}/<config>.py', "
                         f"e.g. '{PREFIX}{FOLDER}/maskrcnn_fec.py'")
    path = osp.join(package_configs_dir(), *file_name.split('/'))
    if not osp.isfile(path):
        available = ', '.join(shipped_configs()) or 'none (this mmfec install has no configs)'
        raise FileNotFoundError(f"'{name}' is not one of mmfec's configs ({available}); they "
                                f'are in {package_configs_dir()}')
    return path


def install_mmfec_config_prefix() -> None:
    """Make ``Config.fromfile`` read ``mmfec::fec/...`` bases (idempotent)."""
    current = Config.__dict__['_get_cfg_path']
    if getattr(current, '__func__', current).__name__ == '_get_cfg_path_with_mmfec':
        return
    original = current.__func__ if isinstance(current, staticmethod) else current

    def _get_cfg_path_with_mmfec(cfg_path, filename):
        if isinstance(cfg_path, str) and cfg_path.startswith(PREFIX):
            return resolve_mmfec_config(cfg_path), None
        return original(cfg_path, filename)

    Config._get_cfg_path = staticmethod(_get_cfg_path_with_mmfec)
