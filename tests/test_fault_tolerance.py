"""Checkpoints survive kill -9: every resume succeeds and continues from the last saved iteration."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers import tiny_train_options

STEP_LOG = re.compile(r'iter:\s+(\d+),')


def start_training(opt_path, workdir, resume):
    command = [sys.executable, '-m', 'frfsr_plugin.cli.basicsr_cli', 'train', '-opt', str(opt_path)]
    return subprocess.Popen(
        command + (['--auto_resume'] if resume else []),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True)


def saved_states(exp_dir):
    folder = exp_dir / 'training_states'
    return sorted(int(n[:-6]) for n in os.listdir(folder) if n.endswith('.state')) if folder.is_dir() else []


pytestmark = pytest.mark.integration


def test_kill_9_at_random_moments_then_resume(tmp_path, demo_data):
    workdir = tmp_path
    opt = tiny_train_options(demo_data, total_iter=12, name='killed')
    opt['logger']['save_checkpoint_freq'] = 1
    opt['val']['val_freq'] = 100
    opt_path = workdir / 'killed.yml'
    opt_path.write_text(yaml.safe_dump(opt))
    exp_dir = workdir / 'experiments' / 'killed'
    rng = torch.Generator().manual_seed(0)
    for attempt in range(3):
        before = saved_states(exp_dir)
        process = start_training(opt_path, workdir, resume=attempt > 0)
        deadline = time.time() + 300
        while saved_states(exp_dir)[-1:] <= before[-1:] and time.time() < deadline:  # wait for a new checkpoint
            time.sleep(0.2)
        time.sleep(float(torch.rand(1, generator=rng)) * 1.5)  # then kill at a random moment
        process.send_signal(signal.SIGKILL)
        process.wait()
        states = saved_states(exp_dir)
        assert states and states[-1] > (before[-1] if before else 0)
        for state in states:  # every state name is complete and loadable, with its checkpoint
            assert torch.load(exp_dir / 'training_states' / f'{state}.state', weights_only=True)['iter'] == state
            assert torch.load(exp_dir / 'models' / f'net_g_{state}.pth', weights_only=True)['params']
    last = saved_states(exp_dir)[-1]
    final = start_training(opt_path, workdir, resume=True)
    assert final.wait(timeout=600) == 0, final.stderr.read()[-3000:]
    log = open(sorted(glob.glob(str(exp_dir / 'train_killed_*.log')))[-1]).read()
    assert 'Resuming training from epoch' in log and f'iter: {last}.' in log
    assert [int(step) for step in STEP_LOG.findall(log)][0] == last + 1
    assert saved_states(exp_dir)[-1] == 12
