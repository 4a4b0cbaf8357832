"""The models a benchmark case measures, and one timed step of each.

A case is a dict: ``model`` (a name below), ``size`` ``[H, W]``, ``batch``, ``mode``
(``infer``: one forward under ``no_grad`` in eval mode; ``train``: forward, a loss and
backward in train mode, no optimizer step), ``precision`` (``fp32``, or ``amp``: the
forward and loss under ``torch.autocast``, fp16 on CUDA and bf16 on CPU unless
``amp_dtype`` says otherwise, the backward outside it, as mmengine's ``AmpOptimWrapper``
does) and ``device``.
"""
import contextlib
import copy
import importlib
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData

from mmfec.models import FEC
from mmfec.models.layers import set_plain, set_similarity_screen
from mmfec.models.layers.certified_argmax import resolve_screen
from mmfec.testing import dense_fec_forward
from mmfec.utils.package_configs import package_configs_dir

ARCHS = {'s': 'small', 'b': 'base', 'l': 'large'}
DET_SETTING = dict(proposal_sizes=7, fold_sizes=(2, 2, 1, 1))
SEG_SETTING = dict(proposal_sizes=(10, 10, 5, 5), fold_sizes=1)
RESNETS = ('r50', 'r50-unfrozen')


def add_backbone_arguments(parser):
    """``--arch``, ``--setting`` (det/seg), ``--size`` (HxW) and ``--batch`` of the
    one-backbone tools (``profile_step``, ``layouts``)."""
    parser.add_argument('--arch', default='small')
    parser.add_argument('--setting', choices=['det', 'seg'], default='det')
    parser.add_argument('--size', default='800x1216')
    parser.add_argument('--batch', type=int, default=1)


def backbone_and_image(args, device='cpu'):
    """An FEC backbone of ``args.arch`` in the ``args.setting`` (random weights, seed 0)
    and a random-normal image batch ``[batch, 3, H, W]``."""
    torch.manual_seed(0)
    model = FEC(args.arch, **(DET_SETTING if args.setting == 'det' else SEG_SETTING))
    height, width = (int(v) for v in args.size.split('x'))
    return model, torch.randn(args.batch, 3, height, width, device=device)
FULL_MODELS = ('det-fec', 'det-r50', 'seg-fec', 'seg-r50')
MODEL_HELP = {
    'fec-s/-b/-l': 'FEC backbone (fused layers, the default implementation)',
    'fec-s-plain (etc.)': 'FEC backbone, plain module-by-module path (pre-optimisation)',
    'fec-s-compile (etc.)': 'FEC backbone wrapped in torch.compile',
    'fec-s-fp32sim / -bf16sim / -fp16sim (etc.)': 'FEC backbone with the poolings\' '
        'similarity screen off (fp32 arg-max, the default, as fec-s) / bf16 / fp16',
    'dense-s/-b/-l': 'dense paper-style FEC (mmfec.testing.dense_fec_forward)',
    'r50': 'ResNet-50 as mmdet\'s detectors train it: frozen_stages=1, norm_eval=True '
           '(stem and first stage get no gradient, BN statistics fixed)',
    'r50-unfrozen': 'ResNet-50 with every layer trained and BN in train mode',
    'det-fec / det-r50': 'Mask R-CNN with FEC-S (configs/maskrcnn_fec.py) / with R50',
    'seg-fec / seg-r50': 'Semantic FPN with FEC-S (configs/semfpn_fec.py) / with R50',
}
# Model name suffix -> the poolings' similarity screen (ClusterPooling.screen).
SCREEN_VARIANTS = {'fp32sim': 'off', 'bf16sim': 'bf16', 'fp16sim': 'fp16'}
DEFAULT_MODELS = ['fec-s', 'fec-b', 'fec-l', 'det-fec', 'seg-fec']
DEFAULT_BASELINES = ['dense-s', 'r50', 'r50-unfrozen', 'det-r50', 'seg-r50']


def parse_model(name):
    """``name`` -> dict(kind, arch, variant); ValueError for an unknown name."""
    parts = name.split('-')
    if parts[0] in ('fec', 'dense') and len(parts) >= 2 and parts[1] in ARCHS:
        variant = parts[2] if len(parts) > 2 else 'fused'
        if parts[0] == 'dense' and len(parts) > 2 or variant not in (
                'fused', 'plain', 'compile') + tuple(SCREEN_VARIANTS):
            raise ValueError(name)
        return dict(kind=parts[0], arch=ARCHS[parts[1]], variant=variant)
    if name in RESNETS + FULL_MODELS:
        return dict(kind=name, arch=None, variant='fused')
    raise ValueError(name)


