"""The poolings' certified low-precision screen (mmfec/models/layers/certified_argmax.py):
it ranks centers with a bf16/fp16 GEMM, certifies a point only when the rounding bound
proves its winner, and rechecks the rest in fp32, so the assignment is the fp32 one.

The screen is forced on here ('bf16'/'fp16'): on CPUs without native bf16 (this
project's CI) the default 'auto' leaves it off.
"""
import pytest
import torch
import torch.nn.functional as F

from mmfec.models.layers import ClusterPooling, assignment, certified_argmax, set_similarity_screen
from mmfec.models.layers.certified_argmax import (
    ScreenedCenters,
    error_offset,
    fast_screen_dtype,
    half_ulp,
    resolve_screen,
)
from mmfec.models.layers.certified_argmax import certified_argmax as screen
from mmfec.models.layers.regions import pooling_layout
from mmfec.testing import clustering_fec

LOW = [torch.bfloat16, torch.float16]
IDS = ['bf16', 'fp16']

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=1)


def _exact_argmax(points, centers):
    """fp64 arg-max of the cosine and the gap between the best two (``[B, n]``)."""
    cos = torch.bmm(F.normalize(points.double(), dim=1).transpose(1, 2), centers.double())
    top2 = cos.topk(2, dim=2)
    return top2.indices[..., 0], top2.values[..., 0] - top2.values[..., 1]


def _fp32_rounding(channels):
    """More than fp32 can misrank two cosines by: twice ``gamma_C`` plus the inputs'."""
    return 2 * (channels + 8) * 2.0 ** -23


def _near_ties(channels=32, centers=40, per_gap=30, seed=0):
    """Points built between two centers so that their two cosines differ by a chosen
    ``gap`` from 1e-1 down to 1e-8: below ~1e-2 a bf16 arg-max is a coin flip."""
    gen = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(1, channels, centers, generator=gen, dtype=torch.float64), dim=1)
    points = []
    for gap in torch.logspace(-1, -8, 15, dtype=torch.float64):
        i = torch.randint(0, centers, (per_gap,), generator=gen)
        j = (i + torch.randint(1, centers, (per_gap,), generator=gen)) % centers
        ci, cj = c[0][:, i], c[0][:, j]  # [C, k]
        mid = F.normalize(ci + cj, dim=0)
        # a step along ci - cj changes the cosines' difference by ~ step * |ci - cj|^2
        step = gap / (ci - cj).square().sum(0)
        points.append(mid + step * (ci - cj))
    pts = F.normalize(torch.cat(points, dim=1), dim=0).unsqueeze(0)
    return pts.float(), c.float()


def cosines_of(feats, centers, index):
    """fp64 cosine of every point of ``feats`` ``[B, C, H, W]`` to its center ``[B, N]``."""
    points = F.normalize(feats.double().flatten(2), dim=1)
    chosen = centers.double().flatten(2).gather(
        2, index.unsqueeze(1).expand(-1, feats.shape[1], -1))
    return (points * chosen).sum(1)


def _same_up_to_fp32_near_ties(index, ref, feats, centers):
    """Where the two assignments differ, both centers' exact cosines are within fp32
    rounding of each other (the definition of "the same as fp32")."""
    diff = (cosines_of(feats, centers, index) - cosines_of(feats, centers, ref)).abs()
    return bool((diff[index != ref] <= _fp32_rounding(feats.shape[1])).all())


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_the_rounding_bound_holds_for_every_entry_and_is_not_vacuous(dtype):
    points, centers = _unit(2, 48, 300, seed=1), _unit(2, 48, 200, seed=2)
    # adversarial rows too: equal-magnitude components round by the most, and many
    # components just above a power of two
    points[0, :, :20] = F.normalize(torch.ones(48, 20) + torch.rand(48, 20) * 2 ** -9, dim=0)
    region = ScreenedCenters(centers, dtype)
    low = points.to(dtype)
    rho = (low.float() - points).norm(dim=1)
    scores = torch.bmm(low.transpose(1, 2), region.low).float()  # [B, n, m]
    exact = torch.bmm(points.double().transpose(1, 2), centers.double())
    bound = error_offset(rho, region.sigma, 48).unsqueeze(2) + half_ulp(scores, dtype)
    error = (scores.double() - exact).abs()
    assert (error <= bound).all()
    assert float((error / bound).max()) > 0.2  # a bound, not a wall


