"""Put FEC into every OpenMMLab ``MODELS`` registry that is installed.

mmdet and mmseg each have their own child registry, and a module registered in one is
invisible from the other's scope, so FEC goes into both (and into mmengine's root).
"""
import importlib
import importlib.util

from mmengine.registry import MODELS as ROOT_MODELS

DOWNSTREAM_REGISTRIES = ('mmdet.registry', 'mmseg.registry')


def register_modules(*modules):
    """Register ``modules`` in mmengine's root MODELS and in mmdet's / mmseg's if installed."""
    registries = [ROOT_MODELS]
    for path in DOWNSTREAM_REGISTRIES:
        if importlib.util.find_spec(path.split('.')[0]) is not None:
            registries.append(importlib.import_module(path).MODELS)
    for registry in registries:
        for module in modules:
            registry.register_module(module=module, force=True)
    return registries
