"""Put mmfec's modules into every OpenMMLab registry of a kind that is installed.

mmdet and mmseg each have their own child registries, and a module registered in one is
invisible from the other's scope, so mmfec's modules go into both (and into mmengine's root).
"""
import importlib
import importlib.util

import mmengine.registry

DOWNSTREAM_SCOPES = ('mmdet', 'mmseg')


def register_everywhere(kind: str, *modules):
    """Register ``modules`` in mmengine's registry ``kind`` (e.g. 'MODELS', 'HOOKS') and in
    mmdet's / mmseg's registry of that kind where those packages are installed."""
    registries = [getattr(mmengine.registry, kind)]
    for scope in DOWNSTREAM_SCOPES:
        if importlib.util.find_spec(scope) is not None:
            registries.append(getattr(importlib.import_module(f'{scope}.registry'), kind))
    for registry in registries:
        for module in modules:
            registry.register_module(module=module, force=True)
    return registries
