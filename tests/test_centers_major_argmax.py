"""The poolings' similarity laid out centers-major on CPU
(mmfec/models/layers/centers_major.py): ``[M, C] x [C, n]`` and an arg-max down the
columns must give the assignment of the points-major ``[n, C] x [C, M]`` path.

Both layouts compute the same dot products; with MKL (this project's torch wheels) they
sum in the same order and agree bit for bit. The assignment tests allow another BLAS to
differ at fp32 near-ties only. Regions of the default threshold (2048 centers) need large
maps; most tests lower the threshold instead, so tiny inputs take the centers-major path.
"""
import pytest
import torch

from mmfec.models.layers import ClusterPooling, assignment
from mmfec.models.layers.assignment import first_argmax
from mmfec.models.layers.centers_major import (
    BLOCK,
    CentersMajorArgmax,
    first_argmax_centers_major,
)
from mmfec.models.layers.regions import pooling_layout

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _same_up_to_fp32_near_ties(index, ref, feats, centers):
    """Equal, or the two chosen centers' fp64 cosines within fp32 rounding of each other."""
    differ = index != ref
    if not bool(differ.any()):
        return True
    points = torch.nn.functional.normalize(feats.double().flatten(2), dim=1)
    flat = centers.double().flatten(2)
    cos_a = (points * flat.gather(2, index.unsqueeze(1).expand_as(points))).sum(1)
    cos_b = (points * flat.gather(2, ref.unsqueeze(1).expand_as(points))).sum(1)
    return bool(((cos_a - cos_b).abs()[differ] < 1e-6).all())


@pytest.fixture
def centers_major(monkeypatch):
    """Run ``fn`` with every region centers-major (True) or none (False)."""
    def run(on, fn, *args, **kwargs):
        monkeypatch.setattr(assignment, 'CENTERS_MAJOR_MIN_CENTERS', 1 if on else 10 ** 9)
        return fn(*args, **kwargs)
    return run


