#!/usr/bin/env python
"""Draw FEC's cluster maps: which pixels every clustering layer put together.

    python tools/visualize_clusters.py CONFIG [CHECKPOINT] IMAGE... --out-dir DIR
                                       [--layers NAME...] [--head K] [--device cpu]
    python tools/visualize_clusters.py CONFIG [CHECKPOINT] IMAGE --out FILE.png ...

CONFIG is a detection or segmentation config with an FEC backbone, or a backbone-only
config (``model = dict(type='FEC', ...)``, e.g. configs/fec_small_backbone.py).
CHECKPOINT (optional; a .pth/.pt/.ckpt/.bin file or a URL) holds trained weights. One
PNG per image is written to DIR: the image, then one panel per chosen layer.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin', '.tar')
RANDOM_WEIGHTS_WARNING = ('warning: no CHECKPOINT given, so the model has random weights and '
                          'its cluster maps mean little; pass a trained checkpoint')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the cluster maps of an FEC model (one PNG per image).',
        epilog='Layers are named stage{1-4}.block{i} (clustering encodings) and '
        'pool{2-4} (clustering poolings, whose maps chain the poolings: the hierarchy). '
        'Use --list-layers to see a model\'s names and module paths.')
    parser.add_argument('config', help='mmdet/mmseg config with an FEC backbone, or a '
                        'backbone-only config')
    parser.add_argument('paths', nargs='*', metavar='[CHECKPOINT] IMAGE',
                        help='optional checkpoint (.pth/.pt/.ckpt/.bin/.tar or URL), '
                        'then one or more images')
    parser.add_argument('--out-dir', help='folder for the PNGs, one <image name>.png per '
                        'image (this or --out is required unless --list-layers)')
    parser.add_argument('--out', metavar='FILE.png',
                        help='with exactly one IMAGE: write its PNG to this path')
    parser.add_argument('--layers', nargs='+', default=['default'], metavar='NAME',
                        help="layers to draw: names such as stage1.block2 or pool3, module "
                        "paths, 'default' (last block of each stage and every pooling) or "
                        "'all' (default: %(default)s)")
    parser.add_argument('--head', type=int, default=0,
                        help='encoding head to show (default: %(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N '
                        '(default: %(default)s)')
    parser.add_argument('--alpha', type=float, default=0.5,
                        help='opacity of the cluster colours (default: %(default)s)')
    parser.add_argument('--native-size', action='store_true',
                        help="feed images at their own size instead of the config's "
                        'test-time Resize')
    parser.add_argument('--list-layers', action='store_true',
                        help='print the layer names and module paths, then exit')
    return parser.parse_args(argv)


def split_paths(paths):
    """``[CHECKPOINT] IMAGE...`` -> ``(checkpoint or None, images)``."""
    if not paths:
        return None, []
    first = paths[0]
    if '://' in first or first.lower().endswith(CHECKPOINT_SUFFIXES):
        return first, paths[1:]
    return None, list(paths)


def read_images(paths):
    """uint8 BGR arrays; one-line errors for missing or undecodable files."""
    import cv2
    from mmfec.utils.cli import UsageError
    images = []
    for path in paths:
        if not osp.isfile(path):
            what = 'is a directory' if osp.isdir(path) else 'does not exist'
            raise UsageError(f'cannot read image {path}: the file {what}')
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise UsageError(f'cannot read image {path}: OpenCV cannot decode it (use a '
                             'JPEG, PNG, BMP, TIFF or WebP file)')
        images.append(image)
    return images


def is_backbone_config(cfg):
    model = cfg.get('model')
    return (isinstance(model, dict) and
            str(model.get('type', '')).rpartition('.')[2] == 'FEC')


def build_model(cfg):
    """The model of ``cfg``: from mmdet's/mmseg's registry, or a bare FEC from mmengine's."""
    from mmfec.utils.cli import UsageError, _first_line, detect_scope, init_scope
    if cfg.get('model') is None:
        raise UsageError('the config has no `model`; use a detection/segmentation config '
                         "or a backbone config with model = dict(type='FEC', ...)")
    if is_backbone_config(cfg):
        from mmengine.registry import MODELS
        scope = None
    else:
        scope = detect_scope(cfg)
        init_scope(cfg, scope)
        if scope == 'mmdet':
            from mmdet.registry import MODELS
        else:
            from mmseg.registry import MODELS
    try:
        model = MODELS.build(cfg.model)
    except Exception as error:  # a bad model section in the user's config
        raise UsageError(f'cannot build the model of this config: {_first_line(error)}') \
            from None
    return model, scope


