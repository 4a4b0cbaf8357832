"""The FEC backbone: shapes, registries, freezing, checkpointing, sizes, argument errors."""
import pytest
import torch

from mmfec.models import FEC

STAGE_DIMS = {'small': (32, 64, 196, 320), 'base': (64, 128, 320, 512),
              'large': (64, 128, 320, 512)}


@pytest.mark.parametrize('arch', ['small', 'base', 'large'])
def test_outputs_have_stage_channels_at_strides_4_to_32(arch):
    model = FEC(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == list(STAGE_DIMS[arch])
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_out_indices_select_stages_and_their_norms():
    model = FEC('small', out_indices=(1, 3))
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 320]
    assert hasattr(model, 'norm2') and hasattr(model, 'norm6') and not hasattr(model, 'norm0')


def test_custom_arch_dict():
    arch = dict(layers=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32), mlp_ratios=(2, 2, 2, 2),
                heads=(1, 2, 2, 2), head_dims=(4, 4, 8, 8))
    outs = FEC(arch)(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [8, 16, 24, 32]
    assert FEC(arch).network[6][0].token_mixer.f.out_channels == 16


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_from_config_dict_in_both_registries(scope):
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(dict(type='FEC', arch='small', proposal_sizes=7,
                                fold_sizes=(2, 2, 1, 1), out_indices=(0, 1, 2, 3)))
    assert isinstance(model, FEC)
    assert model.network[0][0].token_mixer.fold_size == (2, 2)


def test_frozen_stages_get_no_gradient_and_stay_in_eval():
    model = FEC('small', frozen_stages=2, drop_path_rate=0.1)
    model.train()
    frozen = [model.patch_embed, model.network[0], model.network[1], model.network[2],
              model.norm0, model.norm2]
    assert all(not m.training for m in frozen)
    assert model.network[3].training and model.network[4].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    for module in frozen:
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    assert model.network[4][0].token_mixer.f.weight.grad is not None


def test_frozen_stem_only():
    model = FEC('small', frozen_stages=0).train()
    assert not model.patch_embed.training and model.network[0].training
    assert not model.patch_embed.proj.weight.requires_grad
    assert model.network[0][0].norm1.weight.requires_grad


def test_with_cp_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = FEC('small', proposal_sizes=3)
    plain.init_weights()
    checkpointed = FEC('small', proposal_sizes=3, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    img = torch.randn(1, 3, 64, 64)
    outs = []
    for model in (plain, checkpointed):
        model.train()
        out = model(img)
        sum((o * o).sum() for o in out).backward()
        outs.append((out, {n: p.grad.clone() for n, p in model.named_parameters()
                                  if p.grad is not None}))
    for a, b in zip(outs[0][0], outs[1][0]):
        torch.testing.assert_close(a, b)
    assert outs[0][1].keys() == outs[1][1].keys()
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(grad, outs[1][1][name], msg=name)


@pytest.mark.parametrize('size', [(32, 32), (33, 45), (97, 131), (250, 70)])
def test_any_input_size_from_32_works_with_folds(size):
    model = FEC('small', proposal_sizes=7, fold_sizes=(2, 2, 1, 1)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size[0] // 4, size[1] // 4
    expected = []
    for _ in range(4):
        expected.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert all(torch.isfinite(o).all() for o in outs)


def test_fold_larger_than_map_is_clamped():
    model = FEC('small', proposal_sizes=2, fold_sizes=(8, 8, 8, 8)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32))  # stage 4 is 1x1
    assert outs[-1].shape[-2:] == (1, 1)


def test_too_small_input_says_the_minimum():
    with pytest.raises(ValueError, match='at least 32x32'):
        FEC('small')(torch.randn(1, 3, 16, 64))


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='tiny'), "arch 'tiny' is not one of"),
    (dict(arch=dict(layers=(1, 1, 1, 1))), 'missing'),
    (dict(arch=dict(layers=(1, 1, 1), embed_dims=(8, 8, 8, 8), mlp_ratios=(1, 1, 1, 1),
                    heads=(1, 1, 1, 1), head_dims=4)), "arch\\['layers'\\] needs 4"),
    (dict(out_indices=(0, 4)), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(fold_sizes=(2, 2, 1)), 'fold_sizes needs one entry per stage'),
    (dict(proposal_sizes=(7, 7, 7, 0)), r'proposal_sizes\[3\]'),
])
def test_bad_arguments_fail_at_build_time_naming_the_argument(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FEC(**kwargs)


def test_every_trainable_parameter_gets_a_gradient_so_ddp_needs_no_unused_search():
    model = FEC('small', proposal_sizes=3).train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert not model.network[1].conv_f.weight.requires_grad  # feeds only the arg-max


def test_the_plain_path_is_a_setting_of_one_model_not_of_the_process():
    from mmfec.models.layers import ClusterPooling, plain_ops
    fused, plain = FEC('small'), FEC('small', plain=True)
    assert not fused.pooling(1).runs_plain() and plain.pooling(1).runs_plain()
    with plain_ops(fused):
        assert all(m.runs_plain() for m in fused.modules() if isinstance(m, ClusterPooling))
        assert not FEC('small').pooling(1).runs_plain()  # another model: untouched
    assert not fused.pooling(1).runs_plain()
