"""Classifiers built from MMPretrain's parts (imported only where mmpretrain is installed)."""
from .fec_classifier import FECImageClassifier, convert_official_classifier, is_official_classifier

__all__ = ['FECImageClassifier', 'convert_official_classifier', 'is_official_classifier']
