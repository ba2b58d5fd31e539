"""Texture alignment (FAM): modulated deformable conv on Ref features, steered by correspondence pre-offsets."""
import torch
import torch.nn.functional as F
from torch import nn

from frfsr_plugin.ops.deform_conv import PreOffsetModulatedDeformConv
from frfsr_plugin.ops.ref_window import split_ref


class TextureAlignment(nn.Module):
    """Aligns a Ref feature level to the LR-branch feature ``x``.

    The offset feature is computed from ``[x, warped Ref, raw Ref]`` (FRFSR) or ``[x, raw Ref]`` (C2-Matching) by two
    3x3 convs with LReLU; the deformable conv samples the raw Ref feature at the pre-offset positions plus learned
    offsets.

    Args:
        ref_channels (int): Channels C of the Ref level (64, 128 or 256 for relu1_1, relu2_1, relu3_1).
        feat_channels (int): Channels of ``x``. Default: 64.
        deformable_groups (int): Offset groups. Default: 8.
        dcn_backend (str): ``'torchvision'`` (default), ``'mmcv'`` or ``'pytorch'``; see ops/deform_conv.py.
        use_warped_ref (bool): Feed the flow-warped Ref feature to the offset branch (FRFSR). Default: True.
    """

    def __init__(self,
                 ref_channels,
                 feat_channels=64,
                 deformable_groups=8,
                 dcn_backend='torchvision',
                 use_warped_ref=True):
        super().__init__()
        self.use_warped_ref = use_warped_ref
        offset_in = feat_channels + (2 if use_warped_ref else 1) * ref_channels
        self.offset_conv1 = nn.Conv2d(offset_in, ref_channels, 3, 1, 1)
        self.offset_conv2 = nn.Conv2d(ref_channels, ref_channels, 3, 1, 1)
        self.dcn = PreOffsetModulatedDeformConv(ref_channels, ref_channels, deformable_groups, dcn_backend)

    def forward(self, x, warped_ref, ref, pre_offset):
        """
        Args:
            x (Tensor): LR-branch feature, shape (B, feat_channels, H, W).
            warped_ref (Tensor | None): Ref feature warped by the flow, shape (B, C, H, W); unused (may be None)
                without ``use_warped_ref``.
            ref (Tensor | RefWindow): Raw Ref feature, shape (B, C, H, W); in tiled restoration a
                :class:`~frfsr_plugin.ops.ref_window.RefWindow` whose crop (B, C, H, W) feeds the offset branch and
                whose whole map the deformable conv samples.
            pre_offset (Tensor): Pre-offsets, shape (B, 18, H, W).

        Returns:
            Tensor: Aligned Ref feature, shape (B, C, H, W).
        """
        ref_local, ref_full, origin = split_ref(ref)
        offset_input = [x, warped_ref, ref_local] if self.use_warped_ref else [x, ref_local]
        offset_feat = F.leaky_relu(self.offset_conv1(torch.cat(offset_input, dim=1)), 0.1, inplace=True)
        offset_feat = F.leaky_relu(self.offset_conv2(offset_feat), 0.1, inplace=True)
        return F.leaky_relu(self.dcn(ref_full, offset_feat, pre_offset, origin), 0.1, inplace=True)
