"""Official FEC checkpoints (ImageNet, COCO, ADE20K layouts) load into the backbone."""
from collections import OrderedDict

import pytest
import torch

from mmfec.models import FEC


def official_keys(layers=(3, 4, 5, 2)):
    """Key layout of the paper's release (fork_feat model), written out from its naming."""
    keys = ['patch_embed.proj.weight', 'patch_embed.proj.bias']
    for stage, depth in enumerate(layers):
        net = 2 * stage
        if stage > 0:
            for name in ('conv_f', 'conv_v', 'conv_skip', 'norm2'):
                keys += [f'network.{net - 1}.{name}.weight', f'network.{net - 1}.{name}.bias']
        for j in range(depth):
            p = f'network.{net}.{j}.'
            keys += [p + 'layer_scale_1', p + 'layer_scale_2',
                     p + 'token_mixer.sim_alpha', p + 'token_mixer.sim_beta']
            for name in ('norm1', 'norm2', 'token_mixer.f', 'token_mixer.v', 'token_mixer.proj',
                         'mlp.fc1', 'mlp.fc2'):
                keys += [p + name + '.weight', p + name + '.bias']
        keys += [f'norm{net}.weight', f'norm{net}.bias']
    return set(keys)


@pytest.mark.parametrize('arch, layers', [('small', (3, 4, 5, 2)), ('large', (4, 4, 12, 4))])
def test_parameter_names_are_the_official_ones(arch, layers):
    assert set(FEC(arch).state_dict()) == official_keys(layers)


def test_official_shapes_small():
    sd = FEC('small').state_dict()
    assert sd['patch_embed.proj.weight'].shape == (32, 5, 4, 4)
    assert sd['network.0.0.token_mixer.f.weight'].shape == (96, 32, 1, 1)
    assert sd['network.0.0.mlp.fc1.weight'].shape == (256, 32)
    assert sd['network.5.conv_skip.weight'].shape == (320, 196, 3, 3)
    assert sd['network.0.0.layer_scale_1'].shape == (32,)


def _source_weights():
    torch.manual_seed(3)
    source = FEC('small')
    for p in source.parameters():
        p.data.normal_()
    return source.state_dict()


def _load(tmp_path, payload, **init):
    path = tmp_path / 'ckpt.pth'
    torch.save(payload, path)
    model = FEC('small', init_cfg=dict(type='Pretrained', checkpoint=str(path), **init))
    model.init_weights()
    return model


def _assert_loaded(model, weights):
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key], msg=key)


def test_imagenet_checkpoint_with_head_loads_and_skips_head(tmp_path):
    weights = _source_weights()
    imagenet = OrderedDict(weights)
    for extra in ('norm.weight', 'norm.bias', 'head.weight', 'head.bias'):
        imagenet[extra] = torch.ones(3)
    _assert_loaded(_load(tmp_path, {'model': imagenet}), weights)


@pytest.mark.parametrize('wrap', ['plain', 'state_dict', 'model'])
def test_plain_state_dict_and_model_wrappers(tmp_path, wrap):
    weights = _source_weights()
    payload = weights if wrap == 'plain' else {wrap: weights, 'meta': {'epoch': 12}}
    _assert_loaded(_load(tmp_path, payload), weights)


def test_detector_checkpoint_with_backbone_prefix(tmp_path):
    weights = _source_weights()
    detector = OrderedDict(('backbone.' + k, v) for k, v in weights.items())
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 32, 1, 1)
    _assert_loaded(_load(tmp_path, {'state_dict': detector, 'meta': {}}, prefix='backbone.'),
                   weights)


def test_wrong_prefix_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no keys starting with prefix 'backbone.'"):
        _load(tmp_path, _source_weights(), prefix='backbone.')


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / 'nowhere' / 'fec_small.pth'
    model = FEC('small', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(FileNotFoundError, match='fec_small.pth'):
        model.init_weights()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / 'broken.pth'
    path.write_bytes(b'this is not a checkpoint')
    model = FEC('small', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(Exception, match='broken.pth'):
        model.init_weights()
