from .clustering_model import clustering_fec, make_clustering_matter
from .dense_reference import dense_fec_forward

__all__ = ['clustering_fec', 'dense_fec_forward', 'make_clustering_matter']
