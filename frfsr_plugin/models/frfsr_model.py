"""Stage-1 RefSR model: trains a reference-based restoration network with frozen correspondence and SIFE parts."""
import os
import re
from collections import OrderedDict
from os import path as osp

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.data.realworld_degradation import (BLOCK_KEY, KERNEL_BATCH_KEYS, parse_realworld_options,
                                                     train_degradation_block)
from frfsr_plugin.ops.realworld_degradation import RealWorldDegradation, upsample_like_pil
from frfsr_plugin.tiling import check_supports_tiling, parse_tile_options, restore_in_tiles
from frfsr_plugin.utils.comparison import write_comparison
from frfsr_plugin.utils.errors import MissingOptionError, OptionError, TrainingDivergedError, UserInputError
from frfsr_plugin.utils.pretrained import PretrainedWeightsError, load_state_dict_checked, read_state_dict
from frfsr_plugin.utils.speed import autocast_context, parse_speed_options, speed_up_network, uncompiled


@MODEL_REGISTRY.register()
class FRFSRModel(SRModel):
    """Reference-based SR model for FRFSR's stage 1 ("-rec") and any RefSR generator with the same interface.

    Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution.

    It mainly performs:
        1. computes, without gradients, the reference context of a batch: contrastive encoder features
           (``network_extractor``), patch matching, pre-offsets and VGG Ref features (``network_map``), and the SIFE
           feature (optional ``network_sife``); these frozen networks are in no optimiser and never resumed;
        2. runs ``net_g(lq, context)`` and trains it with the pixel (and optional perceptual) loss, with per-parameter
           learning rates from ``train.optim_g.param_group_lrs``;
        3. skips an update whose loss is NaN or Inf (all ranks agree) with a warning, and stops with
           :class:`TrainingDivergedError` after ``train.max_nonfinite_steps`` (default 10) such iterations in a row;
        4. at test time crops the SR output back to the unpadded GT size before metrics;
        5. during validation writes a comparison image per sample (``comparison_panels``) under
           ``visualization/comparisons/<dataset>/`` and logs the first ``val.comparison_tb_images`` (default 3) to
           TensorBoard; ``val.comparisons: false`` turns this off.

    Batches carry ``lq`` (B, 3, h, w), ``lq_up`` (B, 3, 4h, 4w), ``ref`` (B, 3, 4h, 4w) and optionally ``gt``;
    training batches of a dataset with ``realworld_degradation`` carry ``gt`` and blur kernels instead of ``lq`` and
    ``lq_up``, which :meth:`synthesize_lr` makes on the device.
    """

    frozen_networks = (('network_extractor', True), ('network_map', True), ('network_sife', False))
    realworld_degradation = None  # RealWorldDegradation, built by synthesize_lr on the first batch with kernels

    def __init__(self, opt):
        self.speed = parse_speed_options(opt)
        super().__init__(opt)
        self.nonfinite_steps = {}  # network -> consecutive skipped updates
        for key, required in self.frozen_networks:
            setattr(self, key.replace('network_', 'net_'), self.build_frozen_network(key, required))

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
        return super().get_bare_model(uncompiled(net))

    def generator_forward(self, net, lq, context):
        """``net(lq, context)`` under bf16 autocast when ``speed.bf16`` is set; the SR is returned in float32."""
        with autocast_context(self.device, self.speed):
            return net(lq, context).float()

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
        source = f"'{load_path}'"
        if not osp.isfile(load_path):
            raise PretrainedWeightsError(f'{type(bare).__name__}: checkpoint {source} not found.')
        weights = read_state_dict(load_path, param_key)
        if strict:
            load_state_dict_checked(bare, weights, source)
            get_root_logger().info(f'Loaded {type(bare).__name__} from {source} (strict).')
            return
        if not set(weights) & set(bare.state_dict()):
            raise PretrainedWeightsError(f'{type(bare).__name__}: no parameter name of {source} fits this network '
                                         f'(file keys e.g. {", ".join(list(weights)[:5])}).')
        self._print_different_keys_loading(bare, weights, strict)
        bare.load_state_dict(weights, strict=False)

    def load_frozen_network(self, name, what):
        """Load ``net_<name>`` strictly from ``path.pretrain_network_<name>`` (key ``path.param_key_<name>``, default
        ``params``); a missing path raises :class:`MissingOptionError` saying ``what`` checkpoint belongs there.

        Args:
            name (str): Network name, e.g. ``'stage1'`` or ``'teacher'``.
            what (str): The rest of the error message, e.g. ``'the student needs the teacher checkpoint (...)'``.
        """
        load_path = self.opt['path'].get(f'pretrain_network_{name}')
        if load_path is None:
            raise MissingOptionError(f'path.pretrain_network_{name} is missing: {what}')
        self.load_network(
            getattr(self, f'net_{name}'), load_path, True, self.opt['path'].get(f'param_key_{name}', 'params'))

    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's checkpoint, written to ``models/.incomplete/`` and then renamed into place (atomic)."""
        name = f"{net_label}_{'latest' if current_iter == -1 else current_iter}.pth"
        self._save_atomically('models', name,
                              lambda: super(FRFSRModel, self).save_network(net, net_label, current_iter, param_key))

    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state, written to ``training_states/.incomplete/`` and then renamed into place."""
        if current_iter != -1:
            self._save_atomically('training_states', f'{current_iter}.state',
                                  lambda: super(FRFSRModel, self).save_training_state(epoch, current_iter))

    def _save_atomically(self, path_key, filename, save):
        """Run BasicSR's ``save`` into a temporary folder on the same file system, then ``os.replace`` the file.

        A kill at any moment leaves either the previous file or the complete new one under the final name; since
        the training state is saved after the networks, every ``<iter>.state`` has its checkpoints.
        """
        final_dir = self.opt['path'][path_key]
        staging_dir = osp.join(final_dir, '.incomplete')
        if get_dist_info()[0] == 0:
            os.makedirs(staging_dir, exist_ok=True)
        self.opt['path'][path_key] = staging_dir
        try:
            save()  # rank 0 only (BasicSR's master_only)
        finally:
            self.opt['path'][path_key] = final_dir
        staged = osp.join(staging_dir, filename)
        if get_dist_info()[0] == 0 and osp.isfile(staged):
            os.replace(staged, osp.join(final_dir, filename))
            if not os.listdir(staging_dir):
                os.rmdir(staging_dir)

    def build_frozen_network(self, key, required):
        """Build ``opt[key]`` in eval mode without gradients (not wrapped in DDP). Returns None if absent."""
        if key not in self.opt:
            if required:
                raise UserInputError(f'Option `{key}` is missing: {type(self).__name__} needs it.')
            return None
        net = build_network(self.opt[key]).to(self.device).eval()
        return net.requires_grad_(False)

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

    def feed_data(self, data):
        self.sample_name = osp.splitext(osp.basename(data['lq_path'][0]))[0] if 'lq_path' in data else None
        self.ref = data['ref'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        if KERNEL_BATCH_KEYS[0] in data:
            self.lq, self.lq_up = self.synthesize_lr(self.gt, data)
        else:
            self.lq = data['lq'].to(self.device)
            self.lq_up = data['lq_up'].to(self.device)

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

    @torch.no_grad()
    def reference_context(self):
        """Correspondence and SIFE features of the current batch (frozen networks, no gradients).

        Returns:
            dict: ``pre_offsets``, ``ref_feats``, ``warped_ref_feats`` from ``net_map`` and ``sife_feat`` (B, C, h, w)
            when ``network_sife`` is configured.
        """
        feat_lq, feat_ref = self.net_extractor(self.lq_up, self.ref)
        context = self.net_map(feat_lq, feat_ref, self.ref)
        if self.net_sife is not None:
            context['sife_feat'] = self.net_sife(self.lq)
        return context

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output = self.generator_forward(self.net_g, self.lq, self.reference_context())
        loss_dict = OrderedDict()
        l_total = 0
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
            l_total = l_total + loss_dict['l_pix']
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    loss_dict[key] = value
                    l_total = l_total + value
        self.step_generator(l_total, loss_dict, current_iter)

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

    def test(self):
        """Super-resolve the current batch with net_g_ema (if any) or net_g; crop to the unpadded GT size.

        With ``val.tile: {size, overlap}`` (LR pixels) the restoration runs on overlapping tiles of the LR canvas, the
        context being computed once for the whole canvas (``frfsr_plugin/tiling.py``); this bounds the memory of big
        images. Sets ``self.output`` and any other output of :meth:`restore`.
        """
        net = getattr(self, 'net_g_ema', self.net_g)
        tile_size, overlap = parse_tile_options((self.opt.get('val') or {}).get('tile'))
        was_training = net.training
        net.eval()
        with torch.no_grad():
            context = self.restoration_context()
            if tile_size is None:
                outputs = self.restore(net, self.lq, context)
            else:
                for network in self.restoration_networks(net):
                    check_supports_tiling(self.get_bare_model(network))
                outputs = restore_in_tiles(lambda lq, tile_context: self.restore(net, lq, tile_context), self.lq,
                                           context, tile_size, overlap, self.opt.get('scale', 4))
        net.train(was_training)
        for name, output in outputs.items():
            setattr(self, name, output[..., :self.gt.shape[-2], :self.gt.shape[-1]] if hasattr(self, 'gt') else output)

    def restoration_context(self):
        """The context of :meth:`restore` computed once per batch (tiles get crops of it): the reference context."""
        return self.reference_context()

    def restore(self, net, lq, context):
        """Restore an LR canvas or tile.

        Args:
            net (nn.Module): The generator (net_g or net_g_ema).
            lq (Tensor): LR, shape (B, 3, h, w).
            context (dict): Its context (a crop of :meth:`restoration_context` for a tile).

        Returns:
            dict: ``output``, the SR image (B, 3, 4h, 4w).
        """
        return {'output': self.generator_forward(net, lq, context)}

    def restoration_networks(self, net):
        """The networks :meth:`restore` runs, which tiling requires to support it."""
        return (net, )

    def comparison_panels(self):
        """Labelled panels of the validation comparison: bicubic | SR | Ref | GT, cropped to the SR size.

        Returns:
            list[tuple[str, Tensor]]: (label, image (B, 3, H, W)) pairs for :func:`write_comparison`.
        """
        height, width = self.output.shape[-2:]
        bicubic = F.interpolate(self.lq, scale_factor=4, mode='bicubic', align_corners=False)
        panels = [('bicubic', bicubic[..., :height, :width]), ('SR', self.output),
                  ('Ref', self.ref[..., :height, :width])]
        return panels + ([('GT', self.gt)] if hasattr(self, 'gt') else [])

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        val_opt = self.opt['val']
        self._comparisons = {
            'dir': osp.join(self.opt['path']['visualization'], 'comparisons', dataloader.dataset.opt['name']),
            'iter': current_iter,
            'tb_logger': tb_logger,
            'tb_left': val_opt.get('comparison_tb_images', 3),
        } if val_opt.get('comparisons', True) else None
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._comparisons = None

    def get_current_visuals(self):
        """BasicSR's visuals; during validation it also writes this sample's comparison image."""
        comparisons = getattr(self, '_comparisons', None)
        if comparisons is not None:
            name, step = self.sample_name or 'sample', comparisons['iter']  # step is the run name in `basicsr test`
            tb_logger = comparisons['tb_logger'] if comparisons['tb_left'] > 0 else None
            comparisons['tb_left'] -= 1
            write_comparison(self.comparison_panels(), osp.join(comparisons['dir'], f'{name}_{step}.png'), tb_logger,
                             f'comparisons/{name}', step)
        return super().get_current_visuals()
