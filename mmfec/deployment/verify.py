"""Run an exported graph with onnxruntime (CPU) and hold it against PyTorch.

Why: a graph that loads is not yet a graph that computes the model. For each input this
reports, per output, the largest difference from PyTorch's eager model (its default, fused
path) and the share of elements off by more than ``1e-3`` relative; for a segmentor the
share of pixels whose arg-max label agrees, and for the pixels that flipped, PyTorch's own
margin between its two best classes (a flip at a near-tie is float rounding taking the
other side, not a wrong graph). The same figures for PyTorch's own plain-ops path (the one
the export traces) against its fused path show how far float order alone moves FEC's
outputs: a clustering arg-max that flips moves a point to another center. Both runtimes
are timed on the same input and threads, in alternation.

"Off" means ``|onnx - torch| > rtol * (|torch| + mean |torch|)``: relative to the element,
with the output's mean magnitude as a floor so that elements near zero (where any
rounding is a large relative change) are judged against the output's scale.
"""
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from mmfec.models.layers import plain_ops

RTOL = 1e-3


@dataclass
class OutputAgreement:
    """One output on one input: its ``name``, ``shape``, largest absolute difference,
    largest absolute PyTorch value and share of elements off (0-1)."""
    name: str
    shape: tuple
    max_diff: float
    max_ref: float
    off_share: float


@dataclass
class LabelAgreement:
    """A segmentor's per-pixel arg-max: share of pixels with the same label, how many
    flipped, and PyTorch's largest top-1/top-2 logit margin among the flipped pixels."""
    same_share: float
    flipped: int
    pixels: int
    max_flipped_margin: float


ONNXRUNTIME = 'onnxruntime'
PLAIN_PATH = "PyTorch's plain-ops path"


@dataclass
class Comparison:
    """Everything compared on one input (``label`` says which, e.g. 'random input'), for
    ``against`` (:data:`ONNXRUNTIME`, or :data:`PLAIN_PATH`: PyTorch's own traced path,
    whose differences from the fused path show the size of float-order effects alone)."""
    label: str
    outputs: List[OutputAgreement]
    labels: Optional[LabelAgreement] = None
    against: str = ONNXRUNTIME
    unit: Optional[str] = None  # what a label belongs to: 'pixel' or 'image'

    @property
    def max_diff(self) -> float:
        return max(o.max_diff for o in self.outputs)

    @property
    def off_share(self) -> float:
        sizes = [int(np.prod(o.shape)) for o in self.outputs]
        return sum(o.off_share * n for o, n in zip(self.outputs, sizes)) / sum(sizes)


@dataclass
class Latency:
    """Wall time of one forward pass: median, min and max over ``repeats`` runs (ms)."""
    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int


@dataclass
class VerifyReport:
    """:func:`verify`'s result."""
    comparisons: List[Comparison]
    torch_latency: Latency
    ort_latency: Latency
    threads: int
    providers: List[str] = field(default_factory=list)


