"""How the poolings' certified low-precision screen does on a model: the share of points
it cannot certify (they need the fp32 recheck), its agreement with the fp32 arg-max, and
the time of the arg-max with and without it.

    python -m mmfec.benchmark.screen --size 320x480 --dtypes bf16 fp16
    python -m mmfec.benchmark.screen --checkpoint work_dirs/x/epoch_1.pth --size 800x1216
    python -m mmfec.benchmark.screen --images scenes --train-steps 150   # briefly trained

For every :class:`~mmfec.models.layers.ClusterPooling` of an FEC backbone the input of one
forward is captured, and the pooling's assignment is taken once in fp32 and once through
the screen in each dtype, on the same features.
"""
import argparse
import json
import time

import torch

from mmfec.models.backbones import FEC
from mmfec.models.backbones.fec import extract_state_dict
from mmfec.models.layers import ClusterPooling, assignment
from mmfec.models.layers.assignment import nearest_centers, normalize
from mmfec.models.layers.certified_argmax import resolve_screen
from mmfec.models.layers.pointwise import conv1x1
from mmfec.models.layers.regions import pooling_layout
from mmfec.utils.safe_checkpoint import safe_torch_load

from .cases import DET_SETTING


def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _timed(fn, device, repeats):
    best = None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return out, best


@torch.no_grad()
def pooling_inputs(model, img, autocast_dtype=None):
    """``[(name, pooling, its similarity features)]`` from one forward of ``model``."""
    captured, handles = [], []
    for name, module in model.named_modules():
        if isinstance(module, ClusterPooling):
            def hook(mod, args, name=name):
                captured.append((name, mod, conv1x1(args[0], mod.conv_f.weight,
                                                    mod.conv_f.bias)))
            handles.append(module.register_forward_pre_hook(hook))
    try:
        if autocast_dtype is None:
            model(img)
        else:
            with torch.autocast(img.device.type, dtype=autocast_dtype):
                model(img)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def fp32_rounding(channels):
    """More than fp32 can misorder two cosines of ``channels``-long unit vectors by
    (twice ``gamma_C`` and the normalisation's rounding)."""
    return 2 * (channels + 8) * 2.0 ** -23


def beyond_fp32_ties(feats, centers, index, ref):
    """How many points the two assignments give centers whose exact (fp64) cosines
    differ by more than fp32 rounding: 0 when ``index`` is the fp32 arg-max up to fp32
    near-ties."""
    differ = (index != ref).nonzero(as_tuple=True)
    if differ[0].numel() == 0:
        return 0
    channels = feats.shape[1]
    points = torch.nn.functional.normalize(feats.double().flatten(2), dim=1)
    points = points[differ[0], :, differ[1]]  # [k, C]
    flat = centers.double().flatten(2)
    cos = [(points * flat[differ[0], :, idx[differ]]).sum(1) for idx in (index, ref)]
    return int(((cos[0] - cos[1]).abs() > fp32_rounding(channels)).sum())


def plain_disagreement(feats, centers, ref, layout):
    """Points on which the plain fp32 path (normalised points, one region) and the fused
    fp32 path (``ref``) disagree, the rate of fp32 near-ties the two already have; None
    for a folded layout (the plain path's per-region indices are not compared here)."""
    if len(layout.regions) != 1:
        return None
    plain = nearest_centers(normalize(feats.float().flatten(2)), centers.flatten(2))
    return int((plain != ref).sum())


def screen_report(model, img, dtypes=('bf16', 'fp16'), autocast_dtype=None, repeats=1):
    """One row per pooling and screen dtype: points, rechecked share, disagreements with
    the fp32 arg-max, and the arg-max time in fp32 and through the screen."""
    rows = []
    device = img.device
    for name, pooling, feats in pooling_inputs(model, img, autocast_dtype):
        layout = pooling_layout(*feats.shape[-2:], pooling.fold_size)
        (centers, ref), ref_s = _timed(lambda: assignment.pooling_assignment(feats, layout),
                                 device, repeats)
        plain = plain_disagreement(feats, centers, ref, layout)
        for dtype in dtypes:
            stats = {}
            screen = resolve_screen(dtype, device)
            (_, index), screen_s = _timed(lambda: assignment.pooling_assignment(
                feats, layout, screen=screen, stats=stats), device, repeats)
            points = stats['points'] // repeats
            differ = index != ref
            rows.append(dict(
                layer=name, channels=feats.shape[1], points=points,
                centers=layout.num_centers, regions=len(layout.regions), screen=dtype,
                rechecked=stats['rechecked'] / (points * repeats),
                full_rows=stats.get('full_rows', 0) // repeats,
                pairs_per_point=stats.get('pairs', 0) / (points * repeats),
                disagree=int(differ.sum()),
                beyond_fp32_ties=beyond_fp32_ties(feats, centers, index, ref),
                plain_vs_fused=plain,
                fp32_ms=round(ref_s * 1e3, 2),
                screen_ms=round(screen_s * 1e3, 2)))
    return rows


