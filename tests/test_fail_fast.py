"""The way in fails fast and never loses work: each mistake is one ``error:`` line and
exit code 2 before any work starts (outputs checked first, ``--cfg-options`` checked
against the config, a checkpoint of another task refused by ``tools/test.py``)."""
import os

import pytest
import torch
from tool_utils import ROOT, assert_one_line_error, load_tool, run_main

from mmfec.datasets import ensure_toy_ade20k

CONFIGS = ROOT / 'configs'


@pytest.fixture(scope='module')
def blocker(tmp_path_factory):
    """A plain file: nothing can be written under it."""
    path = tmp_path_factory.mktemp('blocker') / 'a_file'
    path.write_text('not a folder\n')
    return path


@pytest.fixture(scope='module')
def tools():
    return {name: load_tool(name) for name in ('train.py', 'test.py', 'visualize_clusters.py',
                                               'analyze_clusters.py', 'get_flops.py',
                                               'make_toy_data.py')}


@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    return ensure_toy_ade20k(tmp_path_factory.mktemp('seg'), num_train=1, num_val=1)


@pytest.fixture(scope='module')
def detector_checkpoint(tmp_path_factory):
    import mmfec  # noqa: F401
    from mmfec.apis import init_model
    model = init_model(str(CONFIGS / 'maskrcnn_fec_toy.py'), seed=0)
    path = tmp_path_factory.mktemp('ckpt') / 'detector.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def test_test_tool_refuses_a_detectors_checkpoint_for_a_segmentor(
        tools, capsys, seg_root, detector_checkpoint, tmp_path):
    code, out, err = run_main(tools['test.py'], capsys, CONFIGS / 'semfpn_fec_toy.py',
                              detector_checkpoint, '--work-dir', tmp_path, '--cfg-options',
                              f'test_dataloader.dataset.data_root={seg_root}',
                              'test_dataloader.num_workers=0',
                              'test_dataloader.persistent_workers=False')
    assert_one_line_error(code, err, 'does not fit', 'decode_head', "a detector's")
    assert 'Iter(test)' not in out + err  # no evaluation ran


def test_unwritable_out_fails_before_the_evaluation(tools, capsys, blocker,
                                                    detector_checkpoint):
    code, out, err = run_main(tools['test.py'], capsys, CONFIGS / 'maskrcnn_fec_toy.py',
                              detector_checkpoint, '--out', blocker / 'results.pkl')
    assert_one_line_error(code, err, '--out', 'is a file')


@pytest.mark.parametrize('tool, args', [
    ('train.py', ['{cfg}', '--work-dir', '{blocked}/work']),
    ('test.py', ['{cfg}', '{ckpt}', '--work-dir', '{blocked}/work']),
    ('test.py', ['{cfg}', '{ckpt}', '--show-dir', '{blocked}/show']),
    ('visualize_clusters.py', ['{cfg}', '{image}', '--out-dir', '{blocked}/maps']),
    ('visualize_clusters.py', ['{cfg}', '{image}', '--html', '{blocked}/page.html']),
    ('analyze_clusters.py', ['{cfg}', '--out', '{blocked}/purity.json']),
])
def test_every_unwritable_output_is_one_line_before_any_work(tools, capsys, blocker,
                                                              detector_checkpoint, tool, args,
                                                              tmp_path):
    import cv2
    import numpy as np

    from mmfec.datasets import render_toy_image
    image = tmp_path / 'image.png'
    cv2.imwrite(str(image), render_toy_image('disc', np.random.default_rng(0)))
    values = dict(cfg=CONFIGS / 'maskrcnn_fec_toy.py', ckpt=detector_checkpoint,
                  blocked=blocker, image=image)
    code, out, err = run_main(tools[tool], capsys, *[a.format(**values) for a in args])
    assert_one_line_error(code, err, str(blocker))


