"""A tiny mmengine training set-up for the long-run tests: a model with dropout and a data
set whose every sample is randomly augmented with python's, numpy's and torch's
generators, the way mmdet/mmseg pipelines draw their flips and crops. One run of a few
iterations takes well under a second, in this process."""
import random
import uuid

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmfec.engine  # noqa: F401  (registers the hooks and loops)

FEATURES = 8


class AugmentedToyDataset(Dataset):
    """``size`` fixed vectors, each loaded with random noise, a random flip and a random
    scale; ``bad`` indices raise like a truncated image; every load is counted in
    ``loads`` (this process only)."""

    def __init__(self, size=12, bad=()):
        generator = torch.Generator().manual_seed(0)
        self.base = torch.randn(size, FEATURES, generator=generator)
        self.bad = set(bad)
        self.loads = 0
        self.metainfo = dict(classes=('toy', ))

    def __len__(self):
        return len(self.base)

    def get_data_info(self, index):
        return dict(img_path=f'toy/{index:04d}.jpg')

    def __getitem__(self, index):
        self.loads += 1
        if int(index) in self.bad:
            raise OSError(f'image file is truncated (toy/{int(index):04d}.jpg)')
        x = self.base[int(index)].clone()
        if random.random() < 0.5:
            x = x.flip(0)
        x = x * float(np.random.uniform(0.5, 1.5)) + 0.1 * torch.randn(FEATURES)
        return dict(inputs=x)


class ToyModel(BaseModel):
    """A linear layer behind dropout: the main process's torch RNG matters too."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():  # the same initial weights in every run
            torch.manual_seed(0)
            self.linear = nn.Linear(FEATURES, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.linear(self.dropout(inputs))
        return dict(loss=(out ** 2).mean())


def build_runner(work_dir, dataset, *, by_epoch=False, max_steps=6, interval=2,
                 num_workers=0, resume=False, max_keep_ckpts=-1, custom_hooks=(),
                 batch_size=2, train_cfg_extra=None):
    """A Runner with mmfec's long-run defaults (SafeCheckpointHook, RNGStateHook, the
    Exact loops), epoch- or iteration-based."""
    if by_epoch:
        train_cfg = dict(type='ExactEpochBasedTrainLoop', max_epochs=max_steps)
        sampler = dict(type='DefaultSampler', shuffle=True)
    else:
        train_cfg = dict(type='ExactIterBasedTrainLoop', max_iters=max_steps)
        sampler = dict(type='InfiniteSampler', shuffle=True)
    train_cfg.update(train_cfg_extra or {})
    loader = dict(dataset=dataset, sampler=sampler, batch_size=batch_size,
                  num_workers=num_workers, persistent_workers=num_workers > 0,
                  collate_fn=dict(type='default_collate'))
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), train_dataloader=loader,
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='SafeCheckpointHook', interval=interval,
                            by_epoch=by_epoch, max_keep_ckpts=max_keep_ckpts)),
        custom_hooks=[dict(type='RNGStateHook'), *custom_hooks],
        randomness=dict(seed=0), resume=resume, default_scope='mmengine',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING', experiment_name=f'long_run_{uuid.uuid4().hex}')


def weights(runner):
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