@pytest.mark.parametrize('shape', [(3800 // BLOCK * BLOCK, 70), (256, 33), (BLOCK, 5)])
def test_the_column_argmax_is_argmax(shape):
    scores = _randn(*shape)
    assert torch.equal(first_argmax_centers_major(scores), scores.argmax(dim=0))


def test_the_column_argmax_takes_the_first_of_equal_maxima():
    ties = (_randn(512, 40, seed=1) * 3).round()  # equal maxima in and across blocks
    ties[:, 0] = 7.0  # a whole column tied
    ties[300, 1] = ties[450, 1] = 100.0  # the maximum twice, in different blocks
    assert torch.equal(first_argmax_centers_major(ties), ties.argmax(dim=0))
    assert first_argmax_centers_major(ties)[0] == 0 and first_argmax_centers_major(ties)[1] == 300


def test_the_column_argmax_ranks_nan_first_as_argmax_does():
    scores = _randn(256, 6, seed=2)
    scores[200, 0] = float('nan')
    scores[10, 1] = scores[130, 1] = float('nan')
    scores[:, 2] = float('-inf')
    assert torch.equal(first_argmax_centers_major(scores), scores.argmax(dim=0))


def test_padding_rows_never_win():
    """``M`` not a multiple of the block: the ``-inf`` rows lose even to a column of
    ``-inf`` cosines (argmax gives the first real center) and to very negative ones."""
    centers = torch.nn.functional.normalize(_randn(8, 200, seed=3).abs(), dim=0)
    points = -_randn(8, 7, seed=4).abs() - 1.0  # every cosine below 0
    scores = torch.mm(points.t(), centers)
    assert float(scores.max()) < 0
    best = CentersMajorArgmax(centers)(points)
    assert torch.equal(best, scores.argmax(dim=1))
    inf_points = torch.full((8, 3), float('-inf'))  # every cosine -inf (or nan)
    assert torch.equal(CentersMajorArgmax(centers)(inf_points),
                       torch.mm(inf_points.t(), centers).argmax(dim=1))


def test_chunks_of_every_width_match_the_points_major_argmax():
    """The buffer is reused while the width stays and replaced when it changes: each
    chunk's result is its own."""
    centers = torch.nn.functional.normalize(_randn(16, 300, seed=4), dim=0)
    region = CentersMajorArgmax(centers)
    for width, seed in [(40, 5), (17, 6), (40, 7), (1, 8)]:
        chunk = _randn(16, width, seed=seed)
        expected = first_argmax(torch.bmm(chunk.t()[None], centers[None]))[0]
        assert torch.equal(region(chunk), expected)


@pytest.mark.parametrize('batch,size,fold', [
    (1, (30, 44), (1, 1)),
    (2, (33, 47), (2, 2)),  # odd sizes, uneven fold regions
    (3, (31, 18), (3, 2)),
])
def test_pooling_assignment_is_the_same_either_way(centers_major, batch, size, fold):
    feats = _randn(batch, 8, *size, seed=9).cumsum(dim=3)  # smooth: many near-ties
    layout = pooling_layout(*size, fold)
    centers, index = centers_major(True, assignment.pooling_assignment, feats, layout)
    centers_ref, ref = centers_major(False, assignment.pooling_assignment, feats, layout)
    assert torch.equal(centers, centers_ref)
    assert _same_up_to_fp32_near_ties(index, ref, feats, centers)


def test_small_chunks_give_the_same_assignment(centers_major):
    feats = _randn(2, 16, 30, 40, seed=10)
    layout = pooling_layout(30, 40, (2, 1))
    centers, ref = centers_major(False, assignment.pooling_assignment, feats, layout)
    _, index = centers_major(True, assignment.pooling_assignment, feats, layout,
                             chunk_elements=1000)
    assert _same_up_to_fp32_near_ties(index, ref, feats, centers)


def test_constant_features_go_to_the_first_center(centers_major):
    layout = pooling_layout(30, 44, (1, 1))
    _, index = centers_major(True, assignment.pooling_assignment, torch.ones(1, 4, 30, 44),
                             layout)
    assert bool((index == 0).all())


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_low_precision_features_under_autocast(centers_major, dtype):
    feats = _randn(2, 16, 26, 34, seed=11).to(dtype)
    layout = pooling_layout(26, 34, (2, 2))
    with torch.autocast('cpu', dtype=dtype):
        centers, ref = centers_major(False, assignment.pooling_assignment, feats, layout)
        _, index = centers_major(True, assignment.pooling_assignment, feats, layout)
    assert _same_up_to_fp32_near_ties(index, ref, feats, centers)


def test_a_pooling_gives_the_same_outputs_and_gradients_either_way(centers_major):
    """Bit for bit where both layouts sum alike (MKL): random features, no built ties."""
    pooling = ClusterPooling(8, 16, (2, 2))
    x = _randn(2, 8, 33, 47, seed=12)
    runs = []
    for on in (False, True):
        pooling.zero_grad()
        inp = x.clone().requires_grad_()
        out = centers_major(on, pooling, inp)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        runs.append((out, inp.grad, {n: p.grad for n, p in pooling.named_parameters()
                                        if p.grad is not None}))
    (out0, gx0, g0), (out1, gx1, g1) = runs
    assert torch.equal(out0, out1) and torch.equal(gx0, gx1)
    assert g0 and g0.keys() == g1.keys() and all(torch.equal(g0[k], g1[k]) for k in g0)


def test_large_regions_take_the_centers_major_path_by_default(monkeypatch):
    """A 96x96 map in one region has 2304 centers (>= 2048): centers-major, once per
    image and chunk; a 60x60 map (900 centers) keeps the points-major path."""
    calls = []
    original = CentersMajorArgmax.__call__

    def spy(self, chunk):
        calls.append(chunk.shape)
        return original(self, chunk)

    monkeypatch.setattr(CentersMajorArgmax, '__call__', spy)
    assignment.pooling_assignment(_randn(2, 4, 96, 96, seed=13), pooling_layout(96, 96, (1, 1)))
    assert calls and sum(shape[1] for shape in calls) == 2 * 96 * 96
    calls.clear()
    assignment.pooling_assignment(_randn(1, 4, 60, 60, seed=14), pooling_layout(60, 60, (1, 1)))
    assert not calls


def test_one_score_buffer_at_a_time():
    region = CentersMajorArgmax(torch.nn.functional.normalize(_randn(4, 100, seed=15), dim=0))
    region(_randn(4, 30, seed=16))
    first = region.scores
    region(_randn(4, 30, seed=17))
    assert region.scores is first  # same width: reused
    region(_randn(4, 7, seed=18))
    assert region.scores.shape == (2 * BLOCK, 7)  # new width: replaced