def test_half_ulp_is_half_the_spacing_of_the_dtype():
    values = torch.tensor([0.5, 0.75, 0.99609375, 1.0, 0.25, -0.5])
    assert half_ulp(values, torch.bfloat16).tolist() == [2 ** -9] * 3 + [2 ** -8, 2 ** -10,
                                                                         2 ** -9]
    assert half_ulp(values[:1], torch.float16).tolist() == [2 ** -12]


# ------------------------------------------------------------ never a wrong winner
@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_near_ties_get_the_exact_winner_where_low_precision_gets_it_wrong(dtype):
    points, centers = _near_ties()
    exact, gap = _exact_argmax(points, centers)
    naive = torch.bmm(points.to(dtype).transpose(1, 2), centers.to(dtype)).argmax(2)
    decided = gap > _fp32_rounding(32)  # beyond fp32's own near-ties
    assert (naive != exact)[decided].sum() >= 10  # the low arg-max is wrong, often
    stats = {}
    best = screen(points, ScreenedCenters(centers, dtype), assignment.first_argmax, stats)
    assert torch.equal(best[decided], exact[decided])
    assert stats['rechecked'] >= int((naive != exact).sum())


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_a_certified_point_always_has_the_exact_winner(dtype):
    """Spy on the recheck: every point it is not asked about keeps the screen's own
    winner, and that winner is the exact one."""
    points, centers = _near_ties(seed=3)
    exact, gap = _exact_argmax(points, centers)
    asked = []
    original = certified_argmax._segment_first_argmax

    def spy(values, segment, index, segments, sentinel):
        asked.append(segments)
        return original(values, segment, index, segments, sentinel)

    certified_argmax._segment_first_argmax = spy
    try:
        stats = {}
        best = screen(points, ScreenedCenters(centers, dtype), assignment.first_argmax, stats)
    finally:
        certified_argmax._segment_first_argmax = original
    assert sum(asked) == stats['rechecked'] > 0
    assert torch.equal(best[gap > _fp32_rounding(32)], exact[gap > _fp32_rounding(32)])


def _low_cosine_ties(points=400, channels=64, seed=0):
    """Two centers and points nearly orthogonal to both (cosines ~0.035), between them by
    1e-2 down to 1e-6: there the low dtype's spacing is tiny next to the inputs' rounding,
    so its arg-max is wrong by several spacings, not by one."""
    gen = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(channels, 2, generator=gen, dtype=torch.float64), dim=0)
    orth = torch.randn(channels, points, generator=gen, dtype=torch.float64)
    basis, _ = torch.linalg.qr(c)
    orth = F.normalize(orth - basis @ (basis.t() @ orth), dim=0)
    mid = F.normalize(c.sum(1, keepdim=True), dim=0)
    delta = torch.logspace(-2, -6, points, dtype=torch.float64)
    delta[1::2] *= -1
    p = F.normalize(orth + 0.05 * mid + delta * (c[:, :1] - c[:, 1:]), dim=0)
    return p.float().unsqueeze(0), c.float().unsqueeze(0)


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_a_wrong_low_precision_winner_is_never_certified(dtype):
    """The low-precision arg-max is wrong, and leads by two spacings of the dtype or more
    (so a bound of the output's rounding alone would accept it): the screen must not."""
    points, centers = _low_cosine_ties()
    exact, gap = _exact_argmax(points, centers)
    scores = torch.bmm(points.to(dtype).transpose(1, 2), centers.to(dtype)).float()
    top2 = scores.topk(2, dim=2)
    lead = (top2.values[..., 0] - top2.values[..., 1]) / (2 * half_ulp(top2.values[..., 0], dtype))
    decided = gap > _fp32_rounding(64)
    wrong = (top2.indices[..., 0] != exact) & decided
    assert int((wrong & (lead >= 2)).sum()) >= 5
    stats = {}
    best = screen(points, ScreenedCenters(centers, dtype), assignment.first_argmax, stats)
    assert torch.equal(best[decided], exact[decided])
    assert stats['rechecked'] >= int(wrong.sum())


