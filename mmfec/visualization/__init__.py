"""Cluster maps: which pixels each FEC layer put together, drawn over the image.

Typical use::

    from mmfec.visualization import draw_cluster_maps, save_png
    (figure, maps), = draw_cluster_maps(model, inputs, [image_rgb])
    save_png('clusters.png', figure)

or, to point at pixels in a browser, one self-contained page::

    from mmfec.visualization import record_clusters, save_explorer
    save_explorer('clusters.html', record_clusters(model.backbone, inputs), image_rgb)

See ``docs/cluster_maps.md`` for the tool (``tools/visualize_clusters.py``) and the
training hook (``ClusterMapHook``).
"""
from .cluster_maps import (
                           ALL_LAYERS,
                           DEFAULT_LAYERS,
                           ClusterMap,
                           LayerInfo,
                           check_head,
                           cluster_maps,
                           clustering_layers,
                           default_layer_names,
                           find_backbone,
                           hierarchy_maps,
                           name_layers,
                           pixel_points,
                           record_clusters,
                           select_layers,
)
from .draw import draw_cluster_maps
from .explorer import explorer_data, explorer_html, pixel_lineage, save_explorer
from .render import (
                           boundaries,
                           cluster_colours,
                           figure_shape,
                           from_input,
                           overlay,
                           panel_shape,
                           render_figure,
                           save_png,
)

__all__ = [
    'ALL_LAYERS', 'DEFAULT_LAYERS', 'ClusterMap', 'LayerInfo', 'check_head', 'cluster_maps',
    'clustering_layers', 'default_layer_names', 'find_backbone', 'hierarchy_maps',
    'name_layers', 'pixel_points', 'record_clusters', 'select_layers', 'draw_cluster_maps',
    'explorer_data', 'explorer_html', 'pixel_lineage', 'save_explorer',
    'from_input', 'boundaries', 'cluster_colours',
    'figure_shape', 'overlay', 'panel_shape', 'render_figure', 'save_png',
]
