"""Contrastive texture encoder of C2-Matching, reused by FRFSR for correspondence search."""
from collections import OrderedDict

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.archs.vgg_features import ImageNetNormalize
from frfsr_plugin.utils.pretrained import load_pretrained

ENCODER_WEIGHTS_DESCRIPTION = ("the contrastive texture encoder (C2-Matching's feature_extraction.pth, or a student "
                               'checkpoint written by the texture-encoder training)')

# VGG16 layers up to conv3_1: (name, in_channels, out_channels); None marks a 2x2 max-pool.
_VGG16_TO_CONV3_1 = (('conv1_1', 3, 64), ('conv1_2', 64, 64), None, ('conv2_1', 64, 128), ('conv2_2', 128, 128), None,
                     ('conv3_1', 128, 256))


class VGG16Conv31(torch.nn.Module):
    """VGG16 up to conv3_1 (output taken before its ReLU), stride 4, ImageNet input normalisation inside."""

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

    Args:
        pretrained (str | bool): Local encoder weights, or False for random init (tests only).
    """

    def __init__(self, pretrained=None):
        super().__init__()
        self.feature_extraction_image1 = VGG16Conv31()
        self.feature_extraction_image2 = VGG16Conv31()
        load_pretrained(self, pretrained, type(self).__name__, ENCODER_WEIGHTS_DESCRIPTION)

    def forward(self, img_lq_up, img_ref):
        """
        Args:
            img_lq_up (Tensor): Bicubic x4 upsampled LR, shape (B, 3, 4h, 4w).
            img_ref (Tensor): Reference, shape (B, 3, H_r, W_r).

        Returns:
            tuple[Tensor, Tensor]: Features of shape (B, 256, h, w) and (B, 256, H_r / 4, W_r / 4).
        """
        return self.feature_extraction_image1(img_lq_up), self.feature_extraction_image2(img_ref)
