"""An FEC backbone whose clustering matters, for comparisons with the dense oracle.

With the default initialisation (layer scales 1e-5, alpha 1, beta 0) the clustering
branches barely touch the outputs, so a comparison would pass even with wrong
clustering. The tests, the drift measurement and the GPU check all compare this model:
layer scales 0.5, similarity ``alpha`` 2 and ``beta`` -0.3 in every encoding.
"""
import torch

from ..models import FEC


def make_clustering_matter(model):
    """Set every layer scale to 0.5, every ``sim_alpha`` to 2 and ``sim_beta`` to -0.3."""
    for name, param in model.named_parameters():
        if 'layer_scale' in name:
            param.data.fill_(0.5)
        elif name.endswith('sim_alpha'):
            param.data.fill_(2.0)
        elif name.endswith('sim_beta'):
            param.data.fill_(-0.3)
    return model


def clustering_fec(arch='small', seed=0, **kwargs):
    """``FEC(arch, **kwargs)`` initialised from ``seed``, with :func:`make_clustering_matter`."""
    torch.manual_seed(seed)
    model = FEC(arch, **kwargs)
    model.init_weights()
    return make_clustering_matter(model)
