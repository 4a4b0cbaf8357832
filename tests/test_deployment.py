"""ONNX export (tools/deployment/pytorch2onnx.py, mmfec.deployment): each kind of config
exports at an odd size and onnxruntime reproduces PyTorch; user mistakes end in one
``error:`` line with nothing written."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

for _package in ('onnx', 'onnxscript', 'onnxruntime'):
    pytest.importorskip(_package, reason=f'{_package} is not installed: deployment needs '
                        "mmfec's deploy extra (pip install -e '.[deploy]')")

from tool_utils import assert_one_line_error, load_tool, run_main  # noqa: E402

from mmfec.apis.deploy import export_model as convert  # noqa: E402
from mmfec.deployment.export import export_onnx  # noqa: E402
from mmfec.deployment.verify import onnxruntime_session  # noqa: E402
from mmfec.deployment.wrappers import BackboneExport, ExportModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'deployment' / 'pytorch2onnx.py'
# Few elements off: onnxruntime sums in another order than PyTorch, so a clustering
# arg-max may flip at a near-tie; with these seeds none does, and a tenth of a percent is
# the most a correct graph is allowed here.
MAX_OFF_SHARE = 1e-3
# One FEC block per stage for the composite models: the same block, pooling and fold
# code as FEC-S's 3-4-5-2 blocks (exported in full by the backbone test), a third of the
# export time.
SHALLOW = {'model.backbone.arch': dict(_delete_=True, layers=[1, 1, 1, 1],
                                       embed_dims=[32, 64, 196, 320],
                                       mlp_ratios=[8, 8, 4, 4], heads=[4, 4, 8, 8],
                                       head_dims=24)}


tool = load_tool('deployment/pytorch2onnx.py')


def run_tool(capsys, *args):
    """main() in-process; returns (exit code, stdout, stderr)."""
    return run_main(tool, capsys, *args)


def assert_agrees(report):
    for comparison in report.comparisons:
        assert comparison.off_share <= MAX_OFF_SHARE, comparison
        for output in comparison.outputs:
            assert output.max_diff <= 1e-3 * max(1.0, output.max_ref), output


def onnx_outputs(path, image):
    session = onnxruntime_session(str(path), threads=1)
    return session.run(None, {'input': image.numpy()})


def test_backbone_config_exports_with_its_checkpoint_at_an_odd_size(tmp_path, capsys):
    from mmengine.config import Config
    from mmengine.registry import MODELS

    import mmfec  # noqa: F401
    cfg = Config.fromfile(str(ROOT / 'configs' / 'fec_small_backbone.py'))
    torch.manual_seed(3)
    trained = MODELS.build(cfg.model).eval()
    checkpoint = tmp_path / 'fec_small.pth'
    torch.save({'state_dict': trained.state_dict()}, checkpoint)
    out = tmp_path / 'fec_small.onnx'

    result, report = convert(str(ROOT / 'configs' / 'fec_small_backbone.py'), str(checkpoint),
                             (67, 93), str(out), verify=True, repeats=1, threads=1)

    assert out.is_file() and result.output_names == ['stage0', 'stage1', 'stage2', 'stage3']
    assert result.output_shapes == [(1, 32, 16, 23), (1, 64, 8, 12), (1, 196, 4, 6),
                                    (1, 320, 2, 3)]
    assert_agrees(report)
    image = torch.randn(1, 3, 67, 93, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = trained(image)  # the checkpoint's weights, not random ones
    for ref, got in zip(expected, onnx_outputs(out, image)):
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-3, atol=1e-4)
    weights = len(trained.state_dict())
    assert f'loaded {weights} of {weights} weights' in capsys.readouterr().out


def test_semantic_fpn_config_exports_logits_at_input_size(tmp_path, capsys):
    out = tmp_path / 'semfpn.onnx'
    result, report = convert(str(ROOT / 'configs' / 'semfpn_fec.py'), None, (65, 99), str(out),
                             verify=True, repeats=1, threads=1, cfg_options=SHALLOW)

    assert result.output_names == ['seg_logits']
    assert result.output_shapes == [(1, 150, 65, 99)]
    assert_agrees(report)
    for comparison in report.comparisons:
        assert comparison.labels.same_share >= 0.999, comparison.labels
    assert 'random weights' in capsys.readouterr().err


def test_retinanet_config_exports_raw_head_outputs_with_uneven_folds(tmp_path):
    # 101x141: stride-4 grid 25x35, so neither the 2x2 folds nor 32 divide any stage.
    out = tmp_path / 'retinanet.onnx'
    result, report = convert(str(ROOT / 'configs' / 'retinanet_fec.py'), None, (101, 141),
                             str(out), verify=True, repeats=1, threads=1, cfg_options=SHALLOW)

    levels = range(5)
    assert result.output_names == ([f'cls_score_{i}' for i in levels]
                                   + [f'bbox_pred_{i}' for i in levels])
    assert result.output_shapes[0] == (1, 9 * 80, 13, 18)  # 9 anchors x 80 classes, stride 8
    assert result.output_shapes[5] == (1, 9 * 4, 13, 18)
    assert_agrees(report)


def test_adaptive_pooling_to_sizes_that_do_not_divide_exports_exactly(tmp_path):
    class Pools(torch.nn.Module):
        out_indices = (0, 1)

        def forward(self, x):
            return (torch.nn.functional.adaptive_avg_pool2d(x, (5, 3)),
                    torch.nn.functional.adaptive_avg_pool2d(x, (17, 7)))

    module = BackboneExport(Pools())
    export_onnx(module, (17, 13), str(tmp_path / 'pools.onnx'))
    image = torch.randn(1, 3, 17, 13)
    for ref, got in zip(module(image), onnx_outputs(tmp_path / 'pools.onnx', image)):
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-6)


class TinyExport(ExportModule):
    def __init__(self):
        super().__init__(torch.nn.Conv2d(3, 4, 3))

    def forward(self, image):
        return (self.model(image),)

    def output_names(self, outputs):
        return ['features']


def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('exporter failed')

    monkeypatch.setattr(torch.onnx, 'export', broken)
    with pytest.raises(RuntimeError, match='exporter failed'):
        export_onnx(TinyExport(), (32, 32), str(tmp_path / 'model.onnx'))
    assert os.listdir(tmp_path) == []


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / 'model.onnx'
    code, _, err = run_tool(capsys, ROOT / 'configs' / 'fec_small_backbone.py',
                            tmp_path / 'missing.pth', '--shape', 64, 64, '--output-file', out)
    assert_one_line_error(code, err, 'CHECKPOINT', 'missing.pth', 'does not exist')
    assert not out.exists()


def test_unknown_config_kind_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / 'resnet.py'
    config.write_text("default_scope = 'mmdet'\nmodel = dict(type='ResNet', depth=18)\n")
    out = tmp_path / 'model.onnx'
    code, _, err = run_tool(capsys, config, '--shape', 64, 64, '--output-file', out)
    assert_one_line_error(code, err, 'cannot export a ResNet', 'FEC backbone', 'segmentor',
                          'detector')
    assert not out.exists()


def test_bad_shape_output_name_and_image_without_verify_are_one_line_errors(tmp_path, capsys):
    config = ROOT / 'configs' / 'fec_small_backbone.py'
    code, _, err = run_tool(capsys, config, '--shape', 16, 64, '--output-file',
                            tmp_path / 'a.onnx')
    assert_one_line_error(code, err, '--shape 16 64', 'at least 32')
    code, _, err = run_tool(capsys, config, '--shape', 64, 64, '--output-file',
                            tmp_path / 'a.pth')
    assert_one_line_error(code, err, '--output-file', '.onnx')
    code, _, err = run_tool(capsys, config, '--shape', 64, 64, '--output-file',
                            tmp_path / 'a.onnx', '--image', tmp_path / 'a.jpg')
    assert_one_line_error(code, err, '--image', 'add --verify')
    assert os.listdir(tmp_path) == []


def test_mask_rcnn_config_exports_up_to_its_proposals(tmp_path):
    out = tmp_path / 'maskrcnn.onnx'
    result, report = convert(str(ROOT / 'configs' / 'maskrcnn_fec.py'), None, (101, 141),
                             str(out), verify=True, repeats=1, threads=1, cfg_options=SHALLOW)

    levels = range(5)
    assert result.output_names == ([f'feat_{i}' for i in levels]
                                   + [f'rpn_cls_score_{i}' for i in levels]
                                   + [f'rpn_bbox_pred_{i}' for i in levels])
    assert result.output_shapes[0] == (1, 256, 25, 35)  # FPN P2, stride 4
    assert result.output_shapes[5] == (1, 3, 25, 35)  # 3 anchors, one sigmoid score each
    assert_agrees(report)


def test_classifier_config_exports_logits_and_agrees_on_the_label(tmp_path):
    out = tmp_path / 'classifier.onnx'
    result, report = convert(str(ROOT / 'configs' / 'fec_small_in1k.py'), None, (64, 80),
                             str(out), verify=True, repeats=1, threads=1,
                             cfg_options=SHALLOW)

    assert result.output_names == ['logits']
    assert result.output_shapes == [(1, 1000)]
    assert_agrees(report)
    for comparison in report.comparisons:
        assert comparison.unit == 'image' and comparison.labels.flipped == 0
