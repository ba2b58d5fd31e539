"""Contrastive texture encoder of C2-Matching, reused by FRFSR for correspondence search."""
from collections import OrderedDict

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.archs.vgg_features import ImageNetNormalize
from frfsr_plugin.utils.checkpoint import (load_pretrained, load_state_dict_checked, read_state_dict,
                                           resolve_pretrained_option)
from frfsr_plugin.utils.errors import OptionError

ENCODER_WEIGHTS_DESCRIPTION = ("the contrastive texture encoder (C2-Matching's feature_extraction.pth, or a student "
                               'checkpoint written by the texture-encoder training)')
VGG16_WEIGHTS_DESCRIPTION = ("torchvision's VGG16 ImageNet weights (vgg16-397923af.pth, "
                             'torchvision.models.VGG16_Weights.IMAGENET1K_V1)')

# VGG16 layers up to conv3_1: (name, in_channels, out_channels); None marks a 2x2 max-pool.
_VGG16_TO_CONV3_1 = (('conv1_1', 3, 64), ('conv1_2', 64, 64), None, ('conv2_1', 64, 128), ('conv2_2', 128, 128), None,
                     ('conv3_1', 128, 256))


class VGG16Conv31(torch.nn.Module):
    """VGG16 up to conv3_1 (output taken before its ReLU), stride 4, ImageNet input normalisation inside.

    Layer ``i`` of ``model`` is layer ``i`` of torchvision's ``vgg16().features``. The random initialisation is
    torchvision's VGG one (Kaiming normal, fan-out, zero biases): trained from it, the texture encoder learns
    markedly faster and more steadily than from PyTorch's default convolution init.
    """

    def __init__(self):
        super().__init__()
        self.normalize = ImageNetNormalize()
        layers = OrderedDict()
        for index, spec in enumerate(_VGG16_TO_CONV3_1):
            if spec is None:
                layers[f'pool{index}'] = torch.nn.MaxPool2d(2, 2)
                continue
            name, c_in, c_out = spec
            layers[name] = torch.nn.Conv2d(c_in, c_out, 3, 1, 1)
            torch.nn.init.kaiming_normal_(layers[name].weight, mode='fan_out', nonlinearity='relu')
            torch.nn.init.zeros_(layers[name].bias)
            if name != 'conv3_1':
                layers[name.replace('conv', 'relu')] = torch.nn.ReLU(inplace=True)
        self.model = torch.nn.Sequential(layers)

    def forward(self, img):
        """
        Args:
            img (Tensor): RGB in [0, 1], shape (B, 3, H, W).

        Returns:
            Tensor: conv3_1 features, shape (B, 256, H / 4, W / 4).
        """
        return self.model(self.normalize(img))


@ARCH_REGISTRY.register()
class FRFSRContrastiveEncoder(torch.nn.Module):
    """Two-branch contrastive texture encoder (C2-Matching's ``ContrasExtractorSep``).

    Branch 1 encodes the bicubic-upsampled LR image, branch 2 the HR reference; the branches do not share weights.
    Parameter names follow C2-Matching's checkpoints (``feature_extraction_image{1,2}.model.conv*``).

    Both branches start from the same weights, as in C2-Matching, where both are initialised from one ImageNet VGG16:
    with random init, branch 2 is a copy of branch 1, so that an untrained encoder already maps the LR-up image and
    the reference into one feature space (two independent random networks would match at chance level).

    Args:
        pretrained (str | bool): Local encoder weights (plain or BasicSR ``{'params': ...}`` state dict), or False for
            random init (tests only). Leave it out when ``vgg16_pretrained`` is given.
        vgg16_pretrained (str | bool | None): Local file with torchvision's VGG16 ImageNet weights, whose conv1_1 ...
            conv3_1 (``features.0/2/5/7/10``) initialise both branches: the starting point of the texture-encoder
            training (C2-Matching's teacher and student). False gives random init. Default: None (use ``pretrained``).
    """

    def __init__(self, pretrained=None, vgg16_pretrained=None):
        super().__init__()
        self.feature_extraction_image1 = VGG16Conv31()
        self.feature_extraction_image2 = VGG16Conv31()
        self.feature_extraction_image2.load_state_dict(self.feature_extraction_image1.state_dict())
        owner = type(self).__name__
        if vgg16_pretrained is None:
            load_pretrained(self, pretrained, owner, ENCODER_WEIGHTS_DESCRIPTION)
        elif pretrained not in (None, False):
            raise OptionError(f'{owner}: give either `pretrained` (encoder weights) or `vgg16_pretrained` (ImageNet '
                              f'VGG16 initialisation), not both; got {pretrained!r} and {vgg16_pretrained!r}.')
        else:
            self.load_vgg16(vgg16_pretrained)

    def load_vgg16(self, vgg16_pretrained):
        """Initialise both branches from torchvision's VGG16 ``features`` (same layer indices as our branches).

        Args:
            vgg16_pretrained (str | bool): Local file with torchvision's VGG16 ImageNet state dict, or False (keep the
                random init).
        """
        path = resolve_pretrained_option(vgg16_pretrained, f'{type(self).__name__}.vgg16_pretrained',
                                         VGG16_WEIGHTS_DESCRIPTION)
        if path is None:
            return
        vgg16 = read_state_dict(path)
        mapped = {}
        for branch in ('feature_extraction_image1', 'feature_extraction_image2'):
            for index, (name, layer) in enumerate(getattr(self, branch).model.named_children()):
                for param in layer.state_dict():
                    value = vgg16.get(f'features.{index}.{param}')
                    if value is not None:
                        mapped[f'{branch}.model.{name}.{param}'] = value
        load_state_dict_checked(self, mapped, f"'{path}' (torchvision VGG16 features.0/2/5/7/10)")

    def encode_lr(self, img_lq_up):
        """Branch 1 alone: the features of the bicubic x4 upsampled LR, (B, 3, 4h, 4w) -> (B, 256, h, w)."""
        return self.feature_extraction_image1(img_lq_up)

    def encode_reference(self, img_ref):
        """Branch 2 alone: the features of a reference, (B, 3, H_r, W_r) -> (B, 256, H_r / 4, W_r / 4)."""
        return self.feature_extraction_image2(img_ref)

    def forward(self, img_lq_up, img_ref):
        """
        Args:
            img_lq_up (Tensor): Bicubic x4 upsampled LR, shape (B, 3, 4h, 4w).
            img_ref (Tensor): Reference, shape (B, 3, H_r, W_r).

        Returns:
            tuple[Tensor, Tensor]: Features of shape (B, 256, h, w) and (B, 256, H_r / 4, W_r / 4).
        """
        return self.encode_lr(img_lq_up), self.encode_reference(img_ref)
