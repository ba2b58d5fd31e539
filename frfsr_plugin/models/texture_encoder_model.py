"""Training of the contrastive texture encoder: C2-Matching's teacher and student (distillation) stages."""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import MODEL_REGISTRY

from frfsr_plugin.data.realworld_degradation import KERNEL_BATCH_KEYS
from frfsr_plugin.models.base_model import FRFSRBaseModel
from frfsr_plugin.utils.errors import MissingOptionError, OptionError
from frfsr_plugin.utils.frozen_networks import build_frozen_network, load_frozen_weights

# Values of `val.branch1_input` -> batch key of the image encoded by branch 1.
BRANCH1_INPUTS = {'hr': 'img1', 'lr_up': 'img1_lr_up'}


@MODEL_REGISTRY.register()
class TextureEncoderTeacherModel(FRFSRBaseModel):
    """Teacher stage of the contrastive texture encoder (C2-Matching, spec 2.2): HR image / warped HR image.

    It mainly performs:
        1. encodes image 1 with branch 1 and the warped image 2 with branch 2 of ``net_g`` (an
           ``FRFSRContrastiveEncoder``) and trains it with ``train.triplet_opt`` (``TextureTripletLoss``), logged as
           ``l_triplet``;
        2. validates with the metrics of ``val.metrics`` computed on features instead of images (e.g.
           ``calculate_matching_accuracy``), through BasicSR's metric, best-metric and TensorBoard logging;
           ``val.branch1_input`` (``hr`` or ``lr_up``) selects the image-1 version, default: the training one.

    Checkpoints, CPU DDP, atomic saves and the non-finite loss guard are :class:`FRFSRBaseModel`'s. Batches come from
    ``ContrastiveHomographyDataset``: ``img1``, ``img1_lr_up``, ``img2`` (B, 3, H, W) and ``gt_map`` (B, 2, H, W);
    with ``realworld_degradation`` they carry blur kernels instead of ``img1_lr_up``, which is then made from image 1
    degraded on the device (:meth:`FRFSRBaseModel.synthesize_lr`).
    """

    branch1_input = 'hr'  # image-1 version encoded by branch 1 during training

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        if train_opt.get('ema_decay', 0):
            raise OptionError(f'train.ema_decay: {type(self).__name__} keeps no EMA copy of the encoder; set it to 0.')
        self.ema_decay = 0
        self.cri_triplet = build_loss(self.required_train_option('triplet_opt')).to(self.device)
        self.setup_optimizers()
        self.setup_schedulers()

    def required_train_option(self, key):
        """``opt['train'][key]``, or a MissingOptionError naming it."""
        if not self.opt['train'].get(key):
            raise MissingOptionError(f'train.{key} is missing: {type(self).__name__} needs it.')
        return self.opt['train'][key]

    def feed_data(self, data):
        self.img1 = data['img1'].to(self.device)
        if KERNEL_BATCH_KEYS[0] in data:
            _, self.img1_lr_up = self.synthesize_lr(self.img1, data)
        else:
            self.img1_lr_up = data['img1_lr_up'].to(self.device)
        self.img2 = data['img2'].to(self.device)
        self.gt_map = data['gt_map'].to(self.device)

    def branch1_image(self, branch1_input):
        """The image-1 tensor named by ``branch1_input`` (``hr`` or ``lr_up``), (B, 3, H, W)."""
        if branch1_input not in BRANCH1_INPUTS:
            raise OptionError(f'val.branch1_input must be one of {sorted(BRANCH1_INPUTS)}, got {branch1_input!r}.')
        return getattr(self, BRANCH1_INPUTS[branch1_input])

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        feat1, feat2 = self.net_g(self.branch1_image(self.branch1_input), self.img2)
        loss_dict = self.contrastive_losses(feat1, feat2)
        self.step_generator(sum(loss_dict.values()), loss_dict, current_iter)

    def contrastive_losses(self, feat1, feat2):
        """Loss terms for the encoder's features (B, C, h, w) of image 1 and image 2."""
        return OrderedDict(l_triplet=self.cri_triplet(feat1, feat2, self.gt_map))

    def test(self):
        """Features of the current pair, branch 1 on the ``val.branch1_input`` version of image 1."""
        branch1_input = self.opt['val'].get('branch1_input', self.branch1_input)
        net = self.get_bare_model(self.net_g)  # rank 0 alone validates: no DDP forward
        net.eval()
        with torch.no_grad():
            self.feat1, self.feat2 = net(self.branch1_image(branch1_input), self.img2)
        net.train()

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Average each metric of ``val.metrics`` over the pairs; ``save_img`` is ignored (no images are produced).

        Metrics receive ``feat1``, ``feat2`` (1, C, h, w) and ``gt_map`` (1, 2, H, W).
        """
        dataset_name = dataloader.dataset.opt['name']
        metrics_opt = self.opt['val'].get('metrics') or {}
        if not metrics_opt:
            return
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = {name: 0. for name in metrics_opt}
        for val_data in dataloader:
            self.feed_data(val_data)
            self.test()
            metric_data = {'feat1': self.feat1, 'feat2': self.feat2, 'gt_map': self.gt_map}
            for name, metric_opt in metrics_opt.items():
                self.metric_results[name] += calculate_metric(metric_data, metric_opt)
        for name in metrics_opt:
            self.metric_results[name] /= len(dataloader)
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)


@MODEL_REGISTRY.register()
class TextureEncoderStudentModel(TextureEncoderTeacherModel):
    """Student stage (spec 2.2): LR-up image / warped HR image, triplet loss plus distillation from a frozen teacher.

    It mainly performs:
        1. builds the teacher from ``network_teacher`` and loads it from ``path.pretrain_network_teacher`` (a
           ``net_g_*.pth`` of a :class:`TextureEncoderTeacherModel` run; ``param_key_teacher``, default
           ``params``): frozen, eval, no_grad, not in DDP nor any optimiser; list it in
           ``path.ignore_resume_networks``;
        2. trains ``net_g`` on (LR-up image 1, image 2) with ``train.triplet_opt`` plus ``train.distill_opt``
           (``TextureDistillationLoss``, the teacher seeing HR image 1 and image 2), logged as ``l_triplet`` and
           ``l_distill``; validation as in the teacher model, branch 1 on LR-up by default.

    The student's ``net_g_*.pth`` is the encoder that ``network_extractor.pretrained`` of the FRFSR YAMLs expects.
    """

    branch1_input = 'lr_up'

    def __init__(self, opt):
        super().__init__(opt)
        self.net_teacher = build_frozen_network(self.opt, 'network_teacher', self.device, type(self).__name__)
        load_frozen_weights(
            self.net_teacher, self.opt, 'teacher',
            'the student needs the teacher checkpoint (net_g_*.pth of a TextureEncoderTeacherModel run).')

    def init_training_settings(self):
        super().init_training_settings()
        self.cri_distill = build_loss(self.required_train_option('distill_opt')).to(self.device)

    def contrastive_losses(self, feat1, feat2):
        losses = super().contrastive_losses(feat1, feat2)
        with torch.no_grad():
            teacher_feat1, teacher_feat2 = self.net_teacher(self.img1, self.img2)
        losses['l_distill'] = self.cri_distill(feat1, feat2, teacher_feat1, teacher_feat2, self.gt_map)
        return losses
