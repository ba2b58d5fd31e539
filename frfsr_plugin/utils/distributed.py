"""Process-group initialisation for BasicSR's ``--launcher pytorch|slurm`` that also works on CPU.

basicsr 1.4.2 always uses NCCL and picks the CUDA device as ``rank % device_count`` (a ZeroDivisionError without
GPUs). Here the backend is NCCL with the device taken from ``LOCAL_RANK`` when CUDA is available, else gloo.
"""
import os
import subprocess

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from frfsr_plugin.utils.errors import OptionError


def set_slurm_environment(port=None):
    """Derive torch.distributed's environment variables from SLURM's (one process per task)."""
    node_list = os.environ['SLURM_NODELIST']
    os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def init_dist(launcher, backend=None, port=None, **kwargs):
    """Drop-in replacement of ``basicsr.utils.dist_util.init_dist``.

    Args:
        launcher (str): ``'pytorch'`` (torchrun's environment) or ``'slurm'``.
        backend (str | None): Forced backend; by default NCCL when CUDA is available, else gloo. A requested NCCL
            backend falls back to gloo without CUDA (e.g. ``dist_params.backend: nccl`` in a YAML run on CPU).
        port (int | None): Master port for SLURM (``dist_params.port``).
    """
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if launcher == 'slurm':
        set_slurm_environment(port)
    elif launcher != 'pytorch':
        raise OptionError(f"--launcher must be none, pytorch or slurm, got {launcher!r}.")
    if backend is None or (backend == 'nccl' and not torch.cuda.is_available()):
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    dist.init_process_group(backend=backend, **kwargs)
