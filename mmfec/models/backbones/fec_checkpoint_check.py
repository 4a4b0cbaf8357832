"""What an FEC checkpoint is (its arch, read from its tensor widths) and why it does not fit.

PyTorch answers a checkpoint of another arch with one ``size mismatch`` line per tensor
(tens of thousands of characters for FEC-Small weights loaded into FEC-Base).
:func:`check_fec_state_dict` runs in every load before the tensors are copied and says it
in a few lines, naming the checkpoint's arch and the model's. The messages for a
checkpoint of another task (a detector's file loaded without its ``backbone.`` prefix) or
of another model (no FEC weights at all) are built here too, for ``FEC``'s ``init_cfg``.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

import torch

from ...utils.safe_checkpoint import CheckpointError

NUM_STAGES = 4
STEM_KEY = 'patch_embed.proj.weight'
_BLOCK_KEY = re.compile(r'^network\.(\d+)\.(\d+)\.')


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint whose weights cannot go into this FEC backbone: another arch, another
    ``in_channels``, or not the backbone's part of the checkpoint (another task's prefix)."""


def infer_fec_arch(state_dict: Mapping[str, torch.Tensor]) -> Optional[dict]:
    """The architecture of FEC weights with the official names (no prefix), from their
    shapes: ``layers``, ``embed_dims``, ``mlp_ratios``, ``mixer_dims`` (heads x head dims,
    what the weights fix), ``in_channels``. ``None`` if these are not FEC weights."""
    stem = state_dict.get(STEM_KEY)
    if stem is None or stem.dim() != 4:
        return None
    layers = [0] * NUM_STAGES
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match and int(match.group(1)) % 2 == 0 and int(match.group(1)) // 2 < NUM_STAGES:
            stage = int(match.group(1)) // 2
            layers[stage] = max(layers[stage], int(match.group(2)) + 1)
    embed_dims, mlp_ratios, mixer_dims = [], [], []
    for stage in range(NUM_STAGES):
        first = f'network.{2 * stage}.0.'
        norm, fc1, mixer = (state_dict.get(first + name) for name in
                            ('norm1.weight', 'mlp.fc1.weight', 'token_mixer.f.weight'))
        if norm is None:
            embed_dims.append(None)
            mlp_ratios.append(None)
            mixer_dims.append(None)
            continue
        embed_dims.append(int(norm.shape[0]))
        mlp_ratios.append(None if fc1 is None else fc1.shape[0] / norm.shape[0])
        mixer_dims.append(None if mixer is None else int(mixer.shape[0]))
    return dict(layers=tuple(layers), embed_dims=tuple(embed_dims),
                mlp_ratios=tuple(mlp_ratios), mixer_dims=tuple(mixer_dims),
                in_channels=int(stem.shape[1]) - 2)


def arch_of_settings(settings: dict) -> dict:
    """The same description as :func:`infer_fec_arch` for an ``FEC.arch`` dict."""
    head_dims = settings['head_dims']
    if isinstance(head_dims, int):
        head_dims = [head_dims] * NUM_STAGES
    return dict(layers=tuple(settings['layers']), embed_dims=tuple(settings['embed_dims']),
                mlp_ratios=tuple(float(r) for r in settings['mlp_ratios']),
                mixer_dims=tuple(h * d for h, d in zip(settings['heads'], head_dims)))


def arch_name(arch: dict, known: Dict[str, dict]) -> Optional[str]:
    """'small' / 'base' / 'large' when ``arch`` (from :func:`infer_fec_arch`) is one of
    ``known`` (``FEC.arch_settings``), else ``None``."""
    for name, settings in known.items():
        reference = arch_of_settings(settings)
        if all(arch[key] == reference[key] for key in ('layers', 'embed_dims', 'mixer_dims')):
            return name
    return None


def describe_arch(arch: dict, known: Dict[str, dict], with_key: bool = False) -> str:
    """E.g. ``FEC-Small (layers 3, 4, 5, 2; embed dims 32, 64, 196, 320)``; with
    ``with_key`` the ``arch=`` value is named too: ``FEC-Small (arch='small': ...)``."""
    name = arch_name(arch, known)
    title = f'FEC-{name.capitalize()}' if name else 'a custom FEC'
    key = f"arch='{name}': " if with_key and name else ''

    def _join(values):
        return ', '.join('?' if v is None else str(v) for v in values)

    return (f'{title} ({key}layers {_join(arch["layers"])}; '
            f'embed dims {_join(arch["embed_dims"])})')


