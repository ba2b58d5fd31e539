"""Stage-1 RefSR model: trains a reference-based restoration network with frozen correspondence and SIFE parts."""
from collections import OrderedDict
from os import path as osp

import torch
import torch.nn.functional as F
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.data.realworld_degradation import KERNEL_BATCH_KEYS
from frfsr_plugin.models.base_model import FRFSRBaseModel
from frfsr_plugin.restoration.tiling import check_supports_tiling, parse_tile_options, restore_in_tiles
from frfsr_plugin.utils.comparison import write_comparison


@MODEL_REGISTRY.register()
class FRFSRModel(FRFSRBaseModel):
    """Reference-based SR model for FRFSR's stage 1 ("-rec") and any RefSR generator with the same interface.

    Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution.

    It mainly performs:
        1. computes, without gradients, the reference context of a batch: contrastive encoder features
           (``network_extractor``), patch matching, pre-offsets and VGG Ref features (``network_map``), and the SIFE
           feature (optional ``network_sife``); these frozen networks are in no optimiser and never resumed;
        2. runs ``net_g(lq, context)`` and trains it with the pixel (and optional perceptual) loss, with per-parameter
           learning rates from ``train.optim_g.param_group_lrs``;
        3. at test time crops the SR output back to the unpadded GT size before metrics;
        4. during validation writes a comparison image per sample (``comparison_panels``) under
           ``visualization/comparisons/<dataset>/`` and logs the first ``val.comparison_tb_images`` (default 3) to
           TensorBoard; ``val.comparisons: false`` turns this off.

    Batches carry ``lq`` (B, 3, h, w), ``lq_up`` (B, 3, 4h, 4w), ``ref`` (B, 3, 4h, 4w) and optionally ``gt``;
    training batches of a dataset with ``realworld_degradation`` carry ``gt`` and blur kernels instead of ``lq`` and
    ``lq_up``, which :meth:`~FRFSRBaseModel.synthesize_lr` makes on the device. Checkpoints, CPU DDP, atomic saves,
    learning-rate groups and the non-finite loss guard are :class:`FRFSRBaseModel`'s.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.net_extractor = self.build_frozen_network('network_extractor', required=True)
        self.net_map = self.build_frozen_network('network_map', required=True)
        self.net_sife = self.build_frozen_network('network_sife', required=False)

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

    def test(self):
        """Super-resolve the current batch with net_g_ema (if any) or net_g; crop to the unpadded GT size.

        With ``val.tile: {size, overlap}`` (LR pixels) the restoration runs on overlapping tiles of the LR canvas, the
        context being computed once for the whole canvas (``restoration/tiling.py``); this bounds the memory of big
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
