"""The prepared GPU check (tools/gpu_check.sh -> mmfec.benchmark.gpu_check): its CPU half.

On a CUDA machine the same code runs the full sizes; here ``--device cpu --quick`` checks
that every section runs, reports and passes (torch.compile is covered by
tests/test_mixed_precision.py; compiling again here would only add a minute).
"""
import json

import pytest
import torch

from mmfec.benchmark import gpu_check

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.mark.slow
def test_quick_cpu_run_passes_and_writes_both_reports(tmp_path):
    code = gpu_check.main(['--device', 'cpu', '--quick', '--sections', 'exact', 'amp', 'bench',
                           '--out-dir', str(tmp_path)])
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert code == 0, report['failed']
    assert [row['arch'] for row in report['exact']] == ['small']
    assert report['exact'][0]['ok_vs_dense'] and report['exact'][0]['ok_vs_cpu']
    amp = {row['dtype']: row for row in report['amp']}
    assert set(amp) == {'fp16', 'bf16'}
    for row in amp.values():
        if row['note'].startswith('not supported here'):  # fp16 on CPU before torch 2.4
            assert row['dtype'] == 'fp16'
            continue
        assert row['step_finite'] and row['grads_fp32'] and row['members_half_ulps'] <= 1
        assert row['drift_mmfec'] <= row['drift_dense']
    bench = report['bench']
    assert {(r['model'], r['mode'], r['precision']) for r in bench} == {
        (m, mode, p) for m in ('fec-s', 'dense-s', 'r50') for mode in ('infer', 'train')
        for p in ('fp32', 'amp')}
    assert all(r['status'] == 'ok' for r in bench)
    assert 'time_vs_r50' in next(r for r in bench if r['model'] == 'fec-s')
    markdown = (tmp_path / 'gpu_check.md').read_text()
    assert '## Exactness' in markdown and '| fec-s |' in markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is present')
def test_without_cuda_it_says_so(tmp_path, capsys):
    assert gpu_check.main(['--out-dir', str(tmp_path)]) == 2
    assert 'no CUDA device' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_quick_cpu_run_of_the_screen_sections(tmp_path):
    """The similarity screen's sections: recheck shares per pooling (no disagreement
    beyond fp32 near-ties) and the step with the screen off / fp16 / bf16, whose outputs
    equal the screen-off ones."""
    code = gpu_check.main(['--device', 'cpu', '--quick', '--sections', 'screen',
                           'screen_speed', '--out-dir', str(tmp_path)])
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert code == 0, report['failed']
    shares = report['screen']
    assert {(r['images'], r['precision'], r['screen']) for r in shares} == {
        (i, p, s) for i in ('noise', 'scenes') for p in ('fp32', 'amp')
        for s in ('fp16', 'bf16')}
    assert all(r['beyond_fp32_ties'] == 0 and 0 <= r['rechecked'] <= 1 for r in shares)
    speed = report['screen_speed']
    assert {(r['precision'], r['mode'], r['screen']) for r in speed} == {
        (p, m, s) for p in ('fp32', 'amp') for m in ('infer', 'train')
        for s in ('off', 'fp16', 'bf16')}
    assert all(r['max_out_diff_vs_off'] == 0 for r in speed)
    assert all(r['rechecked'] is not None for r in speed if r['screen'] != 'off')
