"""The training loader's worker processes ignore SIGTERM (pre-emption is the main process's
call), so they must be stopped some other way: none outlives the training loop, however it
ends, and none keeps the interpreter from exiting, even when its loader was collected as
part of a reference cycle (where torch's own stop sentinel is lost).
"""
import multiprocessing
import subprocess
import sys
import textwrap
import time

import pytest
from long_run_utils import AugmentedToyDataset, build_runner

from mmfec.engine.runner.loops import BadSampleError

pytestmark = pytest.mark.usefixtures('one_thread')


def test_no_worker_outlives_a_training_that_ends_normally(tmp_path):
    build_runner(tmp_path, AugmentedToyDataset(), num_workers=2).train()
    assert multiprocessing.active_children() == []


def test_no_worker_outlives_a_training_stopped_by_an_exception(tmp_path):
    with pytest.raises(BadSampleError):
        build_runner(tmp_path, AugmentedToyDataset(bad={3}), num_workers=2).train()
    assert multiprocessing.active_children() == []


EXIT_SCRIPT = textwrap.dedent('''
    import gc, sys, time
    import torch
    from torch.utils.data import DataLoader
    from mmfec.datasets.resumable import make_resumable

    loader = make_resumable(DataLoader(list(range(8)), batch_size=2, num_workers=2,
                                       persistent_workers=True), seed=0, rank=0)
    batches = iter(loader)
    next(batches)
    if sys.argv[1] == 'cycle':  # a Runner, a traceback: the loader dies in a cycle
        holder = {'loader': loader, 'iterator': batches}
        holder['self'] = holder
        del holder, loader, batches
        gc.collect()
    print('exiting', flush=True)
''')


@pytest.mark.parametrize('ending', ['cycle', 'alive'])
def test_a_process_with_data_workers_exits(ending):
    result = subprocess.run([sys.executable, '-c', EXIT_SCRIPT, ending], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'exiting' in result.stdout


ORPHAN_SCRIPT = textwrap.dedent('''
    import time
    from torch.utils.data import DataLoader
    from mmfec.datasets.resumable import make_resumable

    # batches larger than a pipe's buffer: the workers block sending the ones prefetched
    samples = [bytes(1 << 20)] * 16
    loader = make_resumable(DataLoader(samples, batch_size=2, num_workers=2,
                                       persistent_workers=True), seed=0, rank=0)
    batches = iter(loader)
    next(batches)
    print(*[worker.pid for worker in batches._workers], flush=True)
    time.sleep(600)
''')


def test_workers_die_with_a_killed_trainer():
    """kill -9 (or the OOM killer) on the training process leaves no worker behind."""
    psutil = pytest.importorskip('psutil')
    trainer = subprocess.Popen([sys.executable, '-c', ORPHAN_SCRIPT], stdout=subprocess.PIPE,
                               text=True)
    try:
        pids = [int(pid) for pid in trainer.stdout.readline().split()]
    finally:
        trainer.kill()
        trainer.wait()
    assert len(pids) == 2

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)
