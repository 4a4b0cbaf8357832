"""Draw cluster maps: each cluster a colour blended over the image, borders, one panel per layer.

Why a custom drawer (cv2 + numpy, no matplotlib): it runs inside training hooks and
tools on headless machines, is deterministic (same maps, same picture, same size) and
keeps the figure's size a simple function of the image size, see :func:`figure_shape`.
"""
import colorsys
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .cluster_maps import ClusterMap

MIN_PANEL_SIDE = 256   # tiny images are enlarged so the titles stay readable
MAX_PANEL_SIDE = 768   # huge ones are shrunk so a figure of 8 panels stays a sane size
MAX_COLUMNS = 4
TITLE_HEIGHT = 38
GAP = 4
BACKGROUND = (24, 24, 24)
BORDER_COLOUR = (255, 255, 255)
MAX_DISTINCT_COLOURS = 1024  # beyond this, colours repeat, but never on touching clusters
_GOLDEN = 0.6180339887498949


# ----------------------------------------------------------------------------- geometry
def panel_shape(image_hw: Tuple[int, int]) -> Tuple[int, int]:
    """``(h, w)`` of one panel's picture for an image of ``image_hw`` (aspect ratio kept)."""
    height, width = image_hw
    longest = max(height, width)
    scale = 1.0
    if longest < MIN_PANEL_SIDE:
        scale = MIN_PANEL_SIDE / longest
    elif longest > MAX_PANEL_SIDE:
        scale = MAX_PANEL_SIDE / longest
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def grid_layout(num_panels: int) -> Tuple[int, int]:
    """``(rows, cols)`` of the panel grid."""
    cols = max(1, min(MAX_COLUMNS, num_panels))
    return -(-num_panels // cols), cols


def figure_shape(image_hw: Tuple[int, int], num_panels: int) -> Tuple[int, int]:
    """``(H, W)`` of the figure :func:`render_figure` makes for ``num_panels`` panels."""
    ph, pw = panel_shape(image_hw)
    rows, cols = grid_layout(num_panels)
    return rows * (TITLE_HEIGHT + ph) + (rows + 1) * GAP, cols * pw + (cols + 1) * GAP


def _nearest_resize(ids: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * ids.shape[0] / shape[0]).astype(np.int64),
                      ids.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * ids.shape[1] / shape[1]).astype(np.int64),
                      ids.shape[1] - 1)
    return ids[rows][:, cols]