def scene_images(batch, height, width, seed=0):
    """``[batch, 3, H, W]`` synthetic scenes like the toy ADE20K set's (a few large
    regions with wavy borders, each one of 4 classes with its own colour and texture,
    plus pixel noise), normalised, and their ``[batch, H, W]`` labels 1-4. Pure torch:
    a GPU machine without OpenCV makes them too. Flat regions make many nearly equal
    centers, the hard case for the screen; random-normal images are the easy one."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing='ij')
    colours = torch.tensor([[0.65, 0.76, 0.87], [0.22, 0.29, 0.59], [0.9, 0.73, 0.53],
                            [0.41, 0.44, 0.47]])
    imgs, labels = [], []
    for _ in range(batch):
        count = int(torch.randint(3, 7, (1,), generator=gen))
        seeds = torch.rand(count, 2, generator=gen) * torch.tensor([height, width])
        classes = torch.randint(0, 4, (count,), generator=gen)
        amp = 0.08 * min(height, width)
        warp = torch.nn.functional.interpolate(torch.randn(1, 2, 4, 4, generator=gen) * amp,
                                               size=(height, width), mode='bicubic',
                                               align_corners=True)[0]
        wy, wx = yy + warp[0], xx + warp[1]
        dist = (wy - seeds[:, :1, None]) ** 2 + (wx - seeds[:, 1:, None]) ** 2
        label = classes[dist.argmin(dim=0)]  # [H, W]
        texture = torch.stack([0.04 * torch.sin(yy * 1.05), 0.12 * ((yy % 8) < 1.5).float(),
                               -0.08 * (yy / height - 0.5),
                               0.11 * (((yy // 10) + (xx // 10)) % 2 - 0.5)])  # [4, H, W]
        img = colours[label].permute(2, 0, 1) + texture.gather(0, label[None])
        img = img + 0.016 * torch.randn(3, height, width, generator=gen)
        imgs.append(img)
        labels.append(label + 1)
    img = torch.stack(imgs)
    img = (img - img.mean(dim=(0, 2, 3), keepdim=True)) / 0.23
    return img, torch.stack(labels)


def train_toy(model, steps, size=128, batch=4, lr=1e-3, seed=0, log=print):
    """Train ``model`` (an FEC backbone) briefly with a linear head on its stride-4
    output, segmenting :func:`scene_images` (labels 1-4); returns the final loss."""
    head = torch.nn.Conv2d(model.embed_dims[0], 5, 1)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    model.train()
    loss = None
    for step in range(steps):
        img, labels = scene_images(batch, size, size, seed=seed * 100003 + step)
        logits = torch.nn.functional.interpolate(head(model(img)[0]), size=(size, size),
                                                 mode='bilinear', align_corners=False)
        loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=0)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if step % 25 == 0 or step == steps - 1:
            log(f'toy training step {step}: loss {loss.item():.3f}')
    return float(loss)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='small')
    parser.add_argument('--size', default='320x480')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--dtypes', nargs='+', default=['bf16', 'fp16'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--autocast', choices=['bfloat16', 'float16'], default=None,
                        help='take the features under this autocast (default: fp32)')
    parser.add_argument('--checkpoint', default=None,
                        help='an mmfec/mmdet checkpoint whose backbone weights to load')
    parser.add_argument('--images', choices=['noise', 'scenes'], default='noise',
                        help='random-normal images or synthetic scenes (scene_images)')
    parser.add_argument('--train-steps', type=int, default=0,
                        help='first train the backbone this many steps on scenes '
                        '(128x128, batch 4, a linear segmentation head)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = FEC(arch=args.arch, **DET_SETTING)
    model.init_weights()
    if args.checkpoint:
        state = extract_state_dict(safe_torch_load(args.checkpoint), args.checkpoint)
        if any(k.startswith('backbone.') for k in state):  # a detector's / segmentor's
            state = {k[9:]: v for k, v in state.items() if k.startswith('backbone.')}
        missing, unexpected = model.load_state_dict(state, strict=False)
        print(f'loaded {args.checkpoint}: {len(missing)} missing, {len(unexpected)} '
              'unexpected keys')
    if args.train_steps:
        train_toy(model, args.train_steps, seed=args.seed)
    model = model.to(args.device).eval()
    height, width = (int(v) for v in args.size.split('x'))
    if args.images == 'scenes':
        img = scene_images(args.batch, height, width, seed=10 ** 6 + args.seed)[0]
    else:
        img = torch.randn(args.batch, 3, height, width)
    img = img.to(args.device)
    rows = screen_report(model, img, args.dtypes,
                         getattr(torch, args.autocast) if args.autocast else None,
                         args.repeats)
    keys = list(rows[0])
    print('| ' + ' | '.join(keys) + ' |')
    print('|' + '---|' * len(keys))
    for row in rows:
        print('| ' + ' | '.join(f'{v:.3g}' if isinstance(v, float) else str(v)
                                for v in row.values()) + ' |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