# ------------------------------------------------------- agreement with the fp32 path
@pytest.mark.parametrize('dtype', LOW, ids=IDS)
@pytest.mark.parametrize('channels, size, fold', [
    (16, (37, 53), (1, 1)),  # odd sizes
    (24, (40, 64), (2, 2)),  # folds
    (8, (31, 18), (3, 2)),  # odd sizes and uneven folds
])
def test_pooling_assignment_equals_the_fp32_one(dtype, channels, size, fold):
    feats = torch.randn(2, channels, *size, generator=torch.Generator().manual_seed(4))
    feats = feats.cumsum(dim=3)  # smooth maps: many points near two centers
    layout = pooling_layout(*size, fold)
    centers, ref = assignment.pooling_assignment(feats, layout)
    stats = {}
    centers_s, index = assignment.pooling_assignment(feats, layout, screen=dtype, stats=stats)
    assert torch.equal(centers_s, centers)
    assert torch.equal(index, ref)
    assert stats['points'] == 2 * size[0] * size[1] and stats['rechecked'] > 0


def test_small_chunks_give_the_same_assignment():
    feats = torch.randn(1, 16, 30, 40, generator=torch.Generator().manual_seed(5))
    layout = pooling_layout(30, 40, (2, 1))
    _, ref = assignment.pooling_assignment(feats, layout)
    _, index = assignment.pooling_assignment(feats, layout, chunk_elements=1000,
                                             screen=torch.bfloat16)
    assert torch.equal(index, ref)


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_constant_features_tie_everywhere_and_go_to_the_first_center(dtype):
    """Every cosine equal: all points to center 0 of their region, as fp32 gives; each
    row has every center as a candidate, so it takes the full-row recheck."""
    feats = torch.ones(1, 4, 30, 44)
    layout = pooling_layout(30, 44, (1, 1))
    _, ref = assignment.pooling_assignment(feats, layout)
    stats = {}
    _, index = assignment.pooling_assignment(feats, layout, screen=dtype, stats=stats)
    assert bool((ref == 0).all()) and torch.equal(index, ref)
    assert stats['full_rows'] == 30 * 44


def test_many_points_on_one_center():
    """A flat background (one feature vector, at different scales) and a random patch:
    every background point ties between all background centers, and the first of them
    takes them all, as in fp32."""
    gen = torch.Generator().manual_seed(6)
    scale = torch.rand(1, 1, 40, 40, generator=gen) + 0.5
    feats = torch.randn(1, 12, 1, 1, generator=gen) * scale
    feats[..., 6:14, 10:18] = torch.randn(1, 12, 8, 8, generator=gen)
    layout = pooling_layout(40, 40, (1, 1))
    centers, ref = assignment.pooling_assignment(feats, layout)
    _, index = assignment.pooling_assignment(feats, layout, screen=torch.bfloat16)
    # the background centers differ only by fp32 rounding (normalised from different
    # multiples of one vector): fp32 picks among them by rounding, so does the screen
    assert _same_up_to_fp32_near_ties(index, ref, feats, centers)
    background = torch.ones(40, 40, dtype=torch.bool)
    background[4:16, 8:20] = False
    winners = index.view(40, 40)[background]
    assert float(cosines_of(feats, centers, index).view(40, 40)[background].min()) > 1 - 1e-6
    assert len(winners.unique()) <= 20  # ~1450 points on a few of the 400 centers


@pytest.mark.parametrize('dtype', LOW, ids=IDS)
def test_low_precision_features_under_autocast(dtype):
    feats = torch.randn(2, 16, 26, 34, generator=torch.Generator().manual_seed(7)).to(dtype)
    layout = pooling_layout(26, 34, (2, 2))
    with torch.autocast('cpu', dtype=dtype):
        _, ref = assignment.pooling_assignment(feats, layout)
        _, index = assignment.pooling_assignment(feats, layout, screen=dtype)
    assert torch.equal(index, ref)


