"""Generic model plumbing shared by every model of the plugin, on top of BasicSR's ``SRModel``."""
import re
from os import path as osp

import torch
import torch.distributed as dist
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info

from frfsr_plugin.archs.arch_util import bare_network
from frfsr_plugin.data.realworld_degradation import (BLOCK_KEY, KERNEL_BATCH_KEYS, parse_realworld_options,
                                                     train_degradation_block)
from frfsr_plugin.ops.realworld_degradation import RealWorldDegradation, upsample_like_pil
from frfsr_plugin.utils.checkpoint import PretrainedWeightsError, load_checkpoint, read_state_dict, write_atomically
from frfsr_plugin.utils.errors import OptionError, TrainingDivergedError, UserInputError
from frfsr_plugin.utils.speed import parse_speed_options, speed_up_network


class FRFSRBaseModel(SRModel):
    """BasicSR's ``SRModel`` with the plumbing that the plugin's models share; it is not a model type itself.

    It mainly adds:
        1. DistributedDataParallel on CPU (gloo), where BasicSR assumes CUDA, then the ``speed`` options
           (channels_last, torch.compile) for the networks BasicSR places; ``get_bare_model`` unwraps both;
        2. a barrier after BasicSR's rank-0 validation;
        3. one-line errors for checkpoints that are missing or do not fit;
        4. atomic checkpoint and training-state saves;
        5. Adam learning-rate groups chosen by parameter-name regular expressions (``train.optim_g.param_group_lrs``);
        6. the non-finite loss guard: an update whose loss is NaN or Inf (on any rank) is skipped with a warning,
           and ``train.max_nonfinite_steps`` (default 10) such iterations in a row stop training;
        7. real-world degradation of training batches on the device (:meth:`synthesize_lr`).
    """

    realworld_degradation = None  # RealWorldDegradation, built by synthesize_lr on the first batch with kernels

    def __init__(self, opt):
        self.speed = parse_speed_options(opt)
        super().__init__(opt)
        self.nonfinite_steps = {}  # network -> consecutive skipped updates

    def model_to_device(self, net):
        """BasicSR's placement, plus DistributedDataParallel on CPU (gloo) where BasicSR assumes CUDA, then the
        ``speed`` options (channels_last, torch.compile; ``utils/speed.py``)."""
        if not self.opt['dist'] or self.device.type == 'cuda':
            return speed_up_network(super().model_to_device(net), self.speed)
        return speed_up_network(
            torch.nn.parallel.DistributedDataParallel(
                net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False)), self.speed)

    def get_bare_model(self, net):
        """The network inside DDP and torch.compile wrappers."""
        return bare_network(net)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Rank 0 validates (BasicSR); the other ranks wait at a barrier instead of inside the next all-reduce."""
        super().dist_validation(dataloader, current_iter, tb_logger, save_img)
        dist.barrier()

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BasicSR's loading, with one-line errors instead of tracebacks.

        A missing or unreadable file, or weights of another architecture, raise :class:`PretrainedWeightsError`
        naming the file and the missing / unexpected / mis-shaped keys (strict), or saying that no key fits
        (non-strict, where BasicSR would silently load nothing).
        """
        bare = self.get_bare_model(net)
        if strict:
            load_checkpoint(bare, load_path, param_key)
            return
        source = f"'{load_path}'"
        weights = read_state_dict(load_path, param_key, f'{type(bare).__name__}: checkpoint {source} not found.')
        if not set(weights) & set(bare.state_dict()):
            raise PretrainedWeightsError(f'{type(bare).__name__}: no parameter name of {source} fits this network '
                                         f'(file keys e.g. {", ".join(list(weights)[:5])}).')
        self._print_different_keys_loading(bare, weights, strict)
        bare.load_state_dict(weights, strict=False)

    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's checkpoint, written to ``models/.incomplete/`` and then renamed into place (atomic)."""
        name = f"{net_label}_{'latest' if current_iter == -1 else current_iter}.pth"
        self._save_atomically('models', name,
                              lambda: super(FRFSRBaseModel, self).save_network(net, net_label, current_iter, param_key))

    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state, written to ``training_states/.incomplete/`` and then renamed into place."""
        if current_iter != -1:
            self._save_atomically('training_states', f'{current_iter}.state',
                                  lambda: super(FRFSRBaseModel, self).save_training_state(epoch, current_iter))

    def _save_atomically(self, path_key, filename, save):
        """Run BasicSR's ``save`` (rank 0 only, as BasicSR's ``master_only``) through the atomic writer.

        ``save`` writes into ``opt['path'][path_key]``, which points to the writer's staging folder meanwhile. A kill at
        any moment leaves either the previous file or the complete new one under the final name; since the training
        state is saved after the networks, every ``<iter>.state`` has its checkpoints.
        """
        if get_dist_info()[0] != 0:
            return
        final_dir = self.opt['path'][path_key]

        def write(staged):
            self.opt['path'][path_key] = osp.dirname(staged)
            try:
                save()
            finally:
                self.opt['path'][path_key] = final_dir

        write_atomically(osp.join(final_dir, filename), write)

    def setup_optimizers(self):
        """Adam over net_g with learning-rate groups chosen by parameter-name regular expressions.

        ``optim_g.param_group_lrs`` is a list of ``{params: <regex>, lr: <float>}``; a parameter joins the first group
        whose regex it matches (``re.search``), the others use ``optim_g.lr``.
        """
        optim_opt = dict(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        group_specs = optim_opt.pop('param_group_lrs', None) or []
        groups = [{'params': [], 'lr': float(spec['lr']), 'pattern': spec['params']} for spec in group_specs]
        main_group = {'params': [], 'lr': float(optim_opt.pop('lr'))}
        for name, param in self.get_bare_model(self.net_g).named_parameters():
            if not param.requires_grad:
                get_root_logger().warning(f'Params {name} will not be optimized.')
                continue
            group = next((g for g in groups if re.search(g['pattern'], name)), main_group)
            group['params'].append(param)
        for index, group in enumerate(groups):
            if not group['params']:
                raise UserInputError(f"train.optim_g.param_group_lrs[{index}].params {group['pattern']!r} matches no "
                                     'trainable parameter of net_g.')
            del group['pattern']
        self.optimizer_g = self.get_optimizer(optim_type, [main_group] + groups, main_group['lr'], **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def synthesize_lr(self, hr, data):
        """Real-world degraded LR of a training batch, and its LR-up image, made on the device.

        Real-ESRGAN's second-order pipeline with the options of the training dataset's ``realworld_degradation``
        block and the batch's kernels (``ops/realworld_degradation.py``); LR-up is the PIL-like bicubic x4 of the
        degraded LR, as the test datasets make it from an LR file. ``hr`` itself is not modified.

        Args:
            hr (Tensor): Clean HR batch on the device, (B, 3, H, W).
            data (dict): The batch, with ``kernel1``, ``kernel2`` and ``sinc_kernel`` (B, k, k).

        Returns:
            tuple[Tensor, Tensor]: LR (B, 3, H / 4, W / 4) and LR-up (B, 3, H, W), 8-bit-valued in [0, 1].
        """
        if self.realworld_degradation is None:
            options = parse_realworld_options(train_degradation_block(self.opt))
            if options is None:
                raise OptionError('the training batch carries degradation kernels, but no training dataset sets '
                                  f'{BLOCK_KEY}; {type(self).__name__} needs its options.')
            self.realworld_degradation = RealWorldDegradation(options, self.opt['scale'], self.device)
        lq = self.realworld_degradation(hr, *(data[key].to(self.device) for key in KERNEL_BATCH_KEYS))
        return lq, upsample_like_pil(lq, self.opt['scale'])

    def step_generator(self, loss, loss_dict, current_iter):
        """Back-propagate ``loss`` into net_g and step (skipped if non-finite), log ``loss_dict``, update the EMA."""
        if not self.loss_is_finite(loss, loss_dict, current_iter):
            return
        loss.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def loss_is_finite(self, loss, loss_dict, current_iter, network='net_g'):
        """False (and a logged warning) if ``loss`` is NaN/Inf on any rank; raises after too many in a row.

        Args:
            loss (Tensor): Scalar loss about to be back-propagated.
            loss_dict (dict[str, Tensor]): Its terms, for the message.
            current_iter (int): Iteration, for the message.
            network (str): Which network's update this is; each has its own count. Default: ``'net_g'``.

        Returns:
            bool: Whether the update may proceed.
        """
        finite = torch.isfinite(loss.detach()).float()
        if self.opt['dist']:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        counts = self.nonfinite_steps
        if finite.item():
            counts[network] = 0
            return True
        counts[network] = counts.get(network, 0) + 1
        limit = self.opt['train'].get('max_nonfinite_steps', 10)
        terms = ', '.join(f'{key}={value.item():.4g}' for key, value in loss_dict.items())
        if counts[network] >= limit:
            raise TrainingDivergedError(
                f'iteration {current_iter}: non-finite loss ({terms}) for {limit} iterations in '
                'a row; training stopped, no checkpoint written for these iterations. Lower '
                'the learning rate or resume from the last checkpoint.')
        get_root_logger().warning(f'iteration {current_iter}: non-finite loss ({terms}); {network} update skipped '
                                  f'({counts[network]}/{limit} in a row).')
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        return False