@pytest.mark.parametrize('option, needle', [
    ('train_cfg.max_iters', 'expected KEY=VALUE'),
    ('train_cfg.max_iters=many', 'must be a number'),
    ('trian_cfg.max_iters=3', "has no 'trian_cfg'"),
    ('model.backbone.proposal_sizes.7=1', 'list of 4 entries'),
])
def test_cfg_options_mistakes_are_one_line(tools, capsys, tmp_path, option, needle):
    code, out, err = run_main(tools['train.py'], capsys, CONFIGS / 'semfpn_fec_toy.py',
                              '--work-dir', tmp_path, '--cfg-options', option)
    assert_one_line_error(code, err, needle)


def test_a_new_setting_inside_an_existing_dict_is_allowed(tools, capsys, tmp_path):
    # passes the option check and stops at the next one: the data is not there
    code, out, err = run_main(tools['train.py'], capsys, CONFIGS / 'semfpn_fec_toy.py',
                              '--work-dir', tmp_path, '--cfg-options',
                              'model.backbone.with_cp=True',
                              'train_dataloader.dataset.data_root=/nonexistent')
    assert code == 2 and '/nonexistent' in err and 'cfg-options' not in err


def test_get_flops_with_a_checkpoint_as_config_is_one_line(tools, capsys,
                                                           detector_checkpoint):
    code, out, err = run_main(tools['get_flops.py'], capsys, detector_checkpoint)
    assert_one_line_error(code, err, 'config file', 'must end with')


def test_make_toy_data_refuses_negative_counts_and_writes_nothing(tools, capsys, tmp_path):
    out_dir = tmp_path / 'data'
    code, out, err = run_main(tools['make_toy_data.py'], capsys, '--out-dir', out_dir,
                              '--num-train', -3)
    assert_one_line_error(code, err, '--num-train -3', 'at least')
    assert not out_dir.exists()


def test_swapped_checkpoint_and_image_are_one_line(tools, capsys, detector_checkpoint,
                                                   tmp_path):
    import cv2
    import numpy as np

    from mmfec.datasets import render_toy_image
    image = tmp_path / 'image.png'
    cv2.imwrite(str(image), render_toy_image('disc', np.random.default_rng(0)))
    code, out, err = run_main(tools['visualize_clusters.py'], capsys,
                              CONFIGS / 'maskrcnn_fec_toy.py', image, detector_checkpoint,
                              '--out-dir', tmp_path / 'maps')
    assert_one_line_error(code, err, 'is not an image', 'CONFIG [CHECKPOINT] IMAGE')
    assert not os.path.exists(tmp_path / 'maps')


def test_a_pickle_checkpoint_is_not_taken_for_an_image(tools, capsys, detector_checkpoint,
                                                       tmp_path):
    pkl = tmp_path / 'detector.pkl'
    pkl.write_bytes(detector_checkpoint.read_bytes())
    code, out, err = run_main(tools['visualize_clusters.py'], capsys,
                              CONFIGS / 'maskrcnn_fec_toy.py', pkl, '--list-layers')
    assert code in (0, None), err
    assert 'pool2' in out


def _bash(*args):
    import subprocess
    return subprocess.run(['bash', *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_dist_train_checks_its_arguments_in_one_line(tmp_path):
    result = _bash('tools/dist_train.sh', tmp_path / 'missing.py', 2)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        f'error: config file {tmp_path / "missing.py"} does not exist'
    result = _bash('tools/dist_train.sh', CONFIGS / 'semfpn_fec_toy.py', 'two')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith('error: GPUS must be a positive')


@pytest.mark.slow
def test_dist_train_ends_with_the_ranks_error_line_not_torchruns_traceback(seg_root, tmp_path):
    result = _bash('tools/dist_train.sh', CONFIGS / 'semfpn_fec_toy.py', 1, '--work-dir',
                   tmp_path, '--cfg-options', f'train_dataloader.dataset.data_root={seg_root}',
                   f'val_dataloader.dataset.data_root={seg_root}')
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: no GPU on this machine, so distributed runs need gloo'), \
        result.stderr[-2000:]
