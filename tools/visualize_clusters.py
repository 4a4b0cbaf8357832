#!/usr/bin/env python
"""Draw FEC's cluster maps: which pixels every clustering layer put together.

    python tools/visualize_clusters.py CONFIG [CHECKPOINT] IMAGE... --out-dir DIR
                                       [--layers NAME...] [--head K] [--device cpu]
    python tools/visualize_clusters.py CONFIG [CHECKPOINT] IMAGE --out FILE.png ...
    python tools/visualize_clusters.py CONFIG [CHECKPOINT] IMAGE --html FILE.html ...

CONFIG is a detection, segmentation or classification config with an FEC backbone, or a
backbone-only config (``model = dict(type='FEC', ...)``, e.g. configs/fec_small_backbone.py).
Each image goes through the config's own test pipeline and data preprocessor
(``mmfec.apis.prepare_input``), as in ``tools/test.py``.
CHECKPOINT (optional; a .pth/.pt/.ckpt/.bin file or a URL) holds trained weights. One
PNG per image is written to DIR: the image, then one panel per chosen layer. --html
writes the cluster explorer, one self-contained page in which pointing at a pixel
highlights its cluster in every layer (mmfec/visualization/explorer.py).
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

import torch

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.apis import backbone_of, build_model, choose_device, load_weights, prepare_input
from mmfec.utils.cli import UsageError, check_writable, load_config, user_errors
from mmfec.utils.images import looks_like_image, read_image
from mmfec.visualization import (
    check_head,
    cluster_maps,
    clustering_layers,
    record_clusters,
    render_figure,
    save_explorer,
    save_png,
    select_layers,
)

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin', '.tar')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.gif')
# Above this many network-input pixels (e.g. 1280x800), print a line per backbone stage.
LARGE_INPUT_PIXELS = 1_000_000
RANDOM_WEIGHTS_WARNING = ('warning: no CHECKPOINT given, so the model has random weights and '
                          'its cluster maps mean little; pass a trained checkpoint')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the cluster maps of an FEC model (one PNG per image).',
        epilog='Layers are named stage{1-4}.block{i} (clustering encodings) and '
        'pool{2-4} (clustering poolings, whose maps chain the poolings: the hierarchy). '
        'Use --list-layers to see a model\'s names and module paths.')
    parser.add_argument('config', help='mmdet/mmseg/mmpretrain config with an FEC '
                        'backbone, or a backbone-only config')
    parser.add_argument('paths', nargs='*', metavar='[CHECKPOINT] IMAGE',
                        help='optional checkpoint (.pth/.pt/.ckpt/.bin/.tar or URL), '
                        'then one or more images')
    parser.add_argument('--out-dir', help='folder for the PNGs, one <image name>.png per '
                        'image (this or --out is required unless --list-layers)')
    parser.add_argument('--out', metavar='FILE.png',
                        help='with exactly one IMAGE: write its PNG to this path')
    parser.add_argument('--html', metavar='FILE.html',
                        help='with exactly one IMAGE: write the cluster explorer page (one '
                        'self-contained HTML file) to this path')
    parser.add_argument('--layers', nargs='+', default=None, metavar='NAME',
                        help="layers to draw: names such as stage1.block2 or pool3, module "
                        "paths, 'default' (last block of each stage and every pooling) or "
                        "'all' (default: 'default' for the PNGs, 'all' for --html)")
    parser.add_argument('--head', type=int, default=0,
                        help='encoding head to show (default: %(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N '
                        '(default: %(default)s)')
    parser.add_argument('--alpha', type=float, default=0.5,
                        help='opacity of the cluster colours (default: %(default)s)')
    parser.add_argument('--native-size', action='store_true',
                        help='feed images at their own size: leave out the resizing and '
                        "cropping steps of the config's test pipeline")
    parser.add_argument('--list-layers', action='store_true',
                        help='print the layer names and module paths, then exit')
    return parser.parse_args(argv)


def split_paths(paths):
    """``[CHECKPOINT] IMAGE...`` -> ``(checkpoint or None, images)``. A path is an image
    when its bytes say so (JPEG, PNG, ...), whatever its name; a URL or any other file
    first is the checkpoint. A checkpoint after an image is a one-line error."""
    if not paths:
        return None, []
    first = paths[0]
    is_checkpoint = '://' in first or first.lower().endswith(CHECKPOINT_SUFFIXES) or (
        osp.isfile(first) and not looks_like_image(first)
        and not first.lower().endswith(IMAGE_SUFFIXES))
    checkpoint, images = (first, list(paths[1:])) if is_checkpoint else (None, list(paths))
    for path in images:
        if osp.isfile(path) and not looks_like_image(path) and \
                not path.lower().endswith(IMAGE_SUFFIXES):
            raise UsageError(f'{path} is not an image (JPEG, PNG, BMP, TIFF, GIF or WebP); '
                             'the order is CONFIG [CHECKPOINT] IMAGE...')
    return checkpoint, images


def read_images(paths):
    """uint8 BGR arrays; one-line errors for missing or undecodable files."""
    return [read_image(path) for path in paths]


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
            if args.html and len(image_paths) != 1:
                raise UsageError(f'--html FILE.html takes exactly one IMAGE, got '
                                 f'{len(image_paths)}')
            if args.html and not args.html.lower().endswith(('.html', '.htm')):
                raise UsageError(f'--html {args.html}: the file name must end with .html')
            if not args.out and not args.out_dir and not args.html:
                raise UsageError('--out-dir DIR is required: the folder for the PNGs '
                                 '(or --out FILE.png for one image, or --html FILE.html)')
            if not 0.0 <= args.alpha <= 1.0:
                raise UsageError(f'--alpha {args.alpha}: must be between 0 and 1')
            for option, path, folder in (('--out', args.out, False),
                                         ('--out-dir', args.out_dir, True),
                                         ('--html', args.html, False)):
                if path:
                    check_writable(path, option, directory=folder)
        images = read_images(image_paths) if not args.list_layers else []
        cfg = load_config(args.config)
        device = choose_device(args.device)
        run(args, cfg, checkpoint, image_paths, images, device)
    return 0


def run(args, cfg, checkpoint, image_paths, images, device):
    model = build_model(cfg)
    backbone = backbone_of(model)
    layers = clustering_layers(backbone)
    if args.list_layers:
        for info in layers:
            print(f'{info.name:16s} {info.kind:9s} {info.path}')
        return
    png_layers = args.layers or ['default']
    html_layers = args.layers or ['all']
    try:
        chosen = select_layers(layers, png_layers if (args.out or args.out_dir) else [])
        chosen += [info for info in select_layers(layers, html_layers if args.html else [])
                   if info not in chosen]
        for info in chosen:
            if info.kind == 'encoding':
                check_head(info, backbone.get_submodule(info.path).heads, args.head)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    else:
        print(load_weights(model, checkpoint))
    model.to(device).eval()
    print("images go through the config's test pipeline and data preprocessor"
          + (' (resizing and cropping left out: --native-size)' if args.native_size else ''))
    if args.out:
        out_paths = [args.out]
    elif args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        out_paths = output_paths(image_paths, args.out_dir)
    else:
        out_paths = [None] * len(image_paths)
    for path, out_path, image in zip(image_paths, out_paths, images):
        prepared = prepare_input(model, image, native_size=args.native_size)
        size = prepared.size
        large = size[0] * size[1] > LARGE_INPUT_PIXELS
        if large:
            print(f'{path}: a {size[1]}x{size[0]} network input; this can take minutes on a '
                  'CPU', file=sys.stderr)
        with torch.no_grad():
            records = record_clusters(
                backbone, prepared.inputs,
                progress=(lambda line: print(f'  {line}', file=sys.stderr)) if large else None)
        if out_path is not None:
            maps = cluster_maps(records, size, input_size=size, head=args.head,
                                layers=[info.name for info in select_layers(layers, png_layers)])
            save_png(out_path, render_figure(prepared.image_rgb, maps, alpha=args.alpha))
            print(f'{path} -> {out_path} (network input {size[1]}x{size[0]}; '
                  + ', '.join(f'{m.name}: {m.num_clusters}' for m in maps) + ' clusters)')
        if args.html:
            names = [info.name for info in select_layers(layers, html_layers)]
            written = save_explorer(args.html, records, prepared.image_rgb, input_size=size,
                                    head=args.head, layers=names, title=osp.basename(path))
            print(f'{path} -> {args.html} (cluster explorer, {len(names)} layers, '
                  f'{written} bytes)')


if __name__ == '__main__':
    sys.exit(main())
