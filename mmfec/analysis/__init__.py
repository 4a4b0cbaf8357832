"""Measurements of what FEC's clusters capture: purity against ground truth.

Typical use::

    from mmfec.analysis import PurityMeter, batch_purities, format_table
    meter = PurityMeter()
    for data_batch in val_dataloader:
        for rows in batch_purities(model, data_batch):
            meter.add(rows)
    print(format_table(meter.rows()))

See ``docs/cluster_maps.md`` for the tool (``tools/analyze_clusters.py``) and the
training hook (``ClusterPurityHook``).
"""
from .cluster_purity import (
                             ROW_KEYS,
                             PurityMeter,
                             batch_purities,
                             format_table,
                             image_purities,
                             measure_purity,
)
from .ground_truth import (
                             BACKGROUND,
                             DEFAULT_IGNORE_INDEX,
                             instance_label_map,
                             label_map,
                             mask_array,
)
from .purity import cells_per_region, grid_partition, layer_grid, num_cells, purity
from .val_data import purity_dataloader_cfg

__all__ = [
    'ROW_KEYS', 'PurityMeter', 'batch_purities', 'format_table', 'image_purities',
    'measure_purity', 'purity_dataloader_cfg',
    'BACKGROUND', 'DEFAULT_IGNORE_INDEX', 'instance_label_map', 'label_map', 'mask_array',
    'cells_per_region', 'grid_partition', 'layer_grid', 'num_cells', 'purity',
]
