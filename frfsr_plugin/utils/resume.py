"""Device-aware resume for BasicSR's training pipeline (basicsr 1.4.2 maps resume states to CUDA only)."""
import os
from os import path as osp

import torch
from basicsr.utils import check_resume

from frfsr_plugin.utils.errors import UserInputError


def newest_training_state(state_dir):
    """Path of the ``<iter>.state`` file with the highest iteration in ``state_dir``, or None."""
    if not osp.isdir(state_dir):
        return None
    iters = [
        int(name[:-len('.state')]) for name in os.listdir(state_dir)
        if name.endswith('.state') and name[:-len('.state')].isdigit()
    ]
    return osp.join(state_dir, f'{max(iters)}.state') if iters else None


def resume_map_location(opt):
    """CPU when the options ask for no GPU or CUDA is absent, else the current CUDA device."""
    if opt.get('num_gpu', 0) == 0 or not torch.cuda.is_available():
        return torch.device('cpu')
    return torch.device('cuda', torch.cuda.current_device())


def load_resume_state(opt):
    """Drop-in replacement of ``basicsr.train.load_resume_state`` that also works on CPU.

    With ``--auto_resume`` it picks the newest state in ``experiments/<name>/training_states`` (relative to the
    working directory, as BasicSR does); otherwise it uses ``path.resume_state``.

    Args:
        opt (dict): Parsed options; ``path.resume_state`` is set when auto-resume finds a state.

    Returns:
        dict | None: The training state (epoch, iter, optimizers, schedulers), or None to start fresh.
    """
    if opt['auto_resume']:
        state_path = newest_training_state(osp.join('experiments', opt['name'], 'training_states'))
        if state_path is not None:
            opt['path']['resume_state'] = state_path
    else:
        state_path = opt['path'].get('resume_state')
    if not state_path:
        return None
    if not osp.isfile(state_path):
        raise UserInputError(f"path.resume_state: training state '{state_path}' not found.")
    resume_state = torch.load(state_path, map_location=resume_map_location(opt))
    check_resume(opt, resume_state['iter'])
    return resume_state
