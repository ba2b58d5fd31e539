"""Texture-adaptive aggregation (TAAM): dynamic residual blocks (DDF) followed by ResBlocks with ESA."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from frfsr_plugin.ops.ddf import KERNEL_SIZE, ddf_mul


class DDFPack(nn.Module):
    """Decoupled dynamic filter layer: 3x3, one head, multiplicative combination, no filter normalisation.

    The spatial branch predicts one 3x3 kernel per pixel (1x1 conv); the channel branch predicts one 3x3 kernel per
    channel from the globally pooled input (1x1 conv, ReLU, 1x1 conv, squeeze ratio 0.2). No bias.

    Args:
        channels (int): Feature channels C.
        squeeze_ratio (float): Hidden width of the channel branch as a fraction of C. Default: 0.2.
    """

    def __init__(self, channels, squeeze_ratio=0.2):
        super().__init__()
        taps = KERNEL_SIZE * KERNEL_SIZE
        hidden = int(channels * squeeze_ratio)
        self.spatial_branch = nn.Conv2d(channels, taps, 1)
        self.channel_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels * taps, 1))

    def forward(self, x):
        """x: (B, C, H, W) -> (B, C, H, W)."""
        batch, channels = x.shape[:2]
        channel_filter = self.channel_branch(x).view(batch, channels, KERNEL_SIZE * KERNEL_SIZE)
        return ddf_mul(x, channel_filter, self.spatial_branch(x))


class ResidualDDFBlock(nn.Module):
    """``x + DDF(ReLU(DDF(x)))``."""

    def __init__(self, channels):
        super().__init__()
        self.ddf1 = DDFPack(channels)
        self.ddf2 = DDFPack(channels)

    def forward(self, x):
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return x + self.ddf2(F.relu(self.ddf1(x), inplace=True))  # in place: one saved tensor less in training


class ESA(nn.Module):
    """Enhanced spatial attention (RFDN), as used by FRFSR (three 3x3 convs after pooling).

    Needs inputs of at least 15x15 (stride-2 unpadded conv, then a 7x7 max-pool with stride 3). In training the
    final gate ``x * sigmoid(conv4(.))`` is recomputed in backward (``torch.utils.checkpoint``), so the C-channel
    attention map is not kept: 17% less activation memory for FRFSRNet at the cost of a C/4 -> C 1x1 conv.

    Args:
        channels (int): Feature channels C. The attention branch has C / 4 channels.
    """

    def __init__(self, channels):
        super().__init__()
        reduced = channels // 4
        self.conv1 = nn.Conv2d(channels, reduced, 1)
        self.conv_f = nn.Conv2d(reduced, reduced, 1)
        self.conv_max = nn.Conv2d(reduced, reduced, 3, 1, 1)
        self.conv2 = nn.Conv2d(reduced, reduced, 3, 2, 0)
        self.conv3 = nn.Conv2d(reduced, reduced, 3, 1, 1)
        self.conv3_ = nn.Conv2d(reduced, reduced, 3, 1, 1)
        self.conv4 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        """x: (B, C, H, W) -> x scaled by a sigmoid attention map, (B, C, H, W)."""
        c1_ = self.conv1(x)
        pooled = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        c3 = F.relu(self.conv3(F.relu(self.conv_max(pooled))))
        c3 = F.interpolate(self.conv3_(c3), size=x.shape[-2:], mode='bilinear', align_corners=False)
        attention_logits = c3 + self.conv_f(c1_)
        if torch.is_grad_enabled():  # recompute the C-channel attention map in backward instead of keeping it
            return checkpoint(self.gate, x, attention_logits, use_reentrant=False, preserve_rng_state=False)
        return self.gate(x, attention_logits)

    def gate(self, x, attention_logits):
        """``x * sigmoid(conv4(attention_logits))``: x (B, C, H, W), attention_logits (B, C / 4, H, W)."""
        return x * torch.sigmoid(self.conv4(attention_logits))


class ResidualBlockESA(nn.Module):
    """``x + ESA(conv(ReLU(conv(x))))`` with 3x3 convs (ESA optional, for ablations)."""

    def __init__(self, channels, use_esa=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.esa = ESA(channels) if use_esa else nn.Identity()

    def forward(self, x):
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return x + self.esa(self.conv2(F.relu(self.conv1(x), inplace=True)))


class TextureAdaptiveAggregation(nn.Module):
    """TAAM: ``t = DDFBlocks(LReLU(conv(x_in))) + skip``; ``out = Body(t) + skip``.

    Args:
        in_channels (int): Channels of the concatenated head input.
        channels (int): Working channels C. Default: 64.
        num_ddf_blocks (int): Residual DDF blocks. Default: 2.
        num_res_blocks (int): ResBlocks (with ESA) in the body. Default: 16.
        use_esa (bool): ESA in the ResBlocks. Default: True.
    """

    def __init__(self, in_channels, channels=64, num_ddf_blocks=2, num_res_blocks=16, use_esa=True):
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, 1, 1)
        self.ddf_blocks = nn.Sequential(*(ResidualDDFBlock(channels) for _ in range(num_ddf_blocks)))
        self.body = nn.Sequential(*(ResidualBlockESA(channels, use_esa) for _ in range(num_res_blocks)))

    def forward(self, x_in, skip):
        """
        Args:
            x_in (Tensor): Head input, shape (B, in_channels, H, W).
            skip (Tensor): Residual added after the DDF blocks and after the body, shape (B, C, H, W).

        Returns:
            Tensor: Shape (B, C, H, W).
        """
        texture = self.ddf_blocks(F.leaky_relu(self.head(x_in), 0.1, inplace=True)) + skip
        return self.body(texture) + skip
