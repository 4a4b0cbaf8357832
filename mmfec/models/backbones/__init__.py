from .fec import FEC

__all__ = ['FEC']
