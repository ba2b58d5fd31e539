"""Two-stage feature reuse framework (FRF): a frozen stage-1 RefSR network feeds its features to a stage-2 network."""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.archs.feature_reuse_arch import get_submodule_checked
from frfsr_plugin.models.frfsr_model import FRFSRModel
from frfsr_plugin.utils.errors import OptionError

SOURCE_PORTS = ('input', 'output')


@MODEL_REGISTRY.register()
class FeatureReuseModel(FRFSRModel, SRGANModel):
    """Stage 2 of FRFSR's feature reuse framework, generic over registered RefSR generators.

    Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution, Sec. III-A.

    It mainly performs:
        1. builds Net1 from ``network_stage1`` and ``path.pretrain_network_stage1`` (strict), frozen, eval, no_grad,
           in no optimiser and never resumed; its reused feature is the input or output of the submodule
           ``feature_reuse.source`` (``feature_reuse.port``), captured by a hook;
        2. computes correspondence, VGG features, SIFE and Net1 once per batch and shares them with Net2 (``net_g``),
           which receives the reused feature as ``context['reuse_feat']``;
        3. trains Net2 with pixel + perceptual + WGAN losses and the critic ``net_d`` with WGAN-GP, the critic step
           first; the first ``train.net_g_pretrain_steps`` iterations are pixel-only without critic updates.

    Losses are logged as ``l_g_pix``, ``l_g_percep``, ``l_g_gan``, ``l_d_real``, ``l_d_fake`` and ``l_d_gp``.

    It also derives from BasicSR's ``SRGANModel`` (after :class:`FRFSRModel`, so that the RefSR feeding, restoration
    and plumbing come first) for two methods that it does not rewrite: ``init_training_settings``, which builds the
    EMA copy, the discriminator ``net_d`` (loading ``path.pretrain_network_d``) and the pixel, perceptual and GAN
    losses in BasicSR's order (the order in which random initialisations draw), and ``save``, which writes ``net_g``
    (with its EMA), ``net_d`` and the training state.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.net_stage1 = self.build_frozen_network('network_stage1', required=True)
        self.load_frozen_network(
            'stage1', 'the feature reuse framework needs the stage-1 checkpoint (net_g_*.pth of a stage-1 run).')
        reuse_opt = self.opt.get('feature_reuse') or {}
        port = reuse_opt.get('port', 'output')
        if 'source' not in reuse_opt or port not in SOURCE_PORTS:
            raise OptionError('feature_reuse needs `source` (a submodule path of network_stage1) and `port` in '
                              f'{SOURCE_PORTS}; got {reuse_opt!r}.')
        source = get_submodule_checked(self.net_stage1, reuse_opt['source'], 'feature_reuse.source')
        if port == 'input':
            source.register_forward_pre_hook(lambda module, args: self._capture_reused(args[0]))
        else:
            source.register_forward_hook(lambda module, args, output: self._capture_reused(output))

    def _capture_reused(self, feat):
        self._reused_feat = feat

    def init_training_settings(self):
        super().init_training_settings()  # SRGANModel: net_d, pixel / perceptual / GAN losses, optimisers
        train_opt = self.opt['train']
        self.cri_gan = getattr(self, 'cri_gan', None)
        self.cri_gp = build_loss(train_opt['gp_opt']).to(self.device) if train_opt.get('gp_opt') else None
        self.net_g_pretrain_steps = train_opt.get('net_g_pretrain_steps', 0)

    def setup_optimizers(self):
        super().setup_optimizers()  # net_g with learning-rate groups (FRFSRModel)
        optim_opt = dict(self.opt['train']['optim_d'])
        self.optimizer_d = self.get_optimizer(optim_opt.pop('type'), self.net_d.parameters(), **optim_opt)
        self.optimizers.append(self.optimizer_d)

    @torch.no_grad()
    def reference_context(self):
        """Shared context plus ``reuse_feat`` from Net1; Net1's own SR is kept as ``self.output_stage1``."""
        context = super().reference_context()
        self.output_stage1, context['reuse_feat'] = self.run_stage1(self.lq, context)
        return context

    def run_stage1(self, lq, context):
        """Frozen Net1 on ``lq`` (B, 3, h, w): its SR (B, 3, 4h, 4w) and the reused feature its hook captured."""
        output_stage1 = self.generator_forward(self.net_stage1, lq, context)
        reuse_feat, self._reused_feat = self._reused_feat, None
        return output_stage1, reuse_feat

    def restoration_context(self):
        """The shared context without Net1, which :meth:`restore` runs on each tile."""
        return super().reference_context()

    def restore(self, net, lq, context):
        """Net1, then Net2 with Net1's reused feature, on an LR canvas or tile.

        Args:
            net (nn.Module): Net2 (net_g or net_g_ema).
            lq (Tensor): LR, shape (B, 3, h, w).
            context (dict): Its shared context (a crop of :meth:`restoration_context` for a tile).

        Returns:
            dict: ``output`` (Net2's SR) and ``output_stage1`` (Net1's SR), each (B, 3, 4h, 4w).
        """
        output_stage1, reuse_feat = self.run_stage1(lq, context)
        return {
            'output': self.generator_forward(net, lq, dict(context, reuse_feat=reuse_feat)),
            'output_stage1': output_stage1
        }

    def restoration_networks(self, net):
        """Net1 and Net2, which tiling requires to support it."""
        return (self.net_stage1, net)

    def comparison_panels(self):
        """bicubic | stage-1 SR | stage-2 SR | Ref | GT, labelled."""
        panels = super().comparison_panels()
        return panels[:1] + [('stage-1 SR', self.output_stage1), ('stage-2 SR', panels[1][1])] + panels[2:]

    def optimize_parameters(self, current_iter):
        self.output = self.generator_forward(self.net_g, self.lq, self.reference_context())
        loss_dict = OrderedDict()
        adversarial = self.cri_gan is not None and current_iter > self.net_g_pretrain_steps
        if adversarial:
            loss_dict.update(self._critic_step(self.output.detach(), current_iter))

        self.optimizer_g.zero_grad()
        l_g_total = 0
        if self.cri_pix:
            loss_dict['l_g_pix'] = self.cri_pix(self.output, self.gt)
            l_g_total = l_g_total + loss_dict['l_g_pix']
        if adversarial and self.cri_perceptual:
            loss_dict['l_g_percep'] = self.cri_perceptual(self.output, self.gt)[0]
            l_g_total = l_g_total + loss_dict['l_g_percep']
        if adversarial:
            loss_dict['l_g_gan'] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
            l_g_total = l_g_total + loss_dict['l_g_gan']
        self.step_generator(l_g_total, loss_dict, current_iter)

    def _critic_step(self, fake, current_iter):
        """One WGAN-GP update of net_d; net_d is frozen again afterwards. Returns the critic's loss terms."""
        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad()
        real_scores, fake_scores = self.net_d(self.gt), self.net_d(fake)
        terms = OrderedDict(
            l_d_real=self.cri_gan(real_scores, True, is_disc=True),
            l_d_fake=self.cri_gan(fake_scores, False, is_disc=True))
        if self.cri_gp:
            terms['l_d_gp'] = self.cri_gp(self.net_d, self.gt, fake)
        l_d_total = sum(terms.values())
        if self.loss_is_finite(l_d_total, terms, current_iter, network='net_d'):
            l_d_total.backward()
            self.optimizer_d.step()
        self.net_d.requires_grad_(False)
        terms['out_d_real'] = real_scores.detach().mean()
        terms['out_d_fake'] = fake_scores.detach().mean()
        return terms
