"""Save cluster maps of a few validation images at every validation, to watch clusters form.

Enable from a config (``mmfec.engine`` must be imported so the hook is registered)::

    custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
    custom_hooks = [dict(type='ClusterMapHook', num_images=4)]

Figures go to ``work_dir/cluster_maps/epoch_{k}/`` (or ``iter_{k}/`` for iteration-based
training, ``val/`` for a stand-alone validation, ``test/`` for a test run) and to the
visualizer's backends through ``add_image``, so TensorBoard shows them when its backend is
on.
"""
import os.path as osp
from typing import Optional, Sequence, Union

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmfec.registry import register_everywhere
from mmfec.visualization import (
    check_head,
    clustering_layers,
    draw_cluster_maps,
    find_backbone,
    from_input,
    save_png,
    select_layers,
)


class ClusterMapHook(Hook):
    """Draw the cluster maps of the first ``num_images`` validation (and test) images.

    Args:
        num_images (int): validation images drawn each time (the first ones of the loader).
        layers (str | list[str]): friendly layer names (``stage1.block2``, ``pool3``),
            module paths, 'default' (last block of every stage and every pooling) or 'all'.
        head (int): encoding head shown. Defaults to 0.
        interval (int): draw at every ``interval``-th validation. Defaults to 1.
        out_dir (str, optional): folder for the PNGs; default ``work_dir/cluster_maps``.
        to_visualizer (bool): also send the figures to ``runner.visualizer.add_image``.
        alpha (float): opacity of the cluster colours over the image.
    """

    priority = 'LOW'

    def __init__(self,
                 num_images: int = 4,
                 layers: Union[str, Sequence[str]] = 'default',
                 head: int = 0,
                 interval: int = 1,
                 out_dir: Optional[str] = None,
                 to_visualizer: bool = True,
                 alpha: float = 0.5):
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f'ClusterMapHook: num_images must be an int >= 1, got {num_images!r}')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'ClusterMapHook: interval must be an int >= 1, got {interval!r}')
        if not isinstance(head, int) or head < 0:
            raise ValueError(f'ClusterMapHook: head must be an int >= 0, got {head!r}')
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f'ClusterMapHook: alpha must be in [0, 1], got {alpha!r}')
        self.num_images = num_images
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.head = head
        self.interval = interval
        self.out_dir = out_dir
        self.to_visualizer = to_visualizer
        self.alpha = float(alpha)
        self._validations = 0
        self._drawn = 0
        self._active = False
        self._folder = ''
        self._step = 0

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        """Fail before training starts when the model or the layer/head choice is wrong."""
        backbone = find_backbone(self._model(runner))
        try:
            chosen = select_layers(clustering_layers(backbone), self.layers)
        except ValueError as error:
            raise ValueError(f'ClusterMapHook: {error}') from None
        for info in chosen:
            if info.kind == 'encoding':
                check_head(info, backbone.get_submodule(info.path).heads, self.head)

    def _run_name(self, runner, phase: str = 'val') -> str:
        if phase == 'test':
            return 'test'
        loop = getattr(runner, '_train_loop', None)
        if isinstance(loop, IterBasedTrainLoop):
            return f'iter_{runner.iter}'
        if isinstance(loop, EpochBasedTrainLoop):
            return f'epoch_{runner.epoch}'
        return 'val'

    def _before_epoch(self, runner, mode: str = 'train') -> None:
        """mmengine's Hook calls this from before_{train,val,test}_epoch."""
        if mode == 'val':
            self._validations += 1
            self._start(runner, (self._validations - 1) % self.interval == 0, 'val')
        elif mode == 'test':
            self._start(runner, True, 'test')

    def _start(self, runner, due: bool, phase: str) -> None:
        self._drawn = 0
        self._active = is_main_process() and due
        self._step = 0 if phase == 'test' else (
            runner.iter if self._run_name(runner).startswith('iter') else runner.epoch)
        root = self.out_dir or osp.join(runner.work_dir, 'cluster_maps')
        self._folder = osp.join(root, self._run_name(runner, phase))

    def _after_iter(self, runner, batch_idx: int, data_batch=None, outputs=None,
                    mode: str = 'train') -> None:
        """mmengine's Hook calls this from after_{train,val,test}_iter."""
        if (mode == 'train' or not self._active or self._drawn >= self.num_images
                or data_batch is None):
            return
        try:
            self._draw(runner, data_batch)
        except Exception as error:  # a picture must never end hours of training
            self._active = False
            runner.logger.warning(f'ClusterMapHook: no cluster maps this time, drawing failed '
                                  f'with {type(error).__name__}: {error}')

    def _draw(self, runner, data_batch) -> None:
        model = self._model(runner)
        preprocessor = model.data_preprocessor
        with torch.no_grad():
            data = preprocessor(data_batch, False)
        inputs, samples = data['inputs'], data.get('data_samples')
        count = min(inputs.shape[0], self.num_images - self._drawn)
        images, sizes, names = [], [], []
        is_rgb = bool(getattr(preprocessor, '_channel_conversion', False))
        mean = getattr(preprocessor, 'mean', torch.zeros(3))
        std = getattr(preprocessor, 'std', torch.ones(3))
        for index in range(count):
            meta = samples[index].metainfo if samples is not None else {}
            height, width = meta.get('img_shape', inputs.shape[-2:])[:2]
            images.append(from_input(inputs[index, :, :height, :width], mean, std, is_rgb))
            sizes.append((height, width))
            path = meta.get('img_path')
            stem = osp.splitext(osp.basename(path))[0] if path else f'image_{self._drawn + index}'
            names.append(stem)
        results = draw_cluster_maps(model, inputs[:count], images, sizes, self.layers,
                                    self.head, self.alpha)
        for name, (figure, _) in zip(names, results):
            save_png(osp.join(self._folder, f'{name}.png'), figure)
            if self.to_visualizer and getattr(runner, 'visualizer', None) is not None:
                runner.visualizer.add_image(f'cluster_maps_{name}', figure, step=self._step)
        self._drawn += count


register_everywhere('HOOKS', ClusterMapHook)
