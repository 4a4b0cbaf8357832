"""Helpers outside the models: safe checkpoint loading, tool support."""
from .safe_checkpoint import (
                              CheckpointError,
                              CheckpointNotFoundError,
                              InvalidCheckpointError,
                              UnsafeCheckpointError,
                              install_safe_checkpoint_loader,
                              safe_load_url,
                              safe_torch_load,
)

__all__ = [
    'CheckpointError', 'CheckpointNotFoundError', 'InvalidCheckpointError',
    'UnsafeCheckpointError', 'install_safe_checkpoint_loader', 'safe_load_url',
    'safe_torch_load'
]
