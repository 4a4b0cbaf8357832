"""FEC: feature extraction with clustering (Chen et al., CVPR 2024), as an OpenMMLab backbone."""
from collections import OrderedDict
from typing import Dict, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import to_2tuple

from ...utils.errors import InputError
from ..layers import ClusterBlock, ClusterPooling, PositionalStem, set_plain
from .fec_checkpoint_check import (
    CheckpointMismatchError,
    check_fec_state_dict,
    fec_prefixes,
    not_fec_message,
    other_prefix_message,
    strip_prefix,
)

NUM_STAGES = 4


class FECInputError(InputError):
    """An image the backbone cannot take (another number of channels, smaller than 32
    pixels); mmfec's tools print it as one ``error: ...`` line."""


def _pair(value, name: str, stage: int):
    value = to_2tuple(value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and v >= 1 for v in value)):
        raise ValueError(f'{name}[{stage}] must be a positive int or an (h, w) pair of positive '
                         f'ints, got {value!r}')
    return tuple(value)


def _per_stage_pairs(value, name: str):
    """``7`` or ``(7, 7, 7, 7)`` or ``((7, 7), ...)`` -> four ``(h, w)`` pairs."""
    if isinstance(value, int):
        value = [value] * NUM_STAGES
    if not isinstance(value, (tuple, list)) or len(value) != NUM_STAGES:
        raise ValueError(f'{name} needs one entry per stage ({NUM_STAGES}), each an int or an '
                         f'(h, w) pair; got {value!r}')
    return [_pair(v, name, i) for i, v in enumerate(value)]


