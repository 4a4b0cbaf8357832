"""The cluster explorer: one self-contained HTML page per image, to point at pixels.

Why a page and not more pictures: the PNG panels show every layer's clusters, but not
which cluster of ``stage4`` a given stage-1 cluster ended in. In the page a person points
at a pixel and sees that pixel's cluster highlighted in every layer at once (its lineage,
stage 1 to stage 4), with each cluster's size and the pixel's similarity to the center
it joined.

What the page holds (all inline: no network, no server, any current browser):

* the image (JPEG, quality :data:`JPEG_QUALITY`);
* the stride-4 point of every image row and column (:func:`pixel_points` is separable);
* every pooling's assignment (stage-(s-1) point -> stage-s point) and every shown
  encoding's assignment (stage-s point -> center, the one head shown) with the
  similarities, quantised to one byte over the similarity's range.

The page rebuilds the maps from these in JavaScript, so it stays small (see
``docs/cluster_maps.md`` for measured sizes). ``?probe=X,Y`` in the page's URL makes it
write the lineage it computed for pixel (X, Y) into ``<pre id="probe">`` as JSON; the
tests compare that with :func:`pixel_lineage`, which computes it from the records.
"""
import base64
import html
import json
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.atomic_write import write_atomic
from .cluster_maps import (
    ALL_LAYERS,
    STEM_STRIDE,
    check_head,
    cluster_maps,
    name_layers,
    pixel_points,
    select_layers,
)
from .explorer_page import PAGE_TEMPLATE

JPEG_QUALITY = 90
SIMILARITY_RANGE = {'encoding': (0.0, 1.0),   # sigmoid(beta + alpha * cos)
                    'pooling': (-1.0, 1.0)}   # cosine
SIMILARITY_LEVELS = 255


def _encode_array(values: np.ndarray) -> Dict[str, str]:
    """Little-endian unsigned ints of the smallest width, base64."""
    values = np.asarray(values).ravel()
    top = int(values.max()) if values.size else 0
    for kind, dtype in (('u8', '<u1'), ('u16', '<u2'), ('u32', '<u4')):
        if top < np.iinfo(np.dtype(dtype)).max + 1:
            break
    else:
        raise ValueError(f'value {top} does not fit in 32 bits')
    return dict(type=kind, data=base64.b64encode(values.astype(dtype).tobytes()).decode())


def quantize_similarity(similarity: np.ndarray, kind: str) -> np.ndarray:
    """Similarities -> uint8 levels over :data:`SIMILARITY_RANGE` of the layer kind."""
    low, high = SIMILARITY_RANGE[kind]
    scaled = (np.asarray(similarity, dtype=np.float64) - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * SIMILARITY_LEVELS).astype(np.uint8)


