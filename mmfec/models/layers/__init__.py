from .cluster_block import ChannelMlp, ClusterBlock
from .cluster_encoding import ClusterEncoding
from .cluster_pooling import ClusterPooling, set_similarity_screen
from .paths import PlainPath, plain_ops, set_plain
from .positional_stem import PositionalStem

__all__ = ['ChannelMlp', 'ClusterBlock', 'ClusterEncoding', 'ClusterPooling', 'PositionalStem',
           'set_similarity_screen', 'PlainPath', 'plain_ops', 'set_plain']