def load_weights(model, checkpoint, backbone_only):
    """Load ``checkpoint`` through mmengine (the safe loader mmfec installs); returns a
    one-line summary. Detector/segmentor files also load into a backbone-only model."""
    import re

    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

    from mmfec.models.backbones.fec import extract_state_dict
    from mmfec.utils.cli import UsageError, check_checkpoint_path
    from mmfec.visualization import find_backbone
    check_checkpoint_path(checkpoint, 'CHECKPOINT')
    try:
        state = extract_state_dict(_load_checkpoint(checkpoint, map_location='cpu'),
                                   checkpoint)
    except ValueError as error:
        raise UsageError(str(error)) from None
    own = model.state_dict()
    if backbone_only and not any(k in own for k in state):
        state = {re.sub(r'^backbone\.', '', k): v for k, v in state.items()
                 if k.startswith('backbone.')}
    backbone = find_backbone(model)
    prefix = next((name + '.' for name, m in model.named_modules() if m is backbone), '')
    prefix = '' if prefix == '.' else prefix
    wanted = [prefix + k for k in backbone.state_dict()]
    loaded = [k for k in wanted if k in state and state[k].shape == own[k].shape]
    if not loaded:
        raise UsageError(f'checkpoint {checkpoint} holds no weights of this model\'s FEC '
                         f'backbone (first keys: {", ".join(list(state)[:3])}); pass a '
                         'checkpoint trained with this config')
    kept = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    _load_checkpoint_to_model(model, {'state_dict': kept}, strict=False)
    if len(loaded) < len(wanted):
        print(f'warning: {len(wanted) - len(loaded)} of {len(wanted)} backbone weights are '
              f'not in {checkpoint} and stay random', file=sys.stderr)
    return f'loaded {len(kept)} of {len(own)} weights from {checkpoint}'


def choose_device(name):
    import torch
    from mmfec.utils.cli import UsageError
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f'--device {name}: not a device; use cpu, cuda or cuda:N') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {name}: no CUDA GPU is available here; use --device cpu')
    return device


def output_paths(images, out_dir):
    """``DIR/<image stem>.png``, with ``_1``, ``_2``... when stems repeat."""
    seen, paths = {}, []
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        paths.append(osp.join(out_dir, f'{stem}.png' if count == 0 else f'{stem}_{count}.png'))
    return paths


def main(argv=None):
    args = parse_args(argv)
    if importlib.util.find_spec('mmfec') is None:
        sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed
    import mmfec  # noqa: F401  (registers FEC, installs the safe checkpoint loader)
    from mmfec.utils.cli import UsageError, load_config, user_errors

    with user_errors():
        checkpoint, image_paths = split_paths(args.paths)
        if not args.list_layers:
            if not image_paths:
                raise UsageError('no IMAGE given; pass one or more image files after the '
                                 'config (and the optional checkpoint)')
            if args.out and args.out_dir:
                raise UsageError('give --out-dir DIR or --out FILE.png, not both')
            if args.out and len(image_paths) != 1:
                raise UsageError(f'--out FILE.png takes exactly one IMAGE, got '
                                 f'{len(image_paths)}; use --out-dir DIR for several')
            if args.out and not args.out.lower().endswith('.png'):
                raise UsageError(f'--out {args.out}: the file name must end with .png')
            if not args.out and not args.out_dir:
                raise UsageError('--out-dir DIR is required: the folder for the PNGs '
                                 '(or --out FILE.png for one image)')
            if not 0.0 <= args.alpha <= 1.0:
                raise UsageError(f'--alpha {args.alpha}: must be between 0 and 1')
        images = read_images(image_paths) if not args.list_layers else []
        cfg = load_config(args.config)
        device = choose_device(args.device)
        run(args, cfg, checkpoint, image_paths, images, device)
    return 0


def run(args, cfg, checkpoint, image_paths, images, device):
    import torch

    from mmfec.utils.cli import UsageError
    from mmfec.visualization import (check_head, clustering_layers, config_test_resize,
                                     draw_cluster_maps, find_backbone,
                                     normalization_from_config, resized_size, save_png,
                                     select_layers, to_input)
    backbone_only = is_backbone_config(cfg)
    model, _ = build_model(cfg)
    try:
        backbone = find_backbone(model)
        layers = clustering_layers(backbone)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.list_layers:
        for info in layers:
            print(f'{info.name:16s} {info.kind:9s} {info.path}')
        return
    try:
        chosen = select_layers(layers, args.layers)
        for info in chosen:
            if info.kind == 'encoding':
                check_head(info, backbone.get_submodule(info.path).heads, args.head)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    else:
        print(load_weights(model, checkpoint, backbone_only))
    model.to(device).eval()
    try:
        norm = normalization_from_config(cfg)
    except ValueError as error:
        raise UsageError(str(error)) from None
    resize = None if args.native_size else config_test_resize(cfg)
    print(f'images normalised with {norm.source}; '
          + ('fed at their own size' if resize is None else f"resized as the config's test "
             f"Resize (scale={resize['scale']}, keep_ratio={resize['keep_ratio']})"))
    names = [info.name for info in chosen]
    if args.out:
        out_paths = [args.out]
    else:
        os.makedirs(args.out_dir, exist_ok=True)
        out_paths = output_paths(image_paths, args.out_dir)
    for path, out_path, image in zip(image_paths, out_paths, images):
        size = resized_size(image.shape[:2], resize)
        inputs = to_input(image, norm, size).to(device)
        rgb = image[..., ::-1].copy()
        with torch.no_grad():
            (figure, maps), = draw_cluster_maps(model, inputs, [rgb], layers=names,
                                                head=args.head, alpha=args.alpha)
        save_png(out_path, figure)
        print(f'{path} -> {out_path} (network input {size[1]}x{size[0]}; '
              + ', '.join(f'{m.name}: {m.num_clusters}' for m in maps) + ' clusters)')


if __name__ == '__main__':
    sys.exit(main())
