"""Config + checkpoint -> verified ONNX file, the whole of
``tools/deployment/pytorch2onnx.py``: :func:`mmfec.apis.init_model`, then
:mod:`mmfec.deployment` for the export and the onnxruntime check."""
import sys
from typing import Optional, Sequence

import torch

from ..deployment import check_arguments, convert, random_input, sized_image
from ..deployment.export import DEFAULT_OPSET
from .inference import prepare_input
from .model import init_model, model_task

RANDOM_WEIGHTS_WARNING = ('warning: no CHECKPOINT given, so the exported model has random '
                          'weights; pass a trained checkpoint to export a usable model')


def export_model(config: str, checkpoint: Optional[str], shape: Sequence[int],
                 output_file: str, verify: bool = False, opset: int = DEFAULT_OPSET,
                 image: Optional[str] = None, repeats: int = 5,
                 threads: Optional[int] = None, cfg_options=None, log=print, warn=None):
    """Export ``config``'s model (with ``checkpoint``'s weights; random ones, seeded, and
    a warning without) to ``output_file`` at input ``shape`` ``(H, W)``.

    With ``verify`` onnxruntime is compared with PyTorch on random input and on ``image``
    (else a synthetic scene), resized to ``(H, W)`` and normalised by the config's data
    preprocessor. Returns ``(ExportResult, VerifyReport or None)``; user mistakes raise
    ``UsageError`` before anything slow.
    """
    check_arguments(shape, output_file, opset, checkpoint, verify, repeats, image)
    model = init_model(config, checkpoint, cfg_options=cfg_options, seed=0)
    if checkpoint is None:
        (warn or (lambda line: print(line, file=sys.stderr)))(RANDOM_WEIGHTS_WARNING)
    else:
        log(model.checkpoint_summary)
    inputs = None
    if verify:
        height, width = (int(s) for s in shape)
        picture, description = sized_image(shape, image)
        with torch.no_grad():
            real = prepare_input(model, picture, native_size=True).inputs
        inputs = {'random input': random_input(shape),
                  description: real[..., :height, :width].contiguous()}
    return convert(model, model_task(model), shape, output_file, verify_inputs=inputs,
                   opset=opset, repeats=repeats, threads=threads, name=config, log=log)
