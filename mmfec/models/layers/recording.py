"""Opt-in recording of cluster assignments.

Clustering layers call :func:`emit` after each forward. It does nothing unless a
recorder is active (one attribute check), so the normal forward pays nothing. A recorder
is installed by :class:`mmfec.models.ClusterRecorder` (a context manager).
"""
from typing import Any, Callable, Dict, Optional

import torch.nn as nn

_ATTR = '_mmfec_recorder'


def set_recorder(module: nn.Module,
                 recorder: Optional[Callable[[nn.Module, Dict[str, Any]], None]]):
    setattr(module, _ATTR, recorder)


def is_recording(module: nn.Module) -> bool:
    return getattr(module, _ATTR, None) is not None


def emit(module: nn.Module, record: Dict[str, Any]) -> None:
    recorder = getattr(module, _ATTR, None)
    if recorder is not None:
        recorder(module, record)
