"""Two-stage feature reuse framework (FRF): a frozen stage-1 RefSR network feeds its features to a stage-2 network."""
from collections import OrderedDict

from basicsr.losses import build_loss
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.models.frfsr_model import FRFSRModel


@MODEL_REGISTRY.register()
class FeatureReuseModel(FRFSRModel, SRGANModel):
    """Stage 2 of FRFSR's feature reuse framework, generic over registered RefSR generators.

    Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution, Sec. III-A.

    It mainly performs:
        1. builds Net1 into the reference pipeline (``restoration/pipeline.py``) from ``network_stage1`` and
           ``path.pretrain_network_stage1`` (strict), frozen, eval, no_grad, in no optimiser and never resumed; its
           reused feature is the input or output of the submodule ``feature_reuse.source`` (``feature_reuse.port``),
           taken by a hook during Net1's forward;
        2. computes correspondence, VGG features and SIFE once per batch and runs Net1 on it, then Net2 (``net_g``),
           which receives the reused feature as ``context['reuse_feat']``; with ``feature_reuse: {enabled: false}``
           (an ablation) Net1 is neither built nor run and Net2 gets no reused feature;
        3. trains Net2 with pixel + perceptual + WGAN losses and the critic ``net_d`` with WGAN-GP, the critic step
           first; the first ``train.net_g_pretrain_steps`` iterations are pixel-only without critic updates.

    Losses are logged as ``l_g_pix``, ``l_g_percep``, ``l_g_gan``, ``l_d_real``, ``l_d_fake`` and ``l_d_gp``.

    It also derives from BasicSR's ``SRGANModel`` (after :class:`FRFSRModel`, so that the RefSR feeding, restoration
    and plumbing come first) for two methods that it does not rewrite: ``init_training_settings``, which builds the
    EMA copy, the discriminator ``net_d`` (loading ``path.pretrain_network_d``) and the pixel, perceptual and GAN
    losses in BasicSR's order (the order in which random initialisations draw), and ``save``, which writes ``net_g``
    (with its EMA), ``net_d`` and the training state.
    """

    uses_stage1 = True  # Net1 in the reference pipeline, unless feature_reuse.enabled is false

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

    def optimize_parameters(self, current_iter):
        self.output = self.reference_pipeline.super_resolve(self.net_g, self.lq, self.lq_up, self.ref).sr
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
