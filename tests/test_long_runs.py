"""Long runs, in this process on a tiny mmengine model (tests/long_run_utils.py): what
mmfec's hooks and loops promise, one behaviour per test.

Checkpoints: written whole or not at all; ``--resume`` passes over a damaged newest one
with a warning, stops with one line when none is good; a config keeping one keeps two.
Exact resume: per-sample seeding makes the data the same with 0 and 2 workers, and a run
resumed from any checkpoint ends with the uninterrupted run's weights (epoch- and
iteration-based). Fast resume: the skipped iterations load no sample. Pre-emption: a
signal saves a checkpoint after the current iteration and exits with 128 + signal.
Bad samples: stop with one line naming the file, or skip and count up to a share.
"""
import os
import shutil
import signal

import pytest
import torch
from long_run_utils import AugmentedToyDataset, build_runner, same_weights, weights
from mmengine.hooks import Hook

from mmfec.engine.hooks.preemption_hook import Preempted, PreemptionHook
from mmfec.engine.hooks.safe_checkpoint_hook import (
    ResumeError,
    checkpoint_problem,
    choose_resume_checkpoint,
)
from mmfec.engine.runner.loops import BadSampleError

pytestmark = pytest.mark.usefixtures('one_thread')


def _train(work_dir, dataset=None, **kwargs):
    runner = build_runner(work_dir, dataset or AugmentedToyDataset(), **kwargs)
    runner.train()
    return runner


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture(scope='module')
def iter_reference(tmp_path_factory):
    """6 iterations, a checkpoint every 2, no interruption, no workers."""
    work = tmp_path_factory.mktemp('iter_reference')
    return work, weights(_train(work))


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_appears_only_when_complete(tmp_path, monkeypatch):
    """A save that dies half-way leaves neither the file nor a moved last_checkpoint."""
    from mmengine.runner import Runner
    real_save = Runner.save_checkpoint

    def dying_save(self, out_dir, filename, *args, **kwargs):
        real_save(self, out_dir, filename, *args, **kwargs)  # the bytes are written ...
        if self.iter + 1 == 4:
            raise KeyboardInterrupt('killed while writing')  # ... but never finished

    monkeypatch.setattr(Runner, 'save_checkpoint', dying_save)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path)
    assert (tmp_path / 'iter_2.pth').is_file()
    assert not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')


def test_a_config_that_keeps_one_checkpoint_keeps_two(tmp_path):
    _train(tmp_path, max_keep_ckpts=1)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_4.pth', 'iter_6.pth']


def test_damaged_newest_checkpoint_resumes_from_the_previous_one(iter_reference, tmp_path,
                                                                 capsys):
    reference_dir, reference = iter_reference
    shutil.copytree(reference_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / 'iter_6.pth').unlink()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    _truncate(tmp_path / 'iter_4.pth')  # the newest, named by last_checkpoint
    assert 'truncated' in checkpoint_problem(str(tmp_path / 'iter_4.pth'))
    resumed = _train(tmp_path, resume=True)
    log = capsys.readouterr()
    warnings = [line for line in (log.out + log.err).splitlines() if 'skipped damaged' in line]
    assert len(warnings) == 1, log
    assert 'WARNING' in warnings[0] and 'iter_4.pth' in warnings[0]
    assert warnings[0].endswith(f'resuming from {tmp_path / "iter_2.pth"}')
    assert same_weights(weights(resumed), reference)


def test_no_good_checkpoint_is_one_error_line(tmp_path):
    for name in ('iter_2.pth', 'iter_4.pth'):
        (tmp_path / name).write_bytes(b'PK\x03\x04 not really')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    with pytest.raises(ResumeError) as error:
        choose_resume_checkpoint(str(tmp_path))
    message = str(error.value)
    assert '\n' not in message and 'iter_4.pth' in message and 'iter_2.pth' in message


