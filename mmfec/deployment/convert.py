"""Built model -> verified ONNX file: what ``tools/deployment/pytorch2onnx.py`` does after
``mmfec.apis.init_model``.

Steps: check the arguments (before anything slow), wrap the model (:mod:`.wrappers`),
export at the one requested size (:mod:`.export`), and with verification inputs compare
onnxruntime with PyTorch (:mod:`.verify`).
"""
import importlib.util
import os.path as osp
import time
from typing import Dict, Optional, Sequence

import torch

from ..utils.cli import UsageError, check_checkpoint_path, check_writable
from ..utils.images import read_image
from ..utils.tasks import CLASSIFIER, SEGMENTOR
from .export import DEFAULT_OPSET, MIN_OPSET, export_onnx
from .verify import format_report
from .verify import verify as run_verify
from .wrappers import wrap

MIN_SIDE = 32  # FEC's smallest input (FEC.min_input_size)
EXPORT_PACKAGES = ('onnx', 'onnxscript')
VERIFY_PACKAGES = ('onnxruntime',)


def _require(packages, what):
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UsageError(f'{what} needs {", ".join(missing)}, which is not installed; '
                         "install mmfec's deployment extra: pip install -e '.[deploy]' (or "
                         'pip install onnx onnxruntime onnxscript)')


def check_arguments(shape: Sequence[int], output_file: str, opset: int,
                    checkpoint: Optional[str], verify: bool, repeats: int,
                    image: Optional[str] = None):
    """One-line errors for every mistake that can be seen before the model is built."""
    if len(shape) != 2 or any(int(s) < MIN_SIDE for s in shape):
        raise UsageError(f'--shape {" ".join(map(str, shape))}: give the input height and '
                         f'width, each at least {MIN_SIDE} pixels (FEC\'s smallest input)')
    if not output_file.endswith('.onnx'):
        raise UsageError(f'--output-file {output_file}: the file name must end with .onnx')
    check_writable(output_file, '--output-file')
    if opset < MIN_OPSET:
        raise UsageError(f'--opset {opset}: the exporter writes opset {MIN_OPSET} or newer')
    if repeats < 1:
        raise UsageError(f'--repeats {repeats}: must be at least 1')
    if checkpoint is not None:
        check_checkpoint_path(checkpoint, 'CHECKPOINT')
    if image is not None and not verify:
        raise UsageError(f'--image {image}: the image is only used by --verify; add --verify')
    _require(EXPORT_PACKAGES, 'exporting to ONNX')
    if verify:
        _require(VERIFY_PACKAGES, '--verify')
        if image is not None:
            try:
                read_image(image)  # a bad file fails now, not after the export
            except UsageError as error:
                raise UsageError(f'--image: {error}') from None


def convert(model: torch.nn.Module, task: str, shape: Sequence[int], output_file: str,
            verify_inputs: Optional[Dict[str, torch.Tensor]] = None,
            opset: int = DEFAULT_OPSET, repeats: int = 5, threads: Optional[int] = None,
            name: str = 'the model', log=print):
    """Export ``model`` (a built, loaded model of ``task``: 'backbone', 'segmentor',
    'detector' or 'classifier', e.g. from ``mmfec.apis.init_model``) to
    ``output_file`` at input ``shape`` ``(H, W)``.

    With ``verify_inputs`` (``{label: [1, 3, H, W] tensor}``, preprocessed as the graph
    expects) onnxruntime is compared with PyTorch on each. Returns the
    :class:`.export.ExportResult` and the :class:`.verify.VerifyReport` (else ``None``).
    Every line goes through ``log``.
    """
    module = wrap(model, task)
    start = time.perf_counter()
    result = export_onnx(module, shape, output_file, opset)
    size_mib = osp.getsize(result.path) / 2**20
    outputs = ', '.join(f'{n} {list(s)}' for n, s in zip(result.output_names,
                                                         result.output_shapes))
    log(f'exported the {task} of {name} to {result.path} ({size_mib:.1f} MiB, opset '
        f'{result.opset}, {time.perf_counter() - start:.0f} s): {result.input_shape[0]}x'
        f'{result.input_shape[1]}x{result.input_shape[2]}x{result.input_shape[3]} input -> '
        f'{outputs}')
    if not verify_inputs:
        return result, None
    labels = {SEGMENTOR: 'pixel', CLASSIFIER: 'image'}.get(task)
    report = run_verify(module, result.path, result.output_names, verify_inputs,
                        labels=labels, repeats=repeats, threads=threads)
    for line in format_report(report):
        log(line)
    return result, report