# ----------------------------------------------------------------------------- colours
def boundaries(ids: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels whose right or lower neighbour is in another cluster."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def distinct_colours(count: int) -> np.ndarray:
    """``[count, 3]`` float RGB in [0, 1]: golden-ratio hues over a few saturation/value
    levels, so any two entries differ."""
    colours = []
    for k in range(count):
        hue = (k * _GOLDEN) % 1.0
        sat = (0.9, 0.6, 0.75)[k % 3]
        val = (0.95, 0.8, 0.65)[(k // 3) % 3]
        colours.append(colorsys.hsv_to_rgb(hue, sat, val))
    return np.asarray(colours, dtype=np.float64).reshape(-1, 3)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)]
    pairs = np.concatenate(pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def cluster_colours(ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Colour every cluster of ``ids``; touching clusters get far-apart colours.

    Returns ``(labels, colours)``: ``labels`` is ``ids`` relabelled to ``0..n-1`` and
    ``colours[label]`` a uint8 RGB. Clusters get distinct colours (up to
    ``MAX_DISTINCT_COLOURS``); they are handed out greedily, largest cluster first, each
    taking the free colour farthest from its already coloured neighbours.
    """
    uniq, labels = np.unique(ids, return_inverse=True)
    labels = labels.reshape(ids.shape)
    count = uniq.size
    palette = distinct_colours(min(count, MAX_DISTINCT_COLOURS))
    distance = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    neighbours: List[List[int]] = [[] for _ in range(count)]
    for a, b in _neighbour_pairs(labels):
        neighbours[a].append(b)
        neighbours[b].append(a)
    chosen = np.full(count, -1, dtype=np.int64)
    used = np.zeros(len(palette), dtype=bool)
    for label in np.argsort(-np.bincount(labels.ravel(), minlength=count), kind='stable'):
        taken = [chosen[n] for n in neighbours[label] if chosen[n] >= 0]
        score = distance[:, taken].min(axis=1) if taken else np.zeros(len(palette))
        if used.all():  # more clusters than colours: reuse, but not a neighbour's
            used[:] = False
        score = np.where(used, -1.0, score)
        if taken:
            score[taken] = -2.0
        pick = int(np.argmax(score))
        chosen[label] = pick
        used[pick] = True
    colours = np.round(palette[chosen] * 255).astype(np.uint8)
    return labels, colours


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.5,
            draw_boundaries: bool = True) -> np.ndarray:
    """Blend cluster colours over ``image`` (uint8 RGB ``[H, W, 3]``, same size as ``ids``)."""
    if image.shape[:2] != ids.shape:
        raise ValueError(f'image {image.shape[:2]} and cluster map {ids.shape} differ in size')
    labels, colours = cluster_colours(ids)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colours[labels].astype(np.float32)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if draw_boundaries:
        edge = boundaries(ids)
        if max(ids.shape) > 2 * MIN_PANEL_SIDE:  # a 1-px line vanishes on big panels
            edge = cv2.dilate(edge.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        out[edge] = BORDER_COLOUR
    return out


# ----------------------------------------------------------------------------- figure
def _fit_text(text: str, width: int, scale: float) -> Tuple[str, float]:
    font = cv2.FONT_HERSHEY_SIMPLEX
    while scale > 0.3 and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        scale -= 0.05
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        text = text[:-3] + '..'
    return text, scale


def _title(canvas: np.ndarray, x: int, y: int, width: int, lines: Sequence[str]):
    font = cv2.FONT_HERSHEY_SIMPLEX
    styles = [(0.55, (255, 255, 255), 16), (0.4, (190, 190, 190), 32)]
    for line, (scale, colour, baseline) in zip(lines, styles):
        text, scale = _fit_text(line, width - 8, scale)
        cv2.putText(canvas, text, (x + 4, y + baseline), font, scale, colour, 1, cv2.LINE_AA)


def render_figure(image: np.ndarray, maps: Sequence[ClusterMap], alpha: float = 0.5,
                  show_image: bool = True, title: Optional[str] = None) -> np.ndarray:
    """One uint8 RGB figure: (the image, then) one titled panel per map.

    ``image`` is uint8 RGB at the maps' resolution. Each panel is titled with the layer's
    friendly name, its number of clusters and, below, its module path.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}')
    hw = image.shape[:2]
    ph, pw = panel_shape(hw)
    small = cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA
                       if ph < hw[0] else cv2.INTER_LINEAR)
    panels = []
    if show_image:
        panels.append((small, [title or 'image', f'{hw[1]}x{hw[0]} px']))
    for cmap in maps:
        if cmap.ids.shape != hw:
            raise ValueError(f'map {cmap.name} is {cmap.ids.shape}, the image {hw}; make the '
                             'maps at the image size')
        head = f', head {cmap.head}' if cmap.head is not None else ''
        panels.append((overlay(small, _nearest_resize(cmap.ids, (ph, pw)), alpha),
                       [f'{cmap.name} ({cmap.num_clusters} clusters{head})', cmap.layer.path]))
    rows, cols = grid_layout(len(panels))
    fig = np.empty(figure_shape(hw, len(panels)) + (3,), dtype=np.uint8)
    fig[:] = BACKGROUND
    for k, (picture, lines) in enumerate(panels):
        r, c = divmod(k, cols)
        x = GAP + c * (pw + GAP)
        y = GAP + r * (TITLE_HEIGHT + ph + GAP)
        _title(fig, x, y, pw, lines)
        fig[y + TITLE_HEIGHT:y + TITLE_HEIGHT + ph, x:x + pw] = picture
    return fig


def save_png(path: str, figure: np.ndarray) -> str:
    """Write an RGB figure as PNG (folders made as needed); returns ``path``."""
    folder = osp.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(figure, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_PNG_COMPRESSION, 6]):
        raise OSError(f'could not write {path}; check the folder is writable and the name '
                      'ends with .png')
    return path


def from_input(inputs: torch.Tensor, mean: Sequence[float], std: Sequence[float],
               is_rgb: bool = True) -> np.ndarray:
    """Normalised ``[3, h, w]`` -> uint8 RGB ``[h, w, 3]`` for drawing (undo ``to_input``)."""
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    image = inputs.detach().float().cpu() * std + mean
    image = image.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image if is_rgb else image[..., ::-1])
