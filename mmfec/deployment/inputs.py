"""The two images ``--verify`` runs: random noise and a real picture, both preprocessed.

Why both: random input exercises every value range but has no structure, so FEC's
clusters form arbitrarily; a real picture gives the clusters (and a segmentor's labels)
something to agree on. Without an image file, a synthetic toy scene (the toy COCO data's
generator: shapes on a textured background) stands in for one.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from mmfec.utils.cli import UsageError

TOY_SCENE_SIZE = 256


def random_input(shape: Sequence[int], seed: int = 1) -> torch.Tensor:
    """``[1, 3, H, W]`` standard-normal noise (a normalised image's value range)."""
    height, width = (int(s) for s in shape)
    return torch.randn((1, 3, height, width), generator=torch.Generator().manual_seed(seed))


def read_image(path: str) -> np.ndarray:
    """uint8 BGR ``[H, W, 3]`` as cv2 reads it; one-line errors for bad files."""
    from mmfec.utils.images import read_image as read
    try:
        return read(path)
    except UsageError as error:
        raise UsageError(f'--image: {error}') from None


def toy_scene(seed: int = 0) -> np.ndarray:
    """A synthetic scene (uint8 BGR), as in ``python tools/make_toy_data.py``'s COCO set."""
    from mmfec.datasets.toy_coco import _render_image
    image, _ = _render_image(np.random.default_rng(seed), TOY_SCENE_SIZE)
    return image


def image_input(cfg, shape: Sequence[int],
                path: Optional[str] = None) -> Tuple[torch.Tensor, str]:
    """The image at ``path`` (else :func:`toy_scene`) resized to ``(H, W)`` and normalised
    as the config's ``data_preprocessor`` says: ``([1, 3, H, W], description)``."""
    from mmfec.visualization.preprocess import normalization_from_config, to_input
    image = read_image(path) if path else toy_scene()
    try:
        norm = normalization_from_config(cfg)
    except ValueError as error:
        raise UsageError(str(error)) from None
    height, width = (int(s) for s in shape)
    name = path or f'a synthetic toy scene ({TOY_SCENE_SIZE}x{TOY_SCENE_SIZE})'
    return to_input(image, norm, (height, width)), f'{name}, resized to {height}x{width}'
