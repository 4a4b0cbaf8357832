from .dense_reference import dense_fec_forward

__all__ = ['dense_fec_forward']
