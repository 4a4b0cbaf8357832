"""tools/visualize_clusters.py: one PNG of the expected size per image for detection,
segmentation and backbone-only configs; one-line errors (exit 2) for user mistakes."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tool_utils import assert_one_line_error, load_tool, run_main

from mmfec.visualization import figure_shape

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'visualize_clusters.py'
BACKBONE_CFG = ROOT / 'configs' / 'fec_small_backbone.py'
NUM_DEFAULT_PANELS = 1 + 4 + 3  # the image, last block of 4 stages, 3 poolings


tool = load_tool('visualize_clusters.py')


def write_image(path, height, width):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = (20, 200, 40)
    cv2.imwrite(str(path), image)
    return str(path)


def run_tool(capsys, *args):
    """main() in-process; returns (exit code, stdout, stderr)."""
    return run_main(tool, capsys, *args)


def config_or_skip(name):
    path = ROOT / 'configs' / name
    if not path.is_file():
        pytest.skip(f'configs/{name} is not written yet')
    return path


# ------------------------------------------------------------------ it draws
@pytest.mark.parametrize('config', ['maskrcnn_fec.py', 'semfpn_fec.py'])
def test_detection_and_segmentation_configs(tmp_path, capsys, config):
    image = write_image(tmp_path / 'wide.jpg', 40, 72)
    code, out, err = run_tool(capsys, config_or_skip(config), image, '--out-dir',
                              tmp_path / 'out', '--native-size', '--layers', 'stage1.block0',
                              'pool4', '--head', '1')
    assert code == 0, err
    assert 'random weights' in err
    written = cv2.imread(str(tmp_path / 'out' / 'wide.png'))
    assert written.shape[:2] == figure_shape((40, 72), 3)
    assert 'stage1.block0' in out and 'pool4' in out


def test_backbone_config_with_checkpoint_and_two_images(tmp_path, capsys):
    from mmfec.models import FEC
    torch.save({'state_dict': {'backbone.' + k: v for k, v in FEC('small').state_dict().items()}},
               tmp_path / 'detector.pth')  # a detector's file: backbone.* keys are used
    tall = write_image(tmp_path / 'tall.png', 90, 33)
    other = tmp_path / 'b'
    other.mkdir()
    same_stem = write_image(other / 'tall.png', 36, 36)
    code, out, err = run_tool(capsys, BACKBONE_CFG, tmp_path / 'detector.pth', tall, same_stem,
                              '--out-dir', tmp_path / 'out', '--native-size')
    assert code == 0, err
    assert 'random weights' not in err and 'loaded' in out
    assert "the config's test pipeline and data preprocessor" in out
    assert 'resizing and cropping left out: --native-size' in out
    assert cv2.imread(str(tmp_path / 'out' / 'tall.png')).shape[:2] == \
        figure_shape((90, 33), NUM_DEFAULT_PANELS)
    assert cv2.imread(str(tmp_path / 'out' / 'tall_1.png')).shape[:2] == \
        figure_shape((36, 36), NUM_DEFAULT_PANELS)


def test_images_are_sized_and_normalised_as_the_config_says():
    import mmfec  # noqa: F401
    from mmfec.apis import init_model, prepare_input
    model = init_model(str(BACKBONE_CFG), seed=0)
    grey = np.full((90, 33, 3), 128, np.uint8)
    prepared = prepare_input(model, grey)
    assert prepared.size == (611, 224)  # the config's Resize: short side to 224
    expected = (128 - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    got = prepared.inputs[0, :, 300, 100].numpy()  # ImageNet statistics, RGB order
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    detector = init_model(str(config_or_skip('maskrcnn_fec.py')), seed=0)
    seen = prepare_input(detector, grey)
    assert seen.size == (1333, 489)  # mmdet's Resize (1333, 800): long side 1333, ratio kept
    assert tuple(seen.inputs.shape[-2:]) == (1344, 512)  # padded to 32 by its preprocessor


def test_out_file_for_one_image(tmp_path, capsys):
    image = write_image(tmp_path / 'a.png', 36, 40)
    code, _, err = run_tool(capsys, BACKBONE_CFG, image, '--out', tmp_path / 'x' / 'fig.png',
                            '--native-size', '--layers', 'pool2')
    assert code == 0, err
    assert cv2.imread(str(tmp_path / 'x' / 'fig.png')).shape[:2] == figure_shape((36, 40), 2)
    code, _, err = run_tool(capsys, BACKBONE_CFG, image, image, '--out', tmp_path / 'y.png')
    assert_one_line_error(code, err, '--out FILE.png takes exactly one IMAGE')


def test_a_large_input_reports_each_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tool, 'LARGE_INPUT_PIXELS', 0)  # every input counts as large
    image = write_image(tmp_path / 'a.png', 36, 40)
    code, _, err = run_tool(capsys, BACKBONE_CFG, image, '--out', tmp_path / 'fig.png',
                            '--native-size', '--layers', 'pool2')
    assert code == 0, err
    assert 'this can take minutes' in err
    assert [line.split(' done')[0].strip() for line in err.splitlines() if ' done after ' in line
            ] == ['stage 1/4', 'stage 2/4', 'stage 3/4', 'stage 4/4']


def test_list_layers(capsys):
    code, out, _ = run_tool(capsys, BACKBONE_CFG, '--list-layers')
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 + 4 + 5 + 2 + 3  # FEC-Small: 14 blocks, 3 poolings
    assert lines[0].split() == ['stage1.block0', 'encoding', 'network.0.0.token_mixer']
    assert lines[3].split() == ['pool2', 'pooling', 'network.1']


# ------------------------------------------------------------------ user errors
def test_unreadable_image_is_one_line_error_from_the_command_line(tmp_path):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not an image')
    result = subprocess.run(
        [sys.executable, str(TOOL), str(BACKBONE_CFG), str(bad), '--out-dir',
         str(tmp_path / 'out')], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert_one_line_error(result.returncode, result.stderr, 'cannot read image',
                          'notes.jpg', 'cannot decode')
    assert not (tmp_path / 'out').exists()


def test_missing_image(tmp_path, capsys):
    code, _, err = run_tool(capsys, BACKBONE_CFG, tmp_path / 'nope.png', '--out-dir', tmp_path)
    assert_one_line_error(code, err, 'nope.png', 'does not exist')


def test_wrong_layer_name_lists_the_valid_ones(tmp_path, capsys):
    image = write_image(tmp_path / 'a.png', 32, 32)
    code, _, err = run_tool(capsys, BACKBONE_CFG, image, '--out-dir', tmp_path / 'out',
                            '--layers', 'stage2.block9')
    assert_one_line_error(code, err, "unknown layer 'stage2.block9'", 'valid layers:',
                          'stage1.block0', 'pool4', 'stage4.block1')


def test_head_out_of_range(tmp_path, capsys):
    image = write_image(tmp_path / 'a.png', 32, 32)
    code, _, err = run_tool(capsys, BACKBONE_CFG, image, '--out-dir', tmp_path / 'out',
                            '--head', '5')
    assert_one_line_error(code, err, 'head 5 is out of range for stage1.block2', '4 heads')


def test_missing_checkpoint_and_out_dir(tmp_path, capsys):
    image = write_image(tmp_path / 'a.png', 32, 32)
    code, _, err = run_tool(capsys, BACKBONE_CFG, tmp_path / 'gone.pth', image, '--out-dir',
                            tmp_path)
    assert_one_line_error(code, err, 'gone.pth', 'does not exist')
    code, _, err = run_tool(capsys, BACKBONE_CFG, image)
    assert_one_line_error(code, err, '--out-dir')


def test_checkpoint_without_backbone_weights(tmp_path, capsys):
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, tmp_path / 'x.pth')
    image = write_image(tmp_path / 'a.png', 32, 32)
    code, _, err = run_tool(capsys, BACKBONE_CFG, tmp_path / 'x.pth', image, '--out-dir',
                            tmp_path / 'out')
    assert_one_line_error(code, err, 'does not fit this model', 'patch_embed.*, network.*')