class FEC(BaseModule):
    """FEC backbone: a positional stem, then four stages of clustering blocks joined by
    clustering poolings; outputs at strides 4, 8, 16 and 32.

    Parameter names follow the official release (``patch_embed``, ``network.{0..6}``,
    ``norm{0,2,4,6}``), so its ImageNet, COCO and ADE20K checkpoints load unchanged.

    Args:
        arch (str | dict): 'small', 'base', 'large', or a dict with ``layers``,
            ``embed_dims``, ``mlp_ratios``, ``heads`` and ``head_dims`` (int or per stage).
        in_channels (int): image channels. Defaults to 3.
        proposal_sizes (int | sequence): cluster centers per region, per stage, as a side
            length or ``(h, w)``. Paper: (4, 4, 2, 2) ImageNet 224, (10, 10, 5, 5) ADE20K 512,
            (7, 7, 7, 7) COCO. Defaults to (4, 4, 2, 2).
        fold_sizes (int | sequence): regions per side a stage's map is split into before
            clustering (1 = global); the pooling in front of stage i uses stage i's fold.
            Paper: (2, 2, 1, 1) for COCO, 1 elsewhere. Defaults to 1.
        out_indices (sequence[int]): stages to output (negative counts from the end).
            Output only what the neck reads: an FPN with ``start_level=1`` (mmdet's
            RetinaNet, FCOS, ATSS) skips stage 0, so use (1, 2, 3) with ``start_level=0``;
            an output without gradient is reported once, at the first training step,
            by ``UnusedOutputsHook`` (on in mmfec's configs).
            Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 also stages 0..k-1.
        drop_path_rate (float): stochastic depth, linearly increasing over blocks.
        layer_scale_init_value (float): initial per-channel layer scale. Defaults to 1e-5.
        with_cp (bool): activation checkpointing per block (less memory, more compute).
        plain (bool): run the clustering layers' plain path (module by module, the one
            tracing and the ONNX export use) instead of the fused one; the same math. Per
            model: :func:`mmfec.models.layers.plain_ops` switches it for a block of code.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=PATH,
            prefix='backbone.')``; plain state dicts, ``{'state_dict': ...}`` and
            ``{'model': ...}`` files all load. A checkpoint of another arch, another
            ``in_channels`` or another task (wrong ``prefix``) fails, in any load, with a
            :class:`CheckpointMismatchError` naming what the checkpoint holds.
    """

    arch_settings: Dict[str, dict] = {
        'small': dict(layers=(3, 4, 5, 2), embed_dims=(32, 64, 196, 320),
                      mlp_ratios=(8, 8, 4, 4), heads=(4, 4, 8, 8), head_dims=24),
        'base': dict(layers=(2, 2, 6, 2), embed_dims=(64, 128, 320, 512),
                     mlp_ratios=(8, 8, 4, 4), heads=(4, 4, 8, 8), head_dims=32),
        'large': dict(layers=(4, 4, 12, 4), embed_dims=(64, 128, 320, 512),
                      mlp_ratios=(8, 8, 4, 4), heads=(6, 6, 12, 12), head_dims=32),
    }
    arch_keys = ('layers', 'embed_dims', 'mlp_ratios', 'heads', 'head_dims')
    min_input_size = 32

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 proposal_sizes: Union[int, Sequence] = (4, 4, 2, 2),
                 fold_sizes: Union[int, Sequence] = 1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-5,
                 with_cp: bool = False,
                 plain: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.proposal_sizes = _per_stage_pairs(proposal_sizes, 'proposal_sizes')
        self.fold_sizes = _per_stage_pairs(fold_sizes, 'fold_sizes')
        self.out_indices = self._parse_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages must be an int in [-1, {NUM_STAGES}] (-1: none, '
                             f'0: stem, k: stem and stages 0..k-1), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int (image channels, 3 for RGB), '
                             f'got {in_channels!r}')
        self.in_channels = in_channels

        layers, dims = self.arch['layers'], self.arch['embed_dims']
        self.embed_dims = tuple(dims)
        self.patch_embed = PositionalStem(in_channels, dims[0])
        total_blocks, block_id = sum(layers), 0
        network = []
        for i in range(NUM_STAGES):
            if i > 0:
                network.append(ClusterPooling(dims[i - 1], dims[i], self.fold_sizes[i]))
            blocks = []
            for _ in range(layers[i]):
                blocks.append(ClusterBlock(
                    dims[i], self.arch['mlp_ratios'][i], self.arch['heads'][i],
                    self.arch['head_dims'][i], self.proposal_sizes[i], self.fold_sizes[i],
                    drop_path=drop_path_rate * block_id / max(1, total_blocks - 1),
                    layer_scale_init_value=layer_scale_init_value))
                block_id += 1
            network.append(nn.Sequential(*blocks))
        self.network = nn.ModuleList(network)
        # A pooling's similarity conv only feeds the hard arg-max, so it never gets a
        # gradient (as in the paper). Marking it fixed keeps DDP from failing on an unused
        # parameter, with no other change to training (AdamW skips grad-less params anyway).
        for i in range(1, NUM_STAGES):
            self.pooling(i).conv_f.requires_grad_(False)
        for i in self.out_indices:
            self.add_module(f'norm{2 * i}', nn.GroupNorm(1, dims[i]))
        set_plain(self, plain)
        self._freeze_stages()

    # ------------------------------------------------------------------ arguments
    def _parse_arch(self, arch) -> dict:
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise ValueError(f"arch '{arch}' is not one of {sorted(self.arch_settings)}; "
                                 f'or pass a dict with keys {list(self.arch_keys)}')
            arch = self.arch_settings[arch]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in self.arch_keys if k not in arch]
        if missing:
            raise ValueError(f'custom arch dict is missing {missing}; it needs all of '
                             f'{list(self.arch_keys)}')
        parsed = {}
        for key in self.arch_keys:
            value = arch[key]
            if key == 'head_dims' and isinstance(value, int):
                value = [value] * NUM_STAGES
            if not isinstance(value, (tuple, list)) or len(value) != NUM_STAGES:
                raise ValueError(f"arch['{key}'] needs {NUM_STAGES} values (one per stage), "
                                 f'got {value!r}')
            parsed[key] = tuple(value)
        return parsed

    @staticmethod
    def _parse_out_indices(out_indices):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not -NUM_STAGES <= index < NUM_STAGES:
                raise ValueError(f'out_indices entries must be ints in [{-NUM_STAGES}, '
                                 f'{NUM_STAGES - 1}] (stages 0-3), got {list(out_indices)}')
            parsed.append(index % NUM_STAGES)
        if not parsed:
            raise ValueError('out_indices is empty; choose stages from 0, 1, 2, 3')
        return tuple(sorted(set(parsed)))

    # ------------------------------------------------------------------ named parts
    # The official layout is flat (``network.{0..6}``: stage, pooling, stage, ...; output
    # norms ``norm{0,2,4,6}``) so that its checkpoints load unchanged; these name its parts.
    def stage(self, i: int) -> nn.Sequential:
        """The clustering blocks of stage ``i`` (0-3)."""
        return self.network[2 * i]

    def pooling(self, i: int) -> ClusterPooling:
        """The clustering pooling in front of stage ``i`` (1-3)."""
        if not 1 <= i < NUM_STAGES:
            raise IndexError(f'stage {i} has no pooling in front of it (stages 1-3 do)')
        return self.network[2 * i - 1]

    def out_norm(self, i: int) -> nn.GroupNorm:
        """The GroupNorm of output ``i`` (a stage in ``out_indices``)."""
        return getattr(self, f'norm{2 * i}')

    def stage_modules(self, i: int):
        """Stage ``i``'s pooling (for i > 0), then its blocks: what maps stage ``i - 1``'s
        output to stage ``i``'s."""
        return ([self.pooling(i)] if i > 0 else []) + [self.stage(i)]

    # ------------------------------------------------------------------ freezing
    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.patch_embed
        for i in range(max(0, self.frozen_stages)):
            yield from self.stage_modules(i)
            if i in self.out_indices:
                yield self.out_norm(i)

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            self._load_pretrained(self.init_cfg['checkpoint'], self.init_cfg.get('prefix'))
            return
        for module in self.modules():  # the paper's init: trunc-normal Linear, default convs
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        super().init_weights()

    def _load_pretrained(self, checkpoint: str, prefix=None):
        logger = MMLogger.get_current_instance()
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state_dict = extract_state_dict(ckpt, checkpoint)
        source = f'checkpoint {checkpoint}'
        known = self.arch_settings
        if prefix:
            stripped = strip_prefix(state_dict, prefix)
            if not stripped:
                prefixes = fec_prefixes(state_dict)
                what = 'drop `prefix` for an ImageNet/backbone-only file'
                if prefixes:
                    fix = f"pass prefix='{prefixes[0]}'" if prefixes[0] else 'drop `prefix`'
                    what = f'{other_prefix_message(prefixes, state_dict, known, "it")}; {fix}'
                raise CheckpointMismatchError(
                    f"checkpoint {checkpoint} has no keys starting with prefix '{prefix}': "
                    f'{what}')
            state_dict = stripped
        own = self.state_dict()
        if not any(k in own for k in state_dict):
            prefixes = fec_prefixes(state_dict)
            if prefixes:
                raise CheckpointMismatchError(
                    f'{other_prefix_message(prefixes, state_dict, known, source)}; add '
                    f"prefix='{prefixes[0]}' to the backbone's init_cfg")
            raise CheckpointMismatchError(not_fec_message(state_dict, source))
        check_fec_state_dict(self, state_dict, '', source)
        skipped = sorted(k for k in state_dict if k not in own)
        kept = OrderedDict((k, v) for k, v in state_dict.items() if k in own)
        missing, _ = self.load_state_dict(kept, strict=False)
        if skipped:
            groups = sorted({k.split('.')[0] for k in skipped})
            logger.info(f'FEC: skipped {len(skipped)} checkpoint keys not used by this backbone '
                        f'({", ".join(g + ".*" for g in groups)})')
        if missing:
            logger.warning(f'FEC: {len(missing)} backbone weights not in the checkpoint, left at '
                           f'their init: {missing[:8]}{" ..." if len(missing) > 8 else ""}')
        self._is_init = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Every load (init_cfg, load_from, --resume, tools/test.py) passes here before
        # PyTorch copies tensors: a checkpoint of another arch, in_channels or task fails
        # with a few lines that say what it is, instead of one line per mismatched tensor.
        check_fec_state_dict(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise FECInputError(
                f'FEC was built with in_channels={self.in_channels} and got an input of shape '
                f'{tuple(x.shape)} (expected [batch, {self.in_channels}, height, width]); '
                f'set the backbone\'s in_channels={x.shape[1] if x.dim() == 4 else "?"} or '
                f'load {self.in_channels}-channel images')
        height, width = x.shape[-2:]
        if height < self.min_input_size or width < self.min_input_size:
            raise FECInputError(f'FEC needs images of at least {self.min_input_size}x'
                             f'{self.min_input_size} pixels, got {height}x{width}')
        x = self.patch_embed(x)
        outs = []
        for i in range(NUM_STAGES):
            if i > 0:
                x = self.pooling(i)(x)
            x = self._run_stage(self.stage(i), x)
            if i in self.out_indices:
                outs.append(self.out_norm(i)(x))
        return tuple(outs)

    # ------------------------------------------------------------------ diagnostics
    def watch_unused_outputs(self):
        """Report, once and in one line, the outputs that get no gradient in the next
        training step: the neck does not read them, so their norms are unused parameters,
        on which DistributedDataParallel fails. ``UnusedOutputsHook`` calls this before
        the first training iteration; the hook it sets removes itself after one forward,
        so later steps pay nothing."""

        def after_forward(module, inputs, outs):
            handle.remove()
            watched = [(i, out) for i, out in zip(self.out_indices, outs)
                       if torch.is_tensor(out) and out.requires_grad]
            if not (self.training and torch.is_grad_enabled() and watched):
                return

            def report(grads):
                # called once every output's gradient is known; None: it got none
                self._report_unused_outputs([i for (i, _), grad in zip(watched, grads)
                                             if grad is None])

            torch.autograd.graph.register_multi_grad_hook([out for _, out in watched],
                                                          report)

        handle = self.register_forward_hook(after_forward)

    def _report_unused_outputs(self, unused):
        if not unused:
            return
        used = [i for i in self.out_indices if i not in unused]
        fpn = (' (an FPN then needs start_level=0)'
               if unused == list(self.out_indices[:len(unused)]) else '')
        MMLogger.get_current_instance().warning(
            'FEC: the neck reads no output of stage(s) '
            f'{", ".join(map(str, unused))}, so '
            f'{", ".join(f"norm{2 * i}" for i in unused)} got no gradient in the first '
            'training step (DDP fails on unused parameters); fix: backbone '
            f'out_indices={tuple(used)} with the neck\'s in_channels='
            f'{[self.embed_dims[i] for i in used]}{fpn}')

    def _run_stage(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


def extract_state_dict(ckpt, source: str) -> Dict[str, torch.Tensor]:
    """The weights inside a checkpoint saved as a plain dict, ``{'state_dict'}`` or
    ``{'model'}``."""
    if not isinstance(ckpt, dict):
        raise ValueError(f'checkpoint {source} is a {type(ckpt).__name__}, not a state dict')
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    state_dict = OrderedDict((k[7:] if k.startswith('module.') else k, v)
                             for k, v in ckpt.items() if isinstance(v, torch.Tensor))
    if not state_dict:
        raise ValueError(f'checkpoint {source} contains no tensors')
    return state_dict
