"""A plain, dense implementation of FEC's equations, used as the oracle in tests and as
the "paper-style" baseline in ``tools/benchmark.py``.

It follows the paper's code literally: the full ``[b, M, N]`` similarity, a one-hot mask,
and a ``[b, C, M, N]`` dispatch product, with folds done by reshaping (so fold sizes must
divide the map). It reuses the FEC module's own convs, norms and MLPs, so only the
clustering math differs from :class:`mmfec.models.FEC`.
"""
import torch
import torch.nn.functional as F


def _fold(x, rows, cols):
    """``[b, c, H, W]`` -> ``[b*rows*cols, c, H/rows, W/cols]`` (the paper's ``(b f1 f2)``)."""
    b, c, h, w = x.shape
    assert h % rows == 0 and w % cols == 0, f'fold {rows}x{cols} must divide {h}x{w}'
    x = x.reshape(b, c, rows, h // rows, cols, w // cols).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * rows * cols, c, h // rows, w // cols)


def _unfold(x, rows, cols):
    bf, c, h, w = x.shape
    b = bf // (rows * cols)
    x = x.reshape(b, rows, cols, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, rows * h, cols * w)


def _cosine(centers, points):
    """``[b, c, M]``, ``[b, c, N]`` -> ``[b, M, N]``."""
    return F.normalize(centers, dim=1).transpose(1, 2) @ F.normalize(points, dim=1)


def _one_hot_max(sim):
    mask = torch.zeros_like(sim)
    return mask.scatter_(1, sim.max(dim=1, keepdim=True).indices, 1.0)


def dense_cluster_encoding(layer, x):
    b0, _, H, W = x.shape
    feats = layer.f(x).reshape(b0 * layer.heads, layer.head_dims, H, W)
    values = layer.v(x).reshape(b0 * layer.heads, layer.head_dims, H, W)
    rows, cols = layer.fold_size
    feats, values = _fold(feats, rows, cols), _fold(values, rows, cols)
    b, c, h, w = values.shape
    centers = F.adaptive_avg_pool2d(feats, layer.proposal_size).flatten(2)  # [b, c, M]
    center_values = F.adaptive_avg_pool2d(values, layer.proposal_size).flatten(2)
    sim = torch.sigmoid(layer.sim_beta + layer.sim_alpha * _cosine(centers, feats.flatten(2)))
    mask = _one_hot_max(sim)  # [b, M, N]
    summed = torch.einsum('bmn,bcn->bcm', mask, values.flatten(2))
    new_values = (summed + center_values) / (mask.sum(-1).unsqueeze(1) + 1.0)  # [b, c, M]
    # [b, c, M, N] -> [b, c, N]
    out = (new_values.unsqueeze(3) * (sim * mask).unsqueeze(1)).sum(dim=2)
    out = _unfold(out.reshape(b, c, h, w), rows, cols)
    return layer.proj(out.reshape(b0, layer.heads * layer.head_dims, H, W))


def dense_cluster_pooling(layer, x):
    skip = layer.conv_skip(x)
    feats, values = layer.conv_f(x), layer.conv_v(x)
    rows, cols = layer.fold_size
    feats, values = _fold(feats, rows, cols), _fold(values, rows, cols)
    b, c, h, w = values.shape
    centers = F.adaptive_avg_pool2d(feats, (h // 2, w // 2)).flatten(2)
    center_values = F.adaptive_avg_pool2d(values, (h // 2, w // 2)).flatten(2)
    mask = _one_hot_max(_cosine(centers, feats.flatten(2)))  # [b, M, N]
    summed = torch.einsum('bmn,bcn->bcm', mask, values.flatten(2))
    pooled = (summed + center_values) / (mask.sum(-1).unsqueeze(1) + 1.0)
    pooled = _unfold(pooled.reshape(b, c, h // 2, w // 2), rows, cols)
    return skip + layer.norm2(pooled)


def dense_block(block, x):
    x = x + block.drop_path(block.layer_scale_1[:, None, None]
                            * dense_cluster_encoding(block.token_mixer, block.norm1(x)))
    return x + block.drop_path(block.layer_scale_2[:, None, None] * block.mlp(block.norm2(x)))


def dense_fec_forward(model, img):
    """Same outputs as ``model(img)`` (for sizes the folds divide), computed densely."""
    x = model.patch_embed(img)
    outs = []
    for i in range(4):
        if i > 0:
            x = dense_cluster_pooling(model.pooling(i), x)
        for block in model.stage(i):
            x = dense_block(block, x)
        if i in model.out_indices:
            outs.append(model.out_norm(i)(x))
    return tuple(outs)