def _image_data_url(image_rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode('.jpg', np.ascontiguousarray(image_rgb[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError('could not encode the image as JPEG')
    return 'data:image/jpeg;base64,' + base64.b64encode(encoded.tobytes()).decode()


def _resolve(records: Sequence[dict], layers, head: int):
    if not records:
        raise ValueError('no cluster records: run the backbone inside ClusterRecorder(...) '
                         '(or use record_clusters) before making the explorer')
    infos = name_layers([(r['name'], r['kind']) for r in records])
    chosen = select_layers(infos, ALL_LAYERS if layers is None else layers)
    for info, record in zip(infos, records):
        if info in chosen and info.kind == 'encoding':
            check_head(info, record['assignment'].shape[1], head)
    return infos, {info.name for info in chosen}


def explorer_data(records: Sequence[dict], image_rgb: np.ndarray,
                  input_size: Optional[Tuple[int, int]] = None, head: int = 0,
                  layers=None, batch_index: int = 0, title: str = 'image') -> dict:
    """Everything the page needs, as a JSON-able dict.

    Args:
        records: from :func:`record_clusters`, one forward pass, in forward order.
        image_rgb: uint8 RGB ``[H, W, 3]``; the page works at this resolution.
        input_size: ``(h, w)`` part of the network input holding the image (top-left);
            defaults to the whole input, see :func:`cluster_maps`.
        head: the encoding head shown.
        layers: friendly names / module paths / 'default' / 'all' (None = all).
        batch_index: which image of the batch.
        title: shown at the top of the page (e.g. the image's file name).
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f'image must be uint8 RGB [H, W, 3], got {image_rgb.dtype} '
                         f'{image_rgb.shape}')
    infos, shown = _resolve(records, layers, head)
    batch = records[0]['assignment'].shape[0]
    if not 0 <= batch_index < batch:
        raise ValueError(f'batch_index {batch_index} is out of range for a batch of {batch}')
    height, width = image_rgb.shape[:2]
    grid = tuple(int(v) for v in records[0]['assignment'].shape[-2:])
    if input_size is None:
        input_size = (grid[0] * STEM_STRIDE, grid[1] * STEM_STRIDE)
    points = pixel_points((height, width), tuple(input_size), grid)
    entries = []
    for info, record in zip(infos, records):
        if info.kind == 'encoding' and info.name not in shown:
            continue
        assign = record['assignment'][batch_index]
        sim = record['similarity'][batch_index]
        if info.kind == 'encoding':
            assign, sim = assign[head], sim[head]
        entries.append(dict(
            name=info.name, path=info.path, kind=info.kind, stage=info.stage,
            shown=info.name in shown, head=head if info.kind == 'encoding' else None,
            heads=int(record['assignment'].shape[1]) if info.kind == 'encoding' else None,
            centers=[int(v) for v in record['center_grid']],
            regions=[int(v) for v in record['regions']],
            points=[int(v) for v in assign.shape],
            ids=_encode_array(assign.reshape(-1).cpu().numpy()),
            similarity=dict(range=list(SIMILARITY_RANGE[info.kind]),
                            levels=SIMILARITY_LEVELS,
                            **_encode_array(quantize_similarity(
                                sim.reshape(-1).float().cpu().numpy(), info.kind)))))
    return dict(
        version=1, title=str(title), head=head,
        image=dict(width=width, height=height, src=_image_data_url(image_rgb)),
        grid=list(grid),
        pixel_rows=_encode_array(points[:, 0] // grid[1]),
        pixel_cols=_encode_array(points[0, :] % grid[1]),
        layers=entries)


def explorer_html(data: dict) -> str:
    """The page for :func:`explorer_data`'s dict: one HTML string, nothing external."""
    payload = json.dumps(data, separators=(',', ':')).replace('</', '<\\/')
    return (PAGE_TEMPLATE.replace('@@TITLE@@', html.escape(data['title']))
            .replace('@@DATA@@', payload))


def save_explorer(path: str, records: Sequence[dict], image_rgb: np.ndarray,
                  input_size: Optional[Tuple[int, int]] = None, head: int = 0,
                  layers=None, batch_index: int = 0, title: str = 'image') -> int:
    """Write the explorer page to ``path`` (folders made as needed; written to a
    temporary file first, so a failure leaves nothing half-written). Returns its size
    in bytes."""
    return write_atomic(path, explorer_html(explorer_data(
        records, image_rgb, input_size, head, layers, batch_index, title)))


def pixel_lineage(records: Sequence[dict], image_size: Tuple[int, int], x: int, y: int,
                  input_size: Optional[Tuple[int, int]] = None, head: int = 0,
                  layers=None, batch_index: int = 0) -> List[dict]:
    """Pixel ``(x, y)``'s cluster in every selected layer, computed from the records.

    Returns ``[dict(layer, cluster, size, similarity), ...]`` in forward order: the
    cluster (center) id, the cluster's size in image pixels, and the similarity of the
    pixel's point to the center it joined (an encoding's sigmoid similarity for ``head``,
    a pooling's cosine). This is what the explorer page shows for that pixel.
    """
    height, width = (int(v) for v in image_size)
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f'pixel ({x}, {y}) is outside the {width}x{height} image')
    infos, shown = _resolve(records, layers, head)
    maps = {m.name: m for m in cluster_maps(records, (height, width), input_size, head=head,
                                            batch_index=batch_index, layers=sorted(shown))}
    grid = tuple(records[0]['assignment'].shape[-2:])
    if input_size is None:
        input_size = (grid[0] * STEM_STRIDE, grid[1] * STEM_STRIDE)
    point = int(pixel_points((height, width), tuple(input_size), grid)[y, x])
    lineage = []
    for info, record in zip(infos, records):
        similarity = record['similarity'][batch_index]
        if info.kind == 'encoding':
            if info.name not in shown:
                continue
            sim = float(similarity[head].reshape(-1)[point])
        else:  # the pixel's point before pooling, and the cosine it joined with
            sim = float(similarity.reshape(-1)[point])
            point = int(record['assignment'][batch_index].reshape(-1)[point])
        if info.name in shown:
            ids = maps[info.name].ids
            cluster = int(ids[y, x])
            lineage.append(dict(layer=info.name, cluster=cluster,
                                size=int(np.count_nonzero(ids == cluster)),
                                similarity=sim))
    return lineage