# ---------------------------------------------------------------- layers and models
def test_pooling_outputs_and_gradients_are_todays():
    pooling = ClusterPooling(8, 16, (2, 2))
    x = torch.randn(2, 8, 33, 47, generator=torch.Generator().manual_seed(8))
    results = []
    for setting in ('off', 'bf16'):
        pooling.screen = setting
        pooling.zero_grad()
        inp = x.clone().requires_grad_()
        out = pooling(inp)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, inp.grad, {n: p.grad for n, p in pooling.named_parameters()
                                        if p.grad is not None}))
    (out0, gx0, g0), (out1, gx1, g1) = results
    assert torch.equal(out0, out1) and torch.equal(gx0, gx1)
    assert g0.keys() == g1.keys() and all(torch.equal(g0[k], g1[k]) for k in g0)


@pytest.mark.parametrize('with_cp', [False, True])
def test_backbone_training_step_is_todays_with_the_screen(with_cp):
    model = clustering_fec('small', 0, proposal_sizes=7, fold_sizes=(2, 2, 1, 1),
                           with_cp=with_cp).train()
    img = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(9))
    runs = []
    for setting in ('off', 'bf16'):
        set_similarity_screen(model, setting)
        model.zero_grad()
        outs = model(img)
        sum((o * o).mean() for o in outs).backward()
        runs.append((outs, {n: p.grad.clone() for n, p in model.named_parameters()
                            if p.grad is not None}))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert torch.equal(a, b)
    for name, grad in runs[0][1].items():
        assert torch.equal(grad, runs[1][1][name]), name


def test_compiled_pooling_with_the_screen_matches_eager():
    """The screen runs inside the eager-only pooling assignment; torch.compile compiles
    the convs around it (aot_eager: graph capture and AOT autograd, no C++ build)."""
    pooling = ClusterPooling(8, 16, (2, 2), screen='bf16')
    x = torch.randn(1, 8, 30, 42, generator=torch.Generator().manual_seed(10),
                    requires_grad=True)
    eager = pooling(x)
    grad, = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(pooling, backend='aot_eager')(x)
    compiled_grad, = torch.autograd.grad(compiled.sum(), x)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(compiled_grad, grad)


# ---------------------------------------------------------------- settings
def test_the_dispatch_rule():
    """'auto': fp16 on CUDA; on CPU the screen was measured not to pay (fp32)."""
    assert fast_screen_dtype('cuda') == torch.float16
    assert fast_screen_dtype('cpu') is None and resolve_screen('auto', 'cpu') is None
    assert resolve_screen('auto', 'cuda') == torch.float16


def test_settings_and_the_off_switch():
    assert resolve_screen('off', 'cuda') is None and resolve_screen(False, 'cuda') is None
    assert resolve_screen('bf16', 'cpu') == torch.bfloat16
    assert resolve_screen(torch.float16, 'cpu') == torch.float16
    with pytest.raises(ValueError, match='screen must be'):
        ClusterPooling(4, 4, (1, 1), screen='int8')
    model = torch.nn.Sequential(ClusterPooling(4, 8, (1, 1)), ClusterPooling(8, 8, (1, 1)))
    assert [m.screen for m in set_similarity_screen(model, 'off')] == ['off', 'off']


def test_the_benchmark_measures_the_screen_on_and_off(tmp_path):
    import json

    from tool_utils import load_tool
    out_json = tmp_path / 'bench.json'
    bench = load_tool('benchmark.py')
    assert bench.main(['--smoke', '--models', 'fec-s', 'fec-s-fp32sim', 'fec-s-bf16sim',
                       '--baselines', '--modes', 'infer', '--json', str(out_json)]) == 0
    rows = {r['model']: r for r in json.loads(out_json.read_text())['results']}
    assert {m: r['status'] for m, r in rows.items()} == dict.fromkeys(
        ('fec-s', 'fec-s-fp32sim', 'fec-s-bf16sim'), 'ok')
    assert [rows[m]['screen'] for m in ('fec-s', 'fec-s-fp32sim', 'fec-s-bf16sim')] == [
        'fp32', 'fp32', 'bfloat16']
