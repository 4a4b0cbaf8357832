"""Log how pure the clusters are at every validation, to watch them become semantic.

Enable from a config (``mmfec.engine`` must be imported so the hook is registered)::

    custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
    custom_hooks = [dict(type='ClusterPurityHook', num_images=8)]

On the first ``num_images`` validation images it measures, per layer, what
``tools/analyze_clusters.py`` measures (:mod:`mmfec.analysis.cluster_purity`), and
publishes ``cluster_purity/<layer>``, ``cluster_grid_purity/<layer>`` and
``cluster_purity_advantage/<layer>`` as validation scalars: they appear in the log line
of the validation, in ``scalars.json`` and, with ``TensorboardVisBackend`` on, in
TensorBoard. A model without this hook in its config pays nothing.
"""
from typing import Dict, Optional, Sequence, Union

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfec.analysis import DEFAULT_IGNORE_INDEX, PurityMeter, batch_purities
from mmfec.registry import register_everywhere
from mmfec.visualization import clustering_layers, find_backbone, select_layers

SCALAR_NAMES = (('purity', 'cluster_purity'), ('grid_purity', 'cluster_grid_purity'),
                ('advantage', 'cluster_purity_advantage'))


class ClusterPurityHook(Hook):
    """Cluster purity of the first ``num_images`` validation (and test) images.

    Args:
        num_images (int): validation images measured each time (the first ones of the
            loader). Defaults to 8.
        layers (str | list[str]): friendly layer names (``stage1.block2``, ``pool3``),
            module paths, 'default' (last block of every stage and every pooling) or
            'all'. Defaults to 'default'.
        ignore_index (int, optional): segmentation label left out; default the val
            dataset's ``ignore_index`` (255 for mmseg datasets).
    """

    priority = 'NORMAL'  # before LoggerHook, which logs the scalars

    def __init__(self,
                 num_images: int = 8,
                 layers: Union[str, Sequence[str]] = 'default',
                 ignore_index: Optional[int] = None):
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f'ClusterPurityHook: num_images must be an int >= 1, got '
                             f'{num_images!r}')
        self.num_images = num_images
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.ignore_index = ignore_index
        self._meter = PurityMeter()
        self._active = False

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        """Fail before training starts when the model or the layer choice is wrong."""
        try:
            select_layers(clustering_layers(find_backbone(self._model(runner))), self.layers)
        except ValueError as error:
            raise ValueError(f'ClusterPurityHook: {error}') from None

    def _ignore_index(self, loader) -> int:
        if self.ignore_index is not None:
            return self.ignore_index
        dataset = getattr(loader, 'dataset', None)
        return int(getattr(dataset, 'ignore_index', DEFAULT_IGNORE_INDEX))

    def _before_epoch(self, runner, mode: str = 'train') -> None:
        """mmengine's Hook calls this from before_{train,val,test}_epoch."""
        if mode == 'train':
            return
        self._meter.reset()
        self._active = is_main_process()
        self._ignore = self._ignore_index(getattr(runner, f'{mode}_dataloader', None))

    def _after_iter(self, runner, batch_idx: int, data_batch=None, outputs=None,
                    mode: str = 'train') -> None:
        """mmengine's Hook calls this from after_{train,val,test}_iter."""
        if (mode == 'train' or not self._active or self._meter.images >= self.num_images
                or data_batch is None):
            return
        try:
            for rows in batch_purities(self._model(runner), data_batch, self.layers,
                                       self._ignore,
                                       self.num_images - self._meter.images):
                self._meter.add(rows)
        except Exception as error:  # a diagnostic must never end hours of training
            self._active = False
            self._meter.reset()
            runner.logger.warning(f'ClusterPurityHook: no cluster purity this time, '
                                  f'measuring failed with {type(error).__name__}: {error}')

    # the metrics argument is not passed on to Hook._after_epoch, so both stay
    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self._publish(runner, 'val', metrics)

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self._publish(runner, 'test', metrics)

    def _publish(self, runner, mode: str, metrics: Optional[Dict[str, float]]) -> None:
        if not self._active or not self._meter.images:
            return
        for row in self._meter.rows():
            for key, name in SCALAR_NAMES:
                scalar = f"{name}/{row['layer']}"
                runner.message_hub.update_scalar(f'{mode}/{scalar}', row[key])
                if metrics is not None:
                    metrics[scalar] = row[key]
        self._active = False


register_everywhere('HOOKS', ClusterPurityHook)
