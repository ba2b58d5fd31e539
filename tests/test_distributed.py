"""Two-process data-parallel training on CPU (gloo) through torchrun and the basicsr launcher."""
import glob
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import tiny_stage2_options, tiny_train_options

# Every rank saves its own copy of net_g next to BasicSR's (rank-0-only) checkpoint, to compare ranks.
RANK_DUMP_PLUGIN = '''
import torch
import torch.distributed as dist
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.models.feature_reuse_model import FeatureReuseModel
from frfsr_plugin.models.frfsr_model import FRFSRModel


class RankDumpMixin:

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        state = self.get_bare_model(self.net_g).state_dict()
        torch.save(state, f'rank{dist.get_rank()}_{self.opt["name"]}_{current_iter}.pth')


@MODEL_REGISTRY.register()
class RankDumpFRFSRModel(RankDumpMixin, FRFSRModel):
    pass


@MODEL_REGISTRY.register()
class RankDumpFeatureReuseModel(RankDumpMixin, FeatureReuseModel):
    pass
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def torchrun_train(opt, workdir):
    opt_path = workdir / f"{opt['name']}.yml"
    opt_path.write_text(yaml.safe_dump(opt))
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}', '-m',
        'frfsr_plugin.cli.basicsr_cli', 'train', '-opt',
        str(opt_path), '--launcher', 'pytorch'
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)


def assert_ranks_identical(workdir, name, step):
    rank0 = torch.load(workdir / f'rank0_{name}_{step}.pth', weights_only=True)
    rank1 = torch.load(workdir / f'rank1_{name}_{step}.pth', weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)


pytestmark = pytest.mark.integration


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    (root / 'rank_dump_plugin.py').write_text(RANK_DUMP_PLUGIN)
    return root


def stage1_options(data_root):
    opt = tiny_train_options(data_root, total_iter=4, name='ddp_stage1')
    opt.update(model_type='RankDumpFRFSRModel', plugins=['rank_dump_plugin'])
    return opt


def test_two_process_stage1_and_stage2_with_gradient_penalty(workdir, demo_data):
    first = torchrun_train(stage1_options(demo_data), workdir)
    assert first.returncode == 0, first.stderr[-4000:]
    exp_dir = workdir / 'experiments' / 'ddp_stage1'
    assert {'net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth'} == set(os.listdir(exp_dir / 'models'))
    assert sorted(os.listdir(exp_dir / 'training_states')) == ['2.state', '4.state']
    assert len(glob.glob(str(exp_dir / 'train_ddp_stage1_*.log'))) == 1  # rank 0 alone logs and saves
    log = open(glob.glob(str(exp_dir / 'train_ddp_stage1_*.log'))[0]).read()
    assert 'World size (gpu number): 2' in log and '# psnr:' in log
    assert_ranks_identical(workdir, 'ddp_stage1', 4)
    saved = torch.load(exp_dir / 'models' / 'net_g_4.pth', weights_only=True)['params']
    rank0 = torch.load(workdir / 'rank0_ddp_stage1_4.pth', weights_only=True)
    assert all(torch.equal(saved[key], rank0[key]) for key in saved)

    opt = tiny_stage2_options(demo_data, 2, str(exp_dir / 'models' / 'net_g_latest.pth'), 'ddp_stage2')
    opt.update(model_type='RankDumpFeatureReuseModel', plugins=['rank_dump_plugin'])
    second = torchrun_train(opt, workdir)
    assert second.returncode == 0, second.stderr[-4000:]
    log = open(glob.glob(str(workdir / 'experiments' / 'ddp_stage2' / 'train_ddp_stage2_*.log'))[0]).read()
    assert 'l_d_gp' in log and 'l_g_gan' in log
    assert_ranks_identical(workdir, 'ddp_stage2', 2)
