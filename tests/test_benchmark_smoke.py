"""tools/benchmark.py and tools/get_flops.py run end to end (tiny inputs; no timing is
asserted), and the fused FEC layers the benchmark measures equal the plain ones."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from tool_utils import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCHMARK = osp.join(ROOT, 'tools', 'benchmark.py')
GET_FLOPS = osp.join(ROOT, 'tools', 'get_flops.py')


def test_benchmark_smoke_prints_every_row_and_valid_json(tmp_path):
    out_json = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, BENCHMARK, '--smoke', '--scaling', '--json', str(out_json)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out_json.read_text())
    bench = load_tool('benchmark.py')
    models = bench.DEFAULT_MODELS + bench.DEFAULT_BASELINES
    expected = {(m, mode) for m in models for mode in ('infer', 'train')}
    rows = {(r['model'], r['mode']) for r in payload['results'] if r['size'] == [64, 64]}
    assert rows == expected
    for r in payload['results']:
        assert r['status'] == 'ok', r
        assert r['time_ms'] > 0 and len(r['times_ms']) == 1
        assert r['peak_mib'] is None or r['peak_mib'] >= 0
    scaled = [r for r in payload['results'] if r['size'] == [128, 128]]
    assert {r['model'] for r in scaled} == {'fec-s', 'dense-s', 'r50', 'r50-unfrozen'}
    assert payload['machine']['torch'] == torch.__version__
    # the final table has one line per result, plus the targets
    table = proc.stdout[proc.stdout.index('| model | setting'):]
    for r in payload['results']:
        size = 'x'.join(map(str, r['size']))
        assert any(line.startswith(f"| {r['model']} |") and f'| {size} |' in line
                   and f"| {r['mode']} |" in line for line in table.splitlines()), r
    fec = next(r for r in payload['results']
               if r['model'] == 'fec-s' and r['mode'] == 'train' and r['size'] == [64, 64])
    assert 'time_vs_dense' in fec and 'time_vs_r50' in fec and 'time_vs_r50u' in fec
    assert {t['target'].split(' (')[0] for t in payload['targets']} >= {
        'train time FEC-S / dense', 'train time FEC-S / ResNet-50 frozen_stages=1 as in detectors',
        'train time FEC-S / ResNet-50 unfrozen'}
    assert '| target | value | limit | holds |' in proc.stdout


def test_benchmark_amp_rows_run_in_the_autocast_dtype(tmp_path):
    out_json = tmp_path / 'bench.json'
    bench = load_tool('benchmark.py')
    assert bench.main(['--smoke', '--models', 'fec-s', '--baselines', 'dense-s', 'r50',
                       '--modes', 'train', '--precisions', 'fp32', 'amp',
                       '--json', str(out_json)]) == 0
    results = json.loads(out_json.read_text())['results']
    amp = {r['model']: r for r in results if r['precision'] == 'amp'}
    assert set(amp) == {'fec-s', 'dense-s', 'r50'}
    assert all(r['status'] == 'ok' and r['amp_dtype'] == 'bfloat16' for r in amp.values())
    assert 'time_vs_dense' in amp['fec-s'] and 'time_vs_r50' in amp['fec-s']


def test_the_two_resnets_differ_in_what_they_train():
    from mmfec.benchmark.cases import build_resnet50
    frozen, frozen_name = build_resnet50(frozen=True)
    full, full_name = build_resnet50(frozen=False)
    assert 'frozen_stages=1' in frozen_name and 'frozen' not in full_name
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad)
                 for m in (frozen, full)]
    assert trainable[0] < trainable[1] == sum(p.numel() for p in full.parameters())
    frozen.train()
    assert not any(m.training for m in frozen.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_benchmark_rejects_unknown_models():
    from mmfec.benchmark.cases import parse_model
    bench = load_tool('benchmark.py')
    with pytest.raises(SystemExit):
        bench.parse_args(['--models', 'fec-x'])
    assert parse_model('fec-l-plain') == dict(kind='fec', arch='large', variant='plain')


def test_benchmark_without_a_selection_measures_nothing(capsys):
    """No arguments would be a run of one to two hours: it asks what to measure."""
    bench = load_tool('benchmark.py')
    with pytest.raises(SystemExit) as stop:
        bench.parse_args([])
    assert stop.value.code == 2
    assert '--all' in capsys.readouterr().err
    assert bench.parse_args(['--all']).models == bench.DEFAULT_MODELS


def test_benchmark_unwritable_json_is_one_line_before_any_case(tmp_path, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    bench = load_tool('benchmark.py')
    code = bench.main(['--smoke', '--models', 'fec-s', '--json', str(blocker / 'out.json')])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: --json') and 'is a file' in err
    assert err.count('\n') == 1


def test_dense_estimate_grows_quadratically():
    from mmfec.benchmark.cases import dense_lower_bound_bytes
    small = dense_lower_bound_bytes('small', (800, 1216), 1, True, 'auto')
    large = dense_lower_bound_bytes('small', (1600, 2432), 1, True, 'auto')
    assert 2 * 2**30 < small < 6 * 2**30  # measured: ~3.7 GiB allocated at peak
    assert large > 10 * small


def test_get_flops_backbone_config(capsys):
    tool = load_tool('get_flops.py')
    assert tool.main([osp.join(ROOT, 'configs', 'fec_small_backbone.py'),
                      '--shape', '64', '64', '--by-module']) == 0
    out = capsys.readouterr().out
    assert 'input shape: 1x3x64x64' in out
    params = float(out.split('params: ')[1].split(' M')[0])
    assert params == pytest.approx(5.41, abs=0.01)
    flops = float(out.split('FLOPs: ')[1].split(' G')[0])
    assert 0.05 < flops < 0.2  # ~1.37 G at 224x224, ~ (64/224)^2 of it here
    assert 'bmm' in out and 'scatter_add' in out


def test_flop_count_includes_the_clustering_matmuls():
    from mmfec.analysis import flops
    from mmfec.models import FEC
    model = FEC(dict(layers=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32),
                     mlp_ratios=(2, 2, 2, 2), heads=(1, 2, 2, 2), head_dims=4),
                proposal_sizes=2)
    result = flops.count_flops(model, torch.randn(1, 3, 64, 64))
    ops = result['by_operator']
    # pooling 0 -> 1: 16x16 points against 8x8 centers with 16 channels
    assert ops['bmm'] >= 16 * 16 * 8 * 8 * 16
    assert result['flops'] == sum(ops.values())
    assert result['params'] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('kwargs, size', [
    (dict(proposal_sizes=7, fold_sizes=(2, 2, 1, 1)), (97, 131)),  # uneven folds, odd sizes
    (dict(proposal_sizes=((3, 5), 4, 2, (1, 2)), fold_sizes=(3, 2, 2, 1)), (150, 70)),
])
def test_fused_layers_equal_the_plain_path_on_uneven_folds(kwargs, size):
    """The dense oracle needs folds that divide the map; on other sizes the fused path
    (averaging-matrix pooling, global center ids) is checked against the plain path."""
    from mmfec.models import FEC
    from mmfec.models.layers import plain_ops
    torch.manual_seed(0)
    arch = dict(layers=(2, 1, 2, 1), embed_dims=(16, 24, 32, 40), mlp_ratios=(2, 2, 2, 2),
                heads=(2, 2, 2, 2), head_dims=8)
    model = FEC(arch, **kwargs).train()
    for name, param in model.named_parameters():
        if 'layer_scale' in name:
            param.data.fill_(0.5)
        elif name.endswith('sim_alpha'):
            param.data.fill_(2.0)
    img = torch.randn(2, 3, *size)
    results = []
    for plain in (False, True):
        model.zero_grad()
        with plain_ops(model, plain):
            outs = model(img)
        sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum()
            for o in outs).backward()
        results.append((outs, {n: p.grad.clone() for n, p in model.named_parameters()
                               if p.grad is not None}))
    (fused, fused_grads), (plain, plain_grads) = results
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert fused_grads.keys() == plain_grads.keys()
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], rtol=1e-3,
                                   atol=1e-4, msg=name)


@pytest.mark.parametrize('shape', [(1, 70, 3800), (3, 40, 950), (2, 30, 256), (2, 9, 49)])
def test_blockwise_argmax_is_argmax_with_ties(shape):
    from mmfec.models.layers.assignment import first_argmax
    torch.manual_seed(0)
    scores = torch.randn(*shape)
    assert torch.equal(first_argmax(scores), scores.argmax(dim=2))
    ties = (scores * 3).round()  # many equal maxima, in and across blocks and the tail
    assert torch.equal(first_argmax(ties), ties.argmax(dim=2))
    ties[..., -1] = 100.0  # maximum only in the trailing partial block
    assert torch.equal(first_argmax(ties), ties.argmax(dim=2))
    ties[..., -1] = float('nan')  # NaN ranks first, as argmax ranks it, in the tail too
    assert torch.equal(first_argmax(ties), ties.argmax(dim=2))
    ties[..., 3] = float('nan')  # ... and the first NaN wins
    assert torch.equal(first_argmax(ties), ties.argmax(dim=2))


def test_the_layout_comparison_runs_both_sides_and_compares_outputs(capsys):
    """``python -m mmfec.benchmark.layouts``, tiny: with the threshold lowered, the small
    map's poolings run centers-major on one side, and both sides give the same outputs."""
    from mmfec.benchmark import layouts
    result = layouts.main(['--size', '64x64', '--mode', 'train', '--pairs', '1',
                           '--min-centers', '16', '--threads', '1'])
    assert result['same_outputs'] and len(result['ratios']) == 1
    assert 'centers-major from 16 centers' in capsys.readouterr().out


def test_the_step_profile_prints_the_step_and_its_ops(capsys):
    """``python -m mmfec.benchmark.profile_step``, tiny: the timed step's line, then the
    profiler's op table."""
    from mmfec.benchmark import profile_step
    profile_step.main(['--size', '64x64', '--rows', '3', '--threads', '1'])
    out = capsys.readouterr().out
    assert 'small det 64x64 batch 1 fp32 train' in out and 'one step' in out
    assert 'Self CPU time total' in out
