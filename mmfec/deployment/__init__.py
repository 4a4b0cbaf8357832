"""Deployment: FEC models (bare backbone, segmentor, detector, classifier) as ONNX graphs, verified
with onnxruntime. Guide: docs/deployment.md; tool: tools/deployment/pytorch2onnx.py.

Needs ``onnx``, ``onnxscript`` (export) and ``onnxruntime`` (verification), the
``mmfec[deploy]`` extra; importing this package does not.
"""
from .convert import check_arguments, convert
from .export import DEFAULT_OPSET, ExportResult, export_onnx
from .inputs import random_input, sized_image
from .wrappers import (
                       BackboneExport,
                       ClassifierExport,
                       SegmentorExport,
                       SingleStageDetectorExport,
                       TwoStageDetectorExport,
                       wrap,
)

__all__ = [
    'check_arguments', 'convert', 'DEFAULT_OPSET', 'ExportResult', 'export_onnx',
    'random_input', 'sized_image', 'BackboneExport', 'ClassifierExport', 'SegmentorExport',
    'SingleStageDetectorExport', 'TwoStageDetectorExport', 'wrap'
]