def fec_setting(size, choice):
    """('det' | 'seg', backbone kwargs): ``auto`` is seg at 512x512, det elsewhere."""
    if choice == 'det' or (choice == 'auto' and tuple(size) != (512, 512)):
        return 'det', DET_SETTING
    return 'seg', SEG_SETTING


def amp_dtype(spec):
    """The autocast dtype of an ``amp`` case (None for fp32)."""
    if spec.get('precision', 'fp32') == 'fp32':
        return None
    name = spec.get('amp_dtype') or ('float16' if spec['device'].startswith('cuda')
                                     else 'bfloat16')
    return getattr(torch, name)


# ====================================================================== models
def _bn_instead_of_syncbn(cfg):
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'type' and value == 'SyncBN':
                cfg[key] = 'BN'
            else:
                _bn_instead_of_syncbn(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            _bn_instead_of_syncbn(item)
    return cfg


def _package_config(package, *parts):
    root = osp.dirname(importlib.import_module(package).__file__)
    return osp.join(root, '.mim', 'configs', *parts)


def _project_config(name):
    """One of mmfec's configs, from the package (a checkout, an editable install or a wheel)."""
    return osp.join(package_configs_dir(), name)


def build_full_model(kind, smoke=False):
    """Detector / segmentor from a config, weights random, nothing downloaded. ``smoke``
    cuts a detector's proposals to 64 per image (a run-through, not a measurement)."""
    if kind.startswith('det'):
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        path = (_project_config('maskrcnn_fec.py') if kind == 'det-fec' else
                _package_config('mmdet', 'mask_rcnn', 'mask-rcnn_r50_fpn_1x_coco.py'))
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
        path = (_project_config('semfpn_fec.py') if kind == 'seg-fec' else
                _package_config('mmseg', '_base_', 'models', 'fpn_r50.py'))
    register_all_modules(init_default_scope=True)
    cfg = copy.deepcopy(Config.fromfile(path).model)
    cfg.pop('pretrained', None)
    cfg.pop('init_cfg', None)
    cfg['backbone']['init_cfg'] = None
    if kind == 'seg-r50':
        cfg['decode_head']['num_classes'] = 150
    _bn_instead_of_syncbn(cfg)
    if smoke and kind.startswith('det'):
        cfg.train_cfg.rpn_proposal.update(nms_pre=128, max_per_img=64)
        cfg.train_cfg.rcnn.sampler.num = 64
        cfg.test_cfg.rpn.update(nms_pre=128, max_per_img=64)
    return MODELS.build(cfg), path


def build_resnet50(frozen):
    """ResNet-50 backbone returning its four stage outputs, and where it comes from.

    ``frozen``: as mmdet's detection configs build it (``frozen_stages=1``,
    ``norm_eval=True``); else every layer trained. mmdet's ``ResNet`` where mmdet is
    installed, else torchvision's ``resnet50`` with the same freezing (the same
    architecture: pytorch style, stride on the 3x3 conv).
    """
    try:
        from mmdet.models.backbones import ResNet
    except ImportError:
        return _TorchvisionResNet50(frozen), 'torchvision resnet50'
    if frozen:
        return ResNet(depth=50, frozen_stages=1, norm_eval=True), \
            'mmdet ResNet(depth=50, frozen_stages=1, norm_eval=True)'
    return ResNet(depth=50, frozen_stages=-1, norm_eval=False), \
        'mmdet ResNet(depth=50), all layers trained'


class _TorchvisionResNet50(nn.Module):
    """torchvision's ResNet-50 as a backbone (stage outputs C2-C5), frozen like mmdet's
    detection configs when asked."""

    def __init__(self, frozen):
        super().__init__()
        import torchvision
        self.net = torchvision.models.resnet50(weights=None)
        self.frozen = frozen
        if frozen:
            for module in (self.net.conv1, self.net.bn1, self.net.layer1):
                module.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:  # norm_eval: every BN keeps its running statistics
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x):
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        outs = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            outs.append(x)
        return tuple(outs)


# ====================================================================== inputs
def _det_samples(batch, height, width, train, device):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
        if train:
            count = 5
            xy = torch.rand(count, 2, generator=gen) * torch.tensor([width * 0.6, height * 0.6])
            wh = (torch.rand(count, 2, generator=gen) * 0.3 + 0.1) * torch.tensor([width, height])
            boxes = torch.cat([xy, xy + wh], dim=1)
            masks = np.zeros((count, height, width), dtype=np.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
                masks[i, y0:y1, x0:x1] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes.to(device), labels=torch.randint(0, 80, (count,), generator=gen)
                .to(device), masks=BitmapMasks(masks, height, width))
        samples.append(sample)
    return samples


