"""Put mmfec's modules into every OpenMMLab registry of a kind that is installed.

mmdet, mmseg and mmpretrain each have their own child registries, and a module registered
in one is invisible from the others' scopes, so mmfec's modules go into each of them that
is installed (and into mmengine's root).
"""
import importlib
import importlib.util

import mmengine.registry

DOWNSTREAM_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def register_everywhere(kind: str, *modules, scopes=DOWNSTREAM_SCOPES):
    """Register ``modules`` in mmengine's registry ``kind`` (e.g. 'MODELS', 'HOOKS') and in
    the registry of that kind of each of ``scopes`` (default mmdet, mmseg, mmpretrain)
    that is installed."""
    registries = [getattr(mmengine.registry, kind)]
    for scope in scopes:
        if importlib.util.find_spec(scope) is not None:
            registries.append(getattr(importlib.import_module(f'{scope}.registry'), kind))
    for registry in registries:
        for module in modules:
            registry.register_module(module=module, force=True)
    return registries
