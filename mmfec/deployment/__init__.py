"""Deployment: FEC models (bare backbone, segmentor, detector) as ONNX graphs, verified
with onnxruntime. Guide: docs/deployment.md; tool: tools/deployment/pytorch2onnx.py.

Needs ``onnx``, ``onnxscript`` (export) and ``onnxruntime`` (verification), the
``mmfec[deploy]`` extra; importing this package does not.
"""
from .build import BACKBONE, DETECTOR, SEGMENTOR, load_model, model_kind
from .convert import convert
from .export import DEFAULT_OPSET, ExportResult, export_onnx
from .wrappers import (BackboneExport, SegmentorExport, SingleStageDetectorExport,
                       TwoStageDetectorExport, wrap)

__all__ = [
    'BACKBONE', 'DETECTOR', 'SEGMENTOR', 'load_model', 'model_kind', 'convert',
    'DEFAULT_OPSET', 'ExportResult', 'export_onnx', 'BackboneExport', 'SegmentorExport',
    'SingleStageDetectorExport', 'TwoStageDetectorExport', 'wrap'
]