def _seg_samples(batch, height, width, train, device):
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width)))
        if train:
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, 150, (1, height, width), generator=gen).to(device))
        samples.append(sample)
    return samples


# ====================================================================== one case
def build_case(spec):
    """Model, input and the step function of one case; also what was built."""
    device = spec['device']
    model_info = parse_model(spec['model'])
    height, width = spec['size']
    batch, train = spec['batch'], spec['mode'] == 'train'
    torch.manual_seed(0)
    inputs = torch.randn(batch, 3, height, width, device=device)
    info = {}
    kind = model_info['kind']
    if kind in ('fec', 'dense'):
        setting_name, setting = fec_setting(spec['size'], spec.get('fec_setting', 'auto'))
        model = FEC(model_info['arch'], **setting)
        info['setting'] = f"{setting_name}: proposal_sizes={setting['proposal_sizes']}, " \
                          f"fold_sizes={setting['fold_sizes']}"
        if model_info['variant'] in SCREEN_VARIANTS:
            set_similarity_screen(model, SCREEN_VARIANTS[model_info['variant']])
        if kind == 'fec':
            screen = resolve_screen(model.network[1].screen, device)
            info['screen'] = 'fp32' if screen is None else str(screen).replace('torch.', '')
    elif kind in RESNETS:
        model, info['setting'] = build_resnet50(frozen=kind == 'r50')
    else:
        model, path = build_full_model(kind, spec.get('smoke', False))
        info['setting'] = (path.split('.mim/configs/')[-1] if '.mim/configs/' in path
                           else osp.basename(path))
    model = model.to(device)
    model.train(train)
    info['params'] = sum(p.numel() for p in model.parameters())
    info['trainable_params'] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    forward = model
    if kind == 'fec' and model_info['variant'] == 'compile':
        forward = torch.compile(model)
    if kind == 'dense':
        def forward(x):
            return dense_fec_forward(model, x)

    low = amp_dtype(spec)
    info['amp_dtype'] = None if low is None else str(low).replace('torch.', '')

    def autocast():
        if low is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.split(':')[0], dtype=low)

    if kind in ('fec', 'dense') or kind in RESNETS:
        def run():
            with autocast():
                outs = forward(inputs)
                loss = sum(o.float().mean() for o in outs) if train else None
            if train:
                loss.backward()
    else:
        make = _det_samples if kind.startswith('det') else _seg_samples
        samples = make(batch, height, width, train, device)

        def run():
            if not train:
                with autocast():
                    return model(inputs, samples, mode='tensor')
            with autocast():
                losses = model(inputs, samples, mode='loss')
                total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                            for k, v in losses.items() if 'loss' in k)
            total.backward()

    set_plain(model, model_info['variant'] == 'plain')

    def step():
        if train:
            model.zero_grad(set_to_none=True)
            run()
        else:
            with torch.no_grad():
                run()
    return model, inputs, step, info


def dense_lower_bound_bytes(arch, size, batch, train, setting_choice):
    """Bytes the dense implementation must hold at once, at least: the one-hot masks (and
    similarities) it saves for the backward, plus its largest temporary (a pooling's
    similarity + mask, or an encoding's ``[b, c, M, N]`` dispatch product). float32."""
    _, setting = fec_setting(size, setting_choice)
    model = FEC(arch, **setting)
    height, width = size[0] // 4, size[1] // 4
    saved, temporary = 0, 0
    for stage in range(4):
        if stage > 0:
            layer = model.pooling(stage)
            rows, cols = layer.fold_size
            per_region = (height // rows) * (width // cols)
            centers = per_region // 4
            elements = batch * rows * cols * centers * per_region
            saved += 4 * elements if train else 0  # the mask, kept by the einsum
            temporary = max(temporary, 2 * 4 * elements)  # similarity + mask
            height, width = (height + 1) // 2, (width + 1) // 2
        for block in model.stage(stage):
            mixer = block.token_mixer
            centers = mixer.proposal_size[0] * mixer.proposal_size[1]
            elements = batch * mixer.heads * centers * height * width  # b * M * n summed
            saved += 3 * 4 * elements if train else 0  # sim, mask, sim * mask
            temporary = max(temporary, 4 * elements * mixer.head_dims)  # dispatch product
    return saved + temporary
