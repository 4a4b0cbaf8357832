"""The poolings' arg-max on CPU with the cosine laid out centers-major.

A pooling region's cosine chunk is ``[M, C] x [C, n] -> [M, n]`` here (``M`` centers,
``C`` channels, ``n`` points of a chunk of one image) instead of the ``[n, C] x [C, M]``
of a transposed point chunk: both operands are read in their natural layout, which MKL
multiplies faster on CPU (for ``C`` = 64, ``M`` = 3800, 456 points: about 2.1 against
3.1 ms, 2 threads; the same dot products, bit for bit with MKL). The arg-max then runs
down the columns, block by block (:func:`first_argmax_centers_major`).
:func:`~.assignment.region_nearest_centers` uses it for large regions (``M`` >=
``assignment.CENTERS_MAJOR_MIN_CENTERS``) on CPU; measurements in docs/performance.md.
"""
import torch
from torch import Tensor

# Centers per block of the column arg-max; a multiple of the vector width.
BLOCK = 64


def first_argmax_centers_major(scores: Tensor) -> Tensor:
    """``scores.argmax(0)`` for ``[M, n]`` with ``M`` a multiple of ``BLOCK`` (pad with
    ``-inf`` rows): the maximum of every block of centers by a vectorised ``amax`` down
    the columns, the first block holding the column's maximum, then the first position
    inside it. Exactly ``argmax``: first index among equal maxima, NaN ranked above
    everything, as ``argmax`` ranks it. Returns ``[n]`` int64."""
    centers, points = scores.shape
    main = scores.view(centers // BLOCK, BLOCK, points)
    best_block = main.amax(dim=1).argmax(dim=0)  # [n]
    inside = main[best_block, :, torch.arange(points, device=scores.device)]  # [n, BLOCK]
    return inside.argmax(dim=1) + best_block * BLOCK


class CentersMajorArgmax:
    """Best center of each point of a chunk of one image, among one region's centers.

    Holds the centers transposed, ``[M, C]``, and one ``[M', n]`` score buffer (``M'``:
    ``M`` rounded up to ``BLOCK``, the extra rows ``-inf`` so they never win), reused
    while chunks keep their width and replaced, not kept beside, when the width changes:
    memory stays one chunk. No autograd (the GEMM writes into the buffer).

    Args:
        centers: ``[C, M]`` normalised center features.
    """

    def __init__(self, centers: Tensor):
        self.centers = centers.t().contiguous()  # [M, C]
        self.num_centers = centers.shape[1]
        self.padded = -(-self.num_centers // BLOCK) * BLOCK
        self.scores = None

    @torch.no_grad()
    def __call__(self, chunk: Tensor) -> Tensor:
        """``chunk`` ``[C, n]`` (any dtype: cast to the centers') -> index ``[n]``."""
        points = chunk.shape[1]
        if self.scores is None or self.scores.shape[1] != points:
            self.scores = None  # free the old buffer before the new one
            self.scores = self.centers.new_empty((self.padded, points))
            self.scores[self.num_centers:] = float('-inf')
        torch.mm(self.centers, chunk.to(self.centers.dtype), out=self.scores[:self.num_centers])
        return first_argmax_centers_major(self.scores)


@torch.no_grad()
def centers_major_argmax(points: Tensor, centers: Tensor, chunk_elements: int) -> Tensor:
    """Best center of every point of one region, image by image.

    Args:
        points: ``[B, C, h, w]`` the region's points (a view into the map is fine).
        centers: ``[B, C, M]`` the region's normalised centers.
        chunk_elements: the most scores one chunk may hold (whole rows of the region, at
            least one).
    Returns:
        ``[B, h, w]`` int64 indices into the region's ``M`` centers.
    """
    batch, channels, height, width = points.shape
    rows = max(1, chunk_elements // (centers.shape[2] * width))
    index = torch.empty((batch, height, width), dtype=torch.long, device=points.device)
    for image in range(batch):
        region = CentersMajorArgmax(centers[image])
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            chunk = points[image, :, r0:r1].reshape(channels, -1)
            index[image, r0:r1] = region(chunk).view(r1 - r0, width)
    return index
