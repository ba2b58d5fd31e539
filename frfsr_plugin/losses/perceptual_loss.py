"""VGG19 perceptual loss loading its weights from a local file (BasicSR's downloads them when missing)."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from frfsr_plugin.archs.vgg_features import VGG19Features
from frfsr_plugin.utils.errors import OptionError

CRITERIA = ('fro', 'l1', 'l2')


@LOSS_REGISTRY.register()
class FRFSRPerceptualLoss(nn.Module):
    """Weighted distance between VGG19 features of output and ground truth (ImageNet-normalised [0, 1] inputs).

    With ``criterion: fro`` (FRFSR / C2-Matching) each layer's term is the Frobenius norm of the whole batch's feature
    difference, not divided by its size. The ground-truth features carry no gradient.

    Args:
        layer_weights (dict[str, float]): e.g. ``{'relu5_1': 1.0}``.
        pretrained (str | bool): Local VGG19 ImageNet weights, or False for random init (tests only).
        perceptual_weight (float): Overall weight. Default: 1e-4.
        criterion (str): ``'fro'``, ``'l1'`` or ``'l2'`` (means). Default: ``'fro'``.
    """

    def __init__(self, layer_weights, pretrained=None, perceptual_weight=1e-4, criterion='fro'):
        super().__init__()
        if criterion not in CRITERIA:
            raise OptionError(f'FRFSRPerceptualLoss: criterion must be one of {CRITERIA}, got {criterion!r}.')
        self.layer_weights = dict(layer_weights)
        self.perceptual_weight = perceptual_weight
        self.criterion = criterion
        self.vgg = VGG19Features(tuple(self.layer_weights), pretrained, owner='FRFSRPerceptualLoss')

    def distance(self, x, y):
        if self.criterion == 'fro':
            return torch.norm(x - y, p='fro')
        return nn.functional.l1_loss(x, y) if self.criterion == 'l1' else nn.functional.mse_loss(x, y)

    def forward(self, output, gt):
        """
        Args:
            output (Tensor): SR, shape (B, 3, H, W).
            gt (Tensor): Ground truth, shape (B, 3, H, W).

        Returns:
            tuple[Tensor, None]: Perceptual loss and no style loss (the interface of BasicSR's PerceptualLoss).
        """
        out_feats = self.vgg(output)
        with torch.no_grad():
            gt_feats = self.vgg(gt)
        loss = sum(weight * self.distance(out_feats[name], gt_feats[name])
                   for name, weight in self.layer_weights.items())
        return loss * self.perceptual_weight, None
