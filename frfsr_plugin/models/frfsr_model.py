"""Stage-1 RefSR model: trains a reference-based restoration network with frozen correspondence and SIFE parts."""
from collections import OrderedDict
from os import path as osp

import torch
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.data.realworld_degradation import KERNEL_BATCH_KEYS
from frfsr_plugin.models.base_model import FRFSRBaseModel
from frfsr_plugin.restoration.pipeline import ReferencePipeline
from frfsr_plugin.restoration.tiling import parse_tile_options
from frfsr_plugin.utils.comparison import refsr_panels, write_comparison


@MODEL_REGISTRY.register()
class FRFSRModel(FRFSRBaseModel):
    """Reference-based SR model for FRFSR's stage 1 ("-rec") and any RefSR generator with the same interface.

    Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution.

    It mainly performs:
        1. builds the reference pipeline (``restoration/pipeline.py``): the frozen contrastive encoder
           (``network_extractor``), correspondence (``network_map``: patch matching, pre-offsets and VGG Ref features)
           and SIFE (optional ``network_sife``), in no optimiser and never resumed; it computes the reference context
           of a batch without gradients and runs ``net_g(lq, context)`` on it;
        2. trains ``net_g`` with the pixel (and optional perceptual) loss, with per-parameter learning rates from
           ``train.optim_g.param_group_lrs``;
        3. at test time restores the whole canvas or overlapping tiles of it (``val.tile``) and crops the SR output
           back to the unpadded GT size before metrics;
        4. during validation writes a comparison image per sample (``comparison_panels``) under
           ``visualization/comparisons/<dataset>/`` and logs the first ``val.comparison_tb_images`` (default 3) to
           TensorBoard; ``val.comparisons: false`` turns this off.

    Batches carry ``lq`` (B, 3, h, w), ``lq_up`` (B, 3, 4h, 4w), ``ref`` (B, 3, 4h, 4w) and optionally ``gt``;
    training batches of a dataset with ``realworld_degradation`` carry ``gt`` and blur kernels instead of ``lq`` and
    ``lq_up``, which :meth:`~FRFSRBaseModel.synthesize_lr` makes on the device. Checkpoints, CPU DDP, atomic saves,
    learning-rate groups and the non-finite loss guard are :class:`FRFSRBaseModel`'s.
    """

    uses_stage1 = False  # one stage: no Net1 in the reference pipeline

    def __init__(self, opt):
        super().__init__(opt)
        self.reference_pipeline = ReferencePipeline.from_options(self.opt, self.device, self.uses_stage1,
                                                                 type(self).__name__)
        self.reference_pipeline.check_generator(self.net_g)

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

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output = self.reference_pipeline.super_resolve(self.net_g, self.lq, self.lq_up, self.ref).sr
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
        images. Sets ``self.output`` and, for two-stage models, ``self.output_stage1`` (Net1's SR; else None).
        """
        net = getattr(self, 'net_g_ema', self.net_g)
        tile_size, overlap = parse_tile_options((self.opt.get('val') or {}).get('tile'))
        was_training = net.training
        net.eval()
        with torch.no_grad():
            restoration = self.reference_pipeline.super_resolve(net, self.lq, self.lq_up, self.ref, tile_size, overlap)
        net.train(was_training)
        height, width = (self.gt if hasattr(self, 'gt') else restoration.sr).shape[-2:]
        self.output = restoration.sr[..., :height, :width]
        self.output_stage1 = None if restoration.sr_stage1 is None else restoration.sr_stage1[..., :height, :width]

    def comparison_panels(self):
        """Labelled panels of the validation comparison (:func:`~frfsr_plugin.utils.comparison.refsr_panels`): bicubic
        | SR | Ref | GT, or bicubic | stage-1 SR | stage-2 SR | Ref | GT, cropped to the SR size."""
        height, width = self.output.shape[-2:]
        return refsr_panels(self.lq, self.output, self.ref[..., :height, :width], getattr(self, 'gt', None),
                            self.output_stage1)

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
