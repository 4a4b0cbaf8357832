"""Cluster launchers, without a cluster.

1. ``tools/slurm_train.sh`` / ``slurm_test.sh`` with a stand-in ``srun`` on PATH that
   starts one process per task with what Slurm sets (SLURM_PROCID, SLURM_NTASKS,
   SLURM_LOCALID, SLURM_NODELIST, ...) and a stand-in ``scontrol``: the scripts pass
   mmdet's srun arguments, and ``--launcher slurm`` trains and tests on 2 CPU processes
   over gloo.
2. Multi-node torchrun (``tools/dist_train.sh`` with NNODES, NODE_RANK, MASTER_ADDR,
   PORT): two "nodes" of one process each on 127.0.0.1 reach the same weights as one node
   with two processes.
3. Two gloo processes killed with kill -9 and resumed reach the uninterrupted weights.
"""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from det_utils import (
    CONFIGS,
    ROOT,
    TOOLS,
    differing_keys,
    explain,
    free_port,
    load_checkpoint,
    run_tool,
    tool_env,
)

from mmfec.datasets import ensure_toy_ade20k

pytestmark = pytest.mark.slow
CONFIG = CONFIGS / 'semfpn_fec_toy.py'
DIST_ITERS = 4

SRUN = '''#!{python}
"""Stand-in srun: records its arguments, then runs the command once per task (--ntasks)
with the variables Slurm gives each task; exits with the worst exit code."""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ['SRUN_RECORD'], 'w') as f:
    json.dump(args, f)
ntasks, per_node, i = 1, None, 0
while args[i].startswith('-'):
    option = args[i]
    if option == '-p':
        i += 2
        continue
    if option.startswith('--ntasks='):
        ntasks = int(option.split('=')[1])
    if option.startswith('--ntasks-per-node='):
        per_node = int(option.split('=')[1])
    i += 1
command = args[i:]
per_node = per_node or ntasks
procs = []
for rank in range(ntasks):
    env = dict(os.environ, SLURM_PROCID=str(rank), SLURM_NTASKS=str(ntasks),
               SLURM_LOCALID=str(rank % per_node), SLURM_NODEID=str(rank // per_node),
               SLURM_NODELIST='fake-node[01-02]', SLURM_JOB_ID='4242',
               SLURM_NTASKS_PER_NODE=str(per_node))
    procs.append(subprocess.Popen(command, env=env))
sys.exit(max(p.wait() for p in procs))
'''

SCONTROL = '''#!/usr/bin/env bash
# Stand-in scontrol: "scontrol show hostnames LIST" names this machine.
if [ "$1 $2" = "show hostnames" ] || [ "$1 $2" = "show hostname" ]; then
    echo 127.0.0.1
    exit 0
fi
echo "stand-in scontrol: $*" >&2
exit 1
'''


def _options(root, *extra):
    options = ['env_cfg.dist_cfg.backend=gloo', 'randomness.seed=0']
    for loader in ('train', 'val', 'test'):
        options += [f'{loader}_dataloader.dataset.data_root={root}',
                    f'{loader}_dataloader.num_workers=0',
                    f'{loader}_dataloader.persistent_workers=False']
    options += ['train_dataloader.batch_size=1',
                'train_dataloader.dataset.pipeline.2.scale=(64,64)',
                'train_dataloader.dataset.pipeline.3.crop_size=(48,48)',
                'model.data_preprocessor.size=(48,48)',
                'train_cfg.max_iters=2', 'train_cfg.val_begin=1000',
                'default_hooks.logger.interval=1', *extra]
    return ['--cfg-options', *options]


@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    return ensure_toy_ade20k(tmp_path_factory.mktemp('launch_seg'), num_train=4, num_val=2)


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', SRUN.format(python=sys.executable)), ('scontrol', SCONTROL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / 'srun_args.json'
    python_dir = os.path.dirname(sys.executable)
    env = tool_env(PATH=f'{bin_dir}{os.pathsep}{python_dir}{os.pathsep}{os.environ["PATH"]}',
                   SRUN_RECORD=record, GPUS=2, GPUS_PER_NODE=2, CPUS_PER_TASK=1, GRES='',
                   SRUN_ARGS='--time=5 --quiet', MASTER_PORT=free_port())
    return env, record


