"""The two images ``--verify`` runs: random noise and a real picture.

Why both: random input exercises every value range but has no structure, so FEC's
clusters form arbitrarily; a real picture gives the clusters (and a segmentor's labels)
something to agree on. Without an image file, a synthetic toy scene (the toy COCO data's
generator: shapes on a textured background) stands in for one. The real picture is
resized to the graph's static size here and then preprocessed by the caller
(``mmfec.apis.prepare_input``, the config's own normalisation).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..datasets.toy_coco import render_scene
from ..utils.cli import UsageError
from ..utils.images import read_image, resize_image

TOY_SCENE_SIZE = 256


def random_input(shape: Sequence[int], seed: int = 1) -> torch.Tensor:
    """``[1, 3, H, W]`` standard-normal noise (a normalised image's value range)."""
    height, width = (int(s) for s in shape)
    return torch.randn((1, 3, height, width), generator=torch.Generator().manual_seed(seed))


def toy_scene(seed: int = 0) -> np.ndarray:
    """A synthetic scene (uint8 BGR), as in ``python tools/make_toy_data.py``'s COCO set."""
    image, _ = render_scene(np.random.default_rng(seed), TOY_SCENE_SIZE)
    return image


def sized_image(shape: Sequence[int], path: Optional[str] = None) -> Tuple[np.ndarray, str]:
    """The image at ``path`` (else :func:`toy_scene`), uint8 BGR resized to ``(H, W)``,
    and a description of it."""
    try:
        image = read_image(path) if path else toy_scene()
    except UsageError as error:
        raise UsageError(f'--image: {error}') from None
    height, width = (int(s) for s in shape)
    name = path or f'a synthetic toy scene ({TOY_SCENE_SIZE}x{TOY_SCENE_SIZE})'
    return resize_image(image, (height, width)), f'{name}, resized to {height}x{width}'