# ---------------------------------------------------------------- exact resume
@pytest.mark.parametrize('num_workers', [0, 2])
def test_iteration_based_resume_equals_uninterrupted(iter_reference, tmp_path, num_workers):
    """Resumed from iteration 2 (of 6), with 0 or 2 persistent workers, the weights end
    equal to the uninterrupted run's with no workers."""
    reference_dir, reference = iter_reference
    shutil.copy(reference_dir / 'iter_2.pth', tmp_path / 'iter_2.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    resumed = _train(tmp_path, resume=True, num_workers=num_workers)
    assert resumed.iter == 6
    assert same_weights(weights(resumed), reference)


EPOCH_RUN = dict(by_epoch=True, max_steps=3, interval=1, batch_size=4)  # 3 x 3 iterations


@pytest.fixture(scope='module')
def epoch_reference(tmp_path_factory):
    work = tmp_path_factory.mktemp('epoch_reference')
    return work, weights(_train(work, **EPOCH_RUN))


@pytest.mark.parametrize('num_workers', [0, 2])
def test_epoch_based_resume_equals_uninterrupted(epoch_reference, tmp_path, num_workers):
    """3 epochs of 3 iterations; resumed after epoch 1, with 0 or 2 persistent workers."""
    reference_dir, reference = epoch_reference
    shutil.copy(reference_dir / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    resumed = _train(tmp_path, resume=True, num_workers=num_workers, **EPOCH_RUN)
    assert resumed.epoch == 3
    assert same_weights(weights(resumed), reference)


def test_data_do_not_depend_on_the_number_of_workers(iter_reference, tmp_path):
    """Each sample's augmentation is a function of (seed, epoch, batch, index)."""
    _, reference = iter_reference
    assert same_weights(weights(_train(tmp_path, num_workers=2)), reference)


# ---------------------------------------------------------------- fast resume
def test_resume_loads_no_sample_of_the_iterations_before_it(iter_reference, tmp_path):
    reference_dir, _ = iter_reference
    shutil.copy(reference_dir / 'iter_4.pth', tmp_path / 'iter_4.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    runner = _train(tmp_path, resume=True)
    loaded = runner.train_loop.dataloader.dataset.dataset  # the Runner's copy, unwrapped
    assert loaded.loads == 2 * 2  # iterations 5 and 6, 2 samples each; none replayed


# ---------------------------------------------------------------- pre-emption
class SignalAt(Hook):
    """Sends this process ``signum`` during training iteration ``at`` (1-based)."""

    def __init__(self, at, signum=signal.SIGTERM):
        self.at, self.signum = at, signum

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_after_the_current_iteration_and_exits(tmp_path, signum, capsys):
    hooks = [dict(type='PreemptionHook'), SignalAt(3, signum)]
    with pytest.raises(Preempted) as stop:
        _train(tmp_path, custom_hooks=hooks, interval=100)
    assert stop.value.code == 128 + signum
    assert (tmp_path / 'iter_3.pth').is_file()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')
    assert 'continue with: python tools/train.py' in capsys.readouterr().err
    handler = signal.getsignal(signal.SIGTERM)  # put back as it was before training
    assert not isinstance(getattr(handler, '__self__', None), PreemptionHook)


def test_preempted_mid_epoch_resumes_exactly(epoch_reference, tmp_path):
    """SIGTERM in iteration 2 of epoch 2 (of 3 iterations each); --resume continues there."""
    _, reference = epoch_reference
    with pytest.raises(Preempted):
        _train(tmp_path, custom_hooks=[dict(type='PreemptionHook'), SignalAt(5)],
               num_workers=2, **EPOCH_RUN)
    assert (tmp_path / 'epoch_2_iter_5.pth').is_file()
    resumed = _train(tmp_path, resume=True, num_workers=2, **EPOCH_RUN)
    assert same_weights(weights(resumed), reference)


# ---------------------------------------------------------------- bad samples
def test_bad_sample_stops_with_one_line_naming_the_file(tmp_path):
    with pytest.raises(BadSampleError) as error:
        _train(tmp_path, AugmentedToyDataset(bad={3}), num_workers=2)
    message = str(error.value)
    assert '\n' not in message and 'toy/0003.jpg' in message
    assert 'truncated' in message and 'tools/check_data.py' in message


def test_bad_samples_skipped_when_asked_until_more_than_the_share(tmp_path):
    extra = dict(bad_samples='skip', max_bad_share=0.1)  # 1 of 12 is fine, 2 are not
    runner = _train(tmp_path / 'one', AugmentedToyDataset(bad={3}), train_cfg_extra=extra,
                    max_steps=12)
    assert runner.iter == 12 and runner.train_loop._bad_book.bad.keys() == {3}
    with pytest.raises(BadSampleError, match='2 of 12 training samples are bad'):
        _train(tmp_path / 'two', AugmentedToyDataset(bad={3, 7}), train_cfg_extra=extra,
               max_steps=12)


def test_checkpoint_problem_accepts_a_whole_checkpoint(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, path)
    assert checkpoint_problem(str(path)) is None
    path.write_bytes(b'')
    assert 'empty' in checkpoint_problem(str(path))
