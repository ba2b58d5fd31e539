"""Image discriminator of C2-Matching / FRFSR (used as a WGAN-GP critic)."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


def conv_bn_lrelu(in_channels, out_channels, stride):
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, True)]


@ARCH_REGISTRY.register()
class FRFSRDiscriminator(nn.Module):
    """Five (conv, BN, LReLU, stride-2 conv, BN, LReLU) blocks, global average pooling, two 1x1 convs and a sigmoid.

    Kept as in the original code for fidelity, although BN and a sigmoid are unusual in a WGAN-GP critic.
    5,242,529 parameters at the defaults.

    Args:
        in_channels (int): Image channels. Default: 3.
        num_feat (int): Channels of the first block, doubled per block. Default: 32.
    """

    def __init__(self, in_channels=3, num_feat=32):
        super().__init__()
        layers, channels = [], in_channels
        for block in range(5):
            width = num_feat * 2**block
            layers += conv_bn_lrelu(channels, width, 1) + conv_bn_lrelu(width, width, 2)
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels * 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(channels * 2, 1, 1), nn.Sigmoid())
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, img):
        """img: (B, 3, H, W) in [0, 1] -> critic score (B, 1) in (0, 1)."""
        return torch.flatten(self.classifier(self.features(img)), 1)
