"""mmfec: FEC backbones for MMDetection 3.x and MMSegmentation 1.x.

``import mmfec`` (or ``custom_imports=dict(imports=['mmfec'])`` in a config) registers the
``FEC`` backbone in mmdet's and mmseg's registries and routes every mmengine checkpoint
load through a data-only loader; it also registers mmfec's hooks, and lets any config
inherit mmfec's configs as ``_base_ = 'mmfec::fec/<config>.py'``.
"""
from .version import __version__

try:
    from .utils.safe_checkpoint import install_safe_checkpoint_loader
except ImportError as exc:  # pragma: no cover - only while the module is being written
    if 'safe_checkpoint' not in str(exc):
        raise
else:
    install_safe_checkpoint_loader()

from .utils.package_configs import install_mmfec_config_prefix  # noqa: E402

install_mmfec_config_prefix()  # `_base_ = 'mmfec::fec/<config>.py'` in any config
from . import engine, models  # noqa: E402,F401  (registers FEC and mmfec's hooks)
from .models import FEC, ClusterRecorder  # noqa: E402

__all__ = ['__version__', 'FEC', 'ClusterRecorder']
