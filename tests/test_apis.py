"""mmfec.apis, the one way in: ``init_model`` builds any of the four kinds of config,
``inference_model`` runs the config's own test pipeline and data preprocessor (so one
image gives what ``tools/test.py``'s data loader gives), and a checkpoint that does not
fit the model is refused in one line."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

import mmfec  # noqa: F401
from mmfec.apis import (
    backbone_of,
    inference_model,
    init_model,
    load_weights,
    model_task,
    prepare_input,
)
from mmfec.datasets import (
    ensure_toy_ade20k,
    ensure_toy_coco,
    ensure_toy_imagenet,
    render_toy_image,
)
from mmfec.models import FEC
from mmfec.models.backbones.fec_checkpoint_check import CheckpointMismatchError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures('one_thread')


def _config(name):
    return str(ROOT / 'configs' / name)


@pytest.mark.parametrize('name, task', [
    ('fec_small_in1k_toy.py', 'classifier'), ('semfpn_fec_toy.py', 'segmentor'),
    ('maskrcnn_fec_toy.py', 'detector'), ('fec_small_backbone.py', 'backbone')])
def test_init_model_builds_every_kind_of_config_in_eval_mode(name, task):
    model = init_model(_config(name), seed=0)
    assert model_task(model) == task
    assert not model.training
    assert isinstance(backbone_of(model), FEC)


def test_classifier_inference_gives_what_the_test_loader_gives(tmp_path):
    root = ensure_toy_imagenet(tmp_path, num_train=4, num_val=4)
    model = init_model(_config('fec_small_in1k_toy.py'), seed=0,
                       cfg_options={'test_dataloader.dataset.data_root': str(root)})
    loader_cfg = model.cfg.test_dataloader.copy()
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg)
    batch = next(iter(loader))
    with torch.no_grad():
        expected = model.test_step(batch)[0]
    result = inference_model(model, batch['data_samples'][0].img_path)
    assert result.pred_label.item() == expected.pred_label.item()
    torch.testing.assert_close(result.pred_score, expected.pred_score)


def _first_test_batch(model):
    loader_cfg = model.cfg.test_dataloader.copy()
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    return next(iter(Runner.build_dataloader(loader_cfg)))


def test_segmentor_inference_gives_what_the_test_loader_gives(tmp_path):
    root = ensure_toy_ade20k(tmp_path, num_train=1, num_val=1)
    model = init_model(_config('semfpn_fec_toy.py'), seed=0,
                       cfg_options={'test_dataloader.dataset.data_root': str(root)})
    batch = _first_test_batch(model)
    with torch.no_grad():
        expected = model.test_step(batch)[0]
    result = inference_model(model, batch['data_samples'][0].img_path)
    torch.testing.assert_close(result.seg_logits.data, expected.seg_logits.data)
    assert torch.equal(result.pred_sem_seg.data, expected.pred_sem_seg.data)


def test_detector_inference_gives_what_the_test_loader_gives(tmp_path):
    root = ensure_toy_coco(tmp_path, num_train=1, num_val=1)
    model = init_model(_config('maskrcnn_fec_toy.py'), seed=0,
                       cfg_options={'test_dataloader.dataset.data_root': f'{root}/'})
    batch = _first_test_batch(model)
    with torch.no_grad():
        expected = model.test_step(batch)[0].pred_instances
    got = inference_model(model, batch['data_samples'][0].img_path).pred_instances
    assert len(expected.bboxes) > 0  # random weights still give (poor) detections
    torch.testing.assert_close(got.bboxes, expected.bboxes)
    torch.testing.assert_close(got.scores, expected.scores)
    assert torch.equal(got.labels, expected.labels)


def test_segmentor_inference_returns_a_label_map_of_the_image_size(tmp_path):
    root = ensure_toy_ade20k(tmp_path, num_train=1, num_val=1)
    image = sorted((root / 'images' / 'validation').glob('*.jpg'))[0]
    model = init_model(_config('semfpn_fec_toy.py'), seed=0)
    result = inference_model(model, str(image))
    import cv2
    height, width = cv2.imread(str(image)).shape[:2]
    assert tuple(result.pred_sem_seg.data.shape[-2:]) == (height, width)


def test_detector_inference_returns_instances():
    model = init_model(_config('maskrcnn_fec_toy.py'), seed=0)
    image = render_toy_image('disc', np.random.default_rng(0), 96)
    result = inference_model(model, image)
    assert {'bboxes', 'scores', 'labels'} <= set(result.pred_instances.keys())


def test_backbone_inference_gives_four_stage_features_at_the_configs_test_size():
    model = init_model(_config('fec_small_backbone.py'), seed=0)
    image = render_toy_image('square', np.random.default_rng(1), 80)
    prepared = prepare_input(model, image)
    assert prepared.size == (224, 224)  # the config's Resize: short side to 224
    features = inference_model(model, image)
    assert [f.shape[1] for f in features] == [32, 64, 196, 320]
    native = prepare_input(model, image, native_size=True)
    assert native.size == (80, 80)


def test_a_detectors_checkpoint_does_not_load_into_a_segmentor(tmp_path):
    detector = init_model(_config('maskrcnn_fec_toy.py'), seed=0)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': detector.state_dict()}, path)
    segmentor = init_model(_config('semfpn_fec_toy.py'), seed=0)
    with pytest.raises(CheckpointMismatchError, match=r"a detector's.*decode_head\.\*"):
        load_weights(segmentor, str(path))


def test_a_detectors_checkpoint_loads_into_a_bare_backbone(tmp_path):
    detector = init_model(_config('maskrcnn_fec_toy.py'), seed=0)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': detector.state_dict()}, path)
    model = init_model(_config('fec_small_backbone.py'), str(path))
    torch.testing.assert_close(model.network[2][0].mlp.fc1.weight,
                               detector.backbone.network[2][0].mlp.fc1.weight)


@pytest.fixture
def checked(tmp_path, monkeypatch):
    """A backbone checkpoint checked with ``keep_for_runner``; the list of file reads."""
    from mmfec.utils import safe_checkpoint
    model = init_model(_config('fec_small_backbone.py'), seed=0)
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 3}}, path)
    reads, read = [], safe_checkpoint.safe_torch_load

    def counted(file, *args, **kwargs):
        reads.append(file)
        return read(file, *args, **kwargs)
    monkeypatch.setattr(safe_checkpoint, 'safe_torch_load', counted)
    load_weights(model, str(path), keep_for_runner=True)
    return model, str(path), reads


def test_a_checkpoint_checked_for_the_runner_is_read_once(checked):
    from mmengine.runner.checkpoint import _load_checkpoint
    _, path, reads = checked
    assert _load_checkpoint(path, map_location='cpu')['meta'] == {'epoch': 3}
    assert len(reads) == 1
    _load_checkpoint(path, map_location='cpu')  # handed over once only
    assert len(reads) == 2


def test_a_load_onto_another_device_reads_the_file_and_drops_the_kept_copy(checked):
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmfec.utils import safe_checkpoint
    _, path, reads = checked
    _load_checkpoint(path, map_location='meta')  # e.g. a resume onto the GPU
    assert len(reads) == 2 and not safe_checkpoint._HANDED_OVER


def test_a_checkpoint_rewritten_after_the_check_is_read_again(checked):
    from mmengine.runner.checkpoint import _load_checkpoint
    model, path, reads = checked
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 4, 'note': 'new'}}, path)
    assert _load_checkpoint(path, map_location='cpu')['meta']['epoch'] == 4
    assert len(reads) == 2