def test_slurm_train_then_test_on_two_cpu_tasks(seg_root, tmp_path, fake_slurm):
    env, record = fake_slurm
    work = tmp_path / 'work'
    result = run_tool(['bash', TOOLS / 'slurm_train.sh', 'cpu', 'fec-toy', CONFIG, work,
                       *_options(seg_root)], env=env)
    assert result.returncode == 0, explain(result)
    args = json.loads(record.read_text())
    assert args[:2] == ['-p', 'cpu'] and '--job-name=fec-toy' in args
    assert '--ntasks=2' in args and '--ntasks-per-node=2' in args
    assert '--cpus-per-task=1' in args and '--kill-on-bad-exit=1' in args
    assert '--time=5' in args and '--quiet' in args
    assert not any(a.startswith('--gres') for a in args)  # GRES= : CPU nodes
    assert '--launcher=slurm' in args and f'--work-dir={work}' in args
    output = result.stdout + result.stderr
    assert 'Distributed training: True' in output, explain(result)
    assert 'Iter(train) [2/2]' in output, explain(result)
    assert load_checkpoint(work / 'iter_2.pth')['meta']['iter'] == 2

    result = run_tool(['bash', TOOLS / 'slurm_test.sh', 'cpu', 'fec-toy-test', CONFIG,
                       work / 'iter_2.pth', '--work-dir', tmp_path / 'test',
                       *_options(seg_root)], env=env)
    assert result.returncode == 0, explain(result)
    assert 'mIoU' in result.stdout + result.stderr, explain(result)
    assert '--launcher=slurm' in json.loads(record.read_text())


@pytest.mark.skipif(torch.cuda.is_available(), reason='with a GPU mmengine starts the group')
def test_slurm_launcher_outside_slurm_is_one_error_line(monkeypatch):
    from mmengine.config import Config

    from mmfec.utils.cli import UsageError, setup_cpu_distributed
    for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    cfg = Config(dict(launcher='slurm', env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    with pytest.raises(UsageError) as error:
        setup_cpu_distributed(cfg)
    message = str(error.value)
    assert message.startswith('--launcher slurm, but SLURM_PROCID') and 'srun' in message
    assert '\n' not in message


def _dist_env(**extra):
    return tool_env(PATH=f'{os.path.dirname(sys.executable)}{os.pathsep}{os.environ["PATH"]}',
                    **extra)


def _dist_args(seg_root, work, processes, *extra):
    return ['bash', str(TOOLS / 'dist_train.sh'), str(CONFIG), str(processes),
            '--work-dir', str(work), *extra,
            *_options(seg_root, f'train_cfg.max_iters={DIST_ITERS}',
                      'default_hooks.checkpoint.interval=2')]


@pytest.fixture(scope='module')
def one_node(seg_root, tmp_path_factory):
    """The reference: one node, 2 processes, 4 iterations, a checkpoint every 2."""
    work = tmp_path_factory.mktemp('one_node')
    result = run_tool(_dist_args(seg_root, work, 2), env=_dist_env(PORT=free_port()))
    assert result.returncode == 0, explain(result)
    return work


def _final(work):
    return load_checkpoint(work / f'iter_{DIST_ITERS}.pth')['state_dict']


def test_two_nodes_reach_the_weights_of_one_node(seg_root, one_node, tmp_path):
    port = free_port()
    nodes = [subprocess.Popen(
        _dist_args(seg_root, tmp_path, 1), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env=_dist_env(NNODES=2, NODE_RANK=node_rank, MASTER_ADDR='127.0.0.1', PORT=port))
        for node_rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    differ = differing_keys(_final(tmp_path), _final(one_node))
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'


def test_two_processes_kill_9_then_resume_equals_uninterrupted(seg_root, one_node, tmp_path):
    """2 gloo processes killed (torchrun and its workers, kill -9) after the iteration-2
    checkpoint, resumed on 2 processes: the weights of the uninterrupted 2-process run."""
    log = open(tmp_path / 'killed.log', 'w')
    run = subprocess.Popen(_dist_args(seg_root, tmp_path, 2), cwd=ROOT, stdout=log,
                           stderr=subprocess.STDOUT, env=_dist_env(PORT=free_port()),
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / 'iter_2.pth').exists():
        assert run.poll() is None, (tmp_path / 'killed.log').read_text()[-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    result = run_tool(_dist_args(seg_root, tmp_path, 2, '--resume'),
                      env=_dist_env(PORT=free_port()))
    assert result.returncode == 0, explain(result)
    assert 'RNGStateHook: restored the RNG states of iteration' in \
        result.stdout + result.stderr, explain(result)
    differ = differing_keys(_final(tmp_path), _final(one_node))
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'
