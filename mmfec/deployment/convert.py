"""Config + checkpoint -> verified ONNX file: what ``tools/deployment/pytorch2onnx.py`` does.

Steps: check the arguments (before anything slow), build the config's model and load its
weights, wrap it (:mod:`.wrappers`), export at the one requested size (:mod:`.export`),
and with ``verify`` compare onnxruntime with PyTorch (:mod:`.verify`).
"""
import importlib.util
import os.path as osp
import time
from typing import Optional, Sequence

import torch

from mmfec.utils.cli import UsageError, check_checkpoint_path, load_config

from .build import SEGMENTOR, load_model
from .export import DEFAULT_OPSET, MIN_OPSET, export_onnx
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
    if osp.isdir(output_file):
        raise UsageError(f'--output-file {output_file} is a directory; name the .onnx file')
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
            from .inputs import read_image
            read_image(image)  # a bad file fails now, not after the export


def convert(config: str, checkpoint: Optional[str], shape: Sequence[int], output_file: str,
            verify: bool = False, opset: int = DEFAULT_OPSET, image: Optional[str] = None,
            repeats: int = 5, threads: Optional[int] = None, cfg_options=None,
            log=print):
    """Export ``config``'s model (with ``checkpoint``'s weights) to ``output_file``.

    Returns the :class:`.export.ExportResult` and, with ``verify``, the
    :class:`.verify.VerifyReport` (else ``None``). Every line the tool prints goes
    through ``log``; user mistakes raise :class:`~mmfec.utils.cli.UsageError`.
    """
    check_arguments(shape, output_file, opset, checkpoint, verify, repeats, image)
    cfg = load_config(config, cfg_options)
    torch.manual_seed(0)  # random weights (no checkpoint) are the same in every run
    model, kind, _ = load_model(cfg, checkpoint)
    module = wrap(model, kind)
    start = time.perf_counter()
    result = export_onnx(module, shape, output_file, opset)
    size_mib = osp.getsize(result.path) / 2**20
    outputs = ', '.join(f'{n} {list(s)}' for n, s in zip(result.output_names,
                                                         result.output_shapes))
    log(f'exported the {kind} of {config} to {result.path} ({size_mib:.1f} MiB, opset '
        f'{result.opset}, {time.perf_counter() - start:.0f} s): {result.input_shape[0]}x'
        f'{result.input_shape[1]}x{result.input_shape[2]}x{result.input_shape[3]} input -> '
        f'{outputs}')
    if not verify:
        return result, None
    from .inputs import image_input, random_input
    from .verify import format_report
    from .verify import verify as run_verify
    real, description = image_input(cfg, shape, image)
    report = run_verify(module, result.path, result.output_names,
                        {'random input': random_input(shape), description: real},
                        segmentor=kind == SEGMENTOR, repeats=repeats, threads=threads)
    for line in format_report(report):
        log(line)
    return result, report