def fec_prefixes(state_dict: Mapping[str, torch.Tensor]) -> Sequence[str]:
    """The prefixes under which ``state_dict`` holds FEC weights ('' for a backbone or
    ImageNet checkpoint, 'backbone.' for a detector or segmentor)."""
    return sorted(key[:-len(STEM_KEY)] for key in state_dict if key.endswith(STEM_KEY))


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> 'OrderedDict':
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


def _top_level_groups(state_dict, limit=6):
    groups = list(OrderedDict.fromkeys(k.split('.')[0] for k in state_dict))
    more = ', ...' if len(groups) > limit else ''
    return ', '.join(g + '.*' for g in groups[:limit]) + more


def not_fec_message(state_dict: Mapping[str, torch.Tensor], source: str) -> str:
    """For a checkpoint without any FEC weights (another model)."""
    first = ', '.join(list(state_dict)[:3])
    return (f'{source} holds no FEC backbone weights: none of its {len(state_dict)} tensors '
            f'has an FEC name (its keys: {_top_level_groups(state_dict)}; first: {first}). '
            'FEC loads checkpoints of the official FEC release and ones trained with mmfec.')


def other_prefix_message(prefixes: Sequence[str], state_dict, known, source: str) -> str:
    """What a checkpoint whose FEC weights sit under another prefix is, e.g. ``... is a
    checkpoint of a whole model (...): its FEC-Small (...) weights are under 'backbone.'``."""
    where = prefixes[0]
    arch = infer_fec_arch(strip_prefix(state_dict, where))
    if where == '':
        return (f'{source} is a backbone-only (e.g. ImageNet) checkpoint: its '
                f'{describe_arch(arch, known)} weights are at the top level')
    return (f'{source} is a checkpoint of a whole model (a detector or segmentor: keys '
            f"{_top_level_groups(state_dict)}): its {describe_arch(arch, known)} weights "
            f"are under '{where}'")


def check_fec_state_dict(model, state_dict: Mapping[str, torch.Tensor], prefix: str = '',
                         source: str = 'the checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` if the tensors of ``state_dict`` under
    ``prefix`` have other shapes than the FEC backbone ``model``'s: a checkpoint of another
    ``in_channels`` or another arch. The message names the checkpoint's arch (from its
    widths) and the model's, and what to change."""
    own = {k: v.shape for k, v in model.state_dict().items()}
    mine = {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    if not any(k in own for k in mine):
        return  # nothing of this backbone here: the caller's business
    wrong = [k for k, v in mine.items() if k in own and tuple(v.shape) != tuple(own[k])]
    if not wrong:
        return
    known = type(model).arch_settings
    model_arch = describe_arch(arch_of_settings(model.arch), known, with_key=True)
    arch = infer_fec_arch(mine)
    stem = mine.get(STEM_KEY)
    if (arch is not None and stem is not None and STEM_KEY in wrong
            and stem.shape[0] == own[STEM_KEY][0] and len(wrong) == 1):
        raise CheckpointMismatchError(
            f'{source} was trained on {arch["in_channels"]}-channel images '
            f'({prefix}{STEM_KEY} is {tuple(stem.shape)}), but this backbone has '
            f'in_channels={model.in_channels}. Set the backbone\'s '
            f'in_channels={arch["in_channels"]} (and feed such images), or use a checkpoint '
            f'trained with in_channels={model.in_channels}.')
    first = wrong[0]
    detail = (f'{len(wrong)} of its {len(mine)} backbone tensors have other shapes, e.g. '
              f'{prefix}{first}: {tuple(mine[first].shape)} in the checkpoint, '
              f'{tuple(own[first])} in the model.')
    if arch is None:
        raise CheckpointMismatchError(
            f'{source} does not fit this FEC backbone ({model_arch}): {detail}')
    ckpt_name = arch_name(arch, known)
    widths = [d for i, d in enumerate(arch['embed_dims']) if i in model.out_indices]
    use = (f"Set arch='{ckpt_name}'" if ckpt_name else
           'Set arch to a dict with these layers and widths')
    raise CheckpointMismatchError(
        f'{source} holds {describe_arch(arch, known)} weights, but this backbone is '
        f'{model_arch}.\n'
        f'{detail}\n'
        f'{use} to use this checkpoint (the neck then takes in_channels={widths}), or pass '
        'a checkpoint of the backbone\'s own arch.')