def onnxruntime_session(path: str, threads: int, optimize: bool = True):
    """A CPU ``InferenceSession`` on ``threads`` intra-op threads, with all of
    onnxruntime's graph optimisations (or none, ``optimize=False``). Its idle threads do
    not spin (by default they busy-wait after a run, taking the cores from whatever runs
    next, here PyTorch's timed run)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def compare_output(name: str, ref: np.ndarray, got: np.ndarray,
                   rtol: float = RTOL) -> OutputAgreement:
    """How far ``got`` (onnxruntime) is from ``ref`` (PyTorch); see the module doc."""
    if ref.shape != got.shape:
        raise ValueError(f'output {name}: onnxruntime gave shape {got.shape}, PyTorch '
                         f'{ref.shape}')
    diff = np.abs(got.astype(np.float64) - ref)
    scale = np.abs(ref).astype(np.float64)
    off = diff > rtol * (scale + scale.mean())
    return OutputAgreement(name, tuple(ref.shape), float(diff.max(initial=0.0)),
                           float(scale.max(initial=0.0)), float(off.mean()) if off.size else 0.)


def label_agreement(ref_logits: np.ndarray, got_logits: np.ndarray) -> LabelAgreement:
    """Arg-max over the class dim (1) of ``[1, K, H, W]`` (per pixel) or ``[1, K]`` (per
    image) logits."""
    ref_labels, got_labels = ref_logits.argmax(1), got_logits.argmax(1)
    flipped = ref_labels != got_labels
    margin = 0.0
    if flipped.any():
        top2 = np.sort(ref_logits, axis=1)[:, -2:]  # [1, 2, H, W]
        margin = float((top2[:, 1] - top2[:, 0])[flipped].max())
    return LabelAgreement(float(1.0 - flipped.mean()), int(flipped.sum()),
                          int(flipped.size), margin)


def time_alternating(runs: Sequence[Callable[[], object]], repeats: int,
                     warmup: int = 1) -> List[Latency]:
    """Wall time of each of ``runs``, called in turn ``repeats`` times after ``warmup``
    rounds: on a machine shared with other jobs both runtimes then see the same load,
    which timing one after the other would not give them."""
    for _ in range(warmup):
        for run in runs:
            run()
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times):
            start = time.perf_counter()
            run()
            spent.append((time.perf_counter() - start) * 1e3)
    return [Latency(float(np.median(t)), min(t), max(t), repeats) for t in times]


def verify(module: torch.nn.Module, path: str, output_names: Sequence[str],
           inputs: Dict[str, torch.Tensor], labels: Optional[str] = None, repeats: int = 5,
           threads: Optional[int] = None, input_name: str = 'input') -> VerifyReport:
    """Compare the graph at ``path`` (and, for scale, PyTorch's plain-ops path) with
    ``module`` on every input, then time PyTorch and onnxruntime.

    Args:
        module: the wrapped PyTorch model that was exported (eval mode).
        path: the ``.onnx`` file.
        output_names: the graph's outputs, in ``module``'s order.
        inputs: ``{label: [1, 3, H, W] tensor}``; the last one is also timed.
        labels: 'pixel' (segmentor) or 'image' (classifier): also compare the arg-max
            labels of the first output (logits ``[1, K, H, W]`` or ``[1, K]``).
        repeats: timed runs per runtime (after one warm-up run).
        threads: threads for both runtimes (default: PyTorch's current number).
    """
    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        session = onnxruntime_session(path, threads)
        comparisons = []
        for label, image in inputs.items():
            with torch.no_grad():
                ref = [t.numpy() for t in module(image)]
                with plain_ops(module):
                    plain = [t.numpy() for t in module(image)]
            got = session.run(list(output_names), {input_name: image.numpy()})
            for against, other in ((ONNXRUNTIME, got), (PLAIN_PATH, plain)):
                outputs = [compare_output(n, r, g) for n, r, g in zip(output_names, ref, other)]
                agreement = label_agreement(ref[0], other[0]) if labels else None
                comparisons.append(Comparison(label, outputs, agreement, against, labels))
        feed = {input_name: image.numpy()}
        with torch.no_grad():
            torch_latency, ort_latency = time_alternating(
                [lambda: module(image), lambda: session.run(None, feed)], repeats)
    finally:
        torch.set_num_threads(previous_threads)
    return VerifyReport(comparisons, torch_latency, ort_latency, threads,
                        session.get_providers())


def format_report(report: VerifyReport) -> List[str]:
    """The lines ``--verify`` prints."""
    lines = []
    for comp in report.comparisons:
        worst = max(comp.outputs, key=lambda o: o.max_diff)
        what = (f'{comp.label}, onnxruntime vs PyTorch' if comp.against == ONNXRUNTIME else
                f'{comp.label}, for scale {comp.against} vs its fused one')
        lines.append(f'{what}: largest difference {comp.max_diff:.3g} (output '
                     f'{worst.name}, whose largest value is {worst.max_ref:.3g}); '
                     f'{100 * comp.off_share:.4g}% of output elements off by more than '
                     f'{RTOL:g} relative')
        if comp.labels is not None:
            lab = comp.labels
            unit = comp.unit or 'pixel'
            line = (f'{what}: {100 * lab.same_share:.4f}% of {unit}s have the same '
                    f'label ({lab.flipped} of {lab.pixels} differ')
            if lab.flipped:
                line += (f'; PyTorch\'s own top-2 logit margin at those {unit}s is at most '
                         f'{lab.max_flipped_margin:.3g}')
            lines.append(line + ')')
    t, o = report.torch_latency, report.ort_latency
    lines.append(f'latency on {report.threads} thread(s), median of {t.repeats} '
                 f'alternating runs (min-max): PyTorch eager {t.median_ms:.1f} ms ({t.min_ms:.1f}-'
                 f'{t.max_ms:.1f}), onnxruntime {o.median_ms:.1f} ms ({o.min_ms:.1f}-'
                 f'{o.max_ms:.1f}), ratio onnxruntime/PyTorch {o.median_ms / t.median_ms:.2f}')
    return lines
