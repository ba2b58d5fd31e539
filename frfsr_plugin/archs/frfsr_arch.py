"""FRFSR restoration network (stage 1, "RefSR(1)").

Paper: A Feature Reuse Framework with Texture-adaptive Aggregation for Reference-based Super-Resolution
(Mei et al., arXiv 2306.01500). Wiring and sizes follow the FRFSR implementation spec, sections 4 to 6
(see docs/design.md).
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from frfsr_plugin.archs.aggregation import TextureAdaptiveAggregation
from frfsr_plugin.archs.alignment import TextureAlignment
from frfsr_plugin.archs.arch_util import init_restoration_weights
from frfsr_plugin.utils.errors import InputSizeError

MIN_LR_SIZE = 15  # the ESA at the smallest U-Net scale needs 15x15
REF_CHANNELS = (64, 128, 256)  # VGG19 relu1_1, relu2_1, relu3_1


def lrelu(x):
    """LeakyReLU(0.1) in place: only for fresh outputs of convs and pixel shuffles that nothing else holds."""
    return F.leaky_relu(x, 0.1, inplace=True)


@ARCH_REGISTRY.register()
class FRFSRNet(nn.Module):
    """FRFSR x4 restoration U-Net with texture alignment (FAM) and texture-adaptive aggregation (TAAM).

    Scales: full (4h x 4w, Ref relu1_1), half (2h x 2w, relu2_1) and LR (h x w, relu3_1). The encoder path is
    ``down_large`` (full) and ``down_medium`` (half); the decoder path is ``up_small`` (LR, where the SIFE feature is
    fused), ``up_medium`` and ``up_large``. The output of ``aggregate_up_large`` is the reusable feature F_SR^rec.

    Args:
        num_feat (int): U-Net channels. Default: 64.
        num_res_blocks (int): ResBlocks with ESA per TAAM. Default: 16.
        num_ddf_blocks (int): Residual DDF blocks per TAAM. Default: 2.
        deformable_groups (int): Offset groups of the deformable convs. Default: 8.
        sife_channels (int): Channels of the SIFE feature fused at the LR scale; 0 disables the fusion. Default: 64.
        use_esa (bool): ESA in the ResBlocks. Default: True.
        dcn_backend (str): ``'torchvision'`` (default), ``'mmcv'`` or ``'pytorch'``; see ops/deform_conv.py.
        reuse_channels (int): Channels of a reused stage-1 feature F_SR^rec fused at both full-resolution TAAMs
            (stage 2 of the feature reuse framework); 0 for stage 1. Default: 0.
    """

    supports_tiling = True  # fully convolutional, Ref features read only by the FAMs (restoration/tiling.py)

    def __init__(self,
                 num_feat=64,
                 num_res_blocks=16,
                 num_ddf_blocks=2,
                 deformable_groups=8,
                 sife_channels=64,
                 use_esa=True,
                 dcn_backend='torchvision',
                 reuse_channels=0):
        super().__init__()
        self.num_feat = num_feat
        self.sife_channels = sife_channels
        self.reuse_channels = reuse_channels
        c1, c2, c3 = REF_CHANNELS

        def align(ref_channels):
            return TextureAlignment(ref_channels, num_feat, deformable_groups, dcn_backend)

        def aggregate(in_channels):
            return TextureAdaptiveAggregation(in_channels, num_feat, num_ddf_blocks, num_res_blocks, use_esa)

        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.align_down_large, self.aggregate_down_large = align(c1), aggregate(num_feat + c1)
        self.down_large = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.align_down_medium, self.aggregate_down_medium = align(c2), aggregate(num_feat + c2)
        self.down_medium = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        if sife_channels:
            self.sife_fusion = nn.Conv2d(sife_channels + num_feat, num_feat, 3, 1, 1)
        self.align_up_small, self.aggregate_up_small = align(c3), aggregate(num_feat + c3)
        self.up_small = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.align_up_medium, self.aggregate_up_medium = align(c2), aggregate(num_feat + c2)
        self.up_medium = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.align_up_large, self.aggregate_up_large = align(c1), aggregate(num_feat + c1)
        self.tail = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // 2, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(num_feat // 2, 3, 3, 1, 1))
        if reuse_channels:
            self.reuse_fusion_down_large = nn.Conv2d(reuse_channels + num_feat, num_feat, 3, 1, 1)
            self.reuse_fusion_up_large = nn.Conv2d(reuse_channels + num_feat, num_feat, 3, 1, 1)
        init_restoration_weights(self)

    @property
    def needs_reuse_feat(self):
        """Whether the forward reads ``context['reuse_feat']`` (stage 2: ``reuse_channels`` > 0)."""
        return bool(self.reuse_channels)

    def inference_bytes_per_pixel(self):
        """Peak memory of one forward without gradients (float32), in bytes per HR output pixel, inputs excluded
        except the reused feature.

        Dominated by the deformable conv at full resolution (relu1_1, 9 taps x 64 channels sampled per pixel).
        ``tools/measure_memory.py`` measured 5610 bytes at num_feat 64 and 5156 at num_feat 16 on CPU (the
        ``grid_sample`` formulation that tiles use; torchvision's op, used on a whole canvas, 5897 at num_feat 64),
        repeatable to 0.1% under a budget's allocator setting; rounded up by 10-12%.
        """
        return 5500 + 12 * self.num_feat + 4 * self.reuse_channels

    def fuse_reused(self, stage, x, context):
        """Stage 2: ``LReLU(reuse_fusion_<stage>([F_rec, x]))``; stage 1 (no fusion convs): ``x`` unchanged."""
        if not self.reuse_channels:
            return x
        fusion = getattr(self, f'reuse_fusion_{stage}')
        return lrelu(fusion(torch.cat([context['reuse_feat'], x], 1)))

    def forward(self, lq, context):
        """
        Args:
            lq (Tensor): LR image in [0, 1], shape (B, 3, h, w), h and w >= 15.
            context (dict): Correspondence of :class:`FRFSRCorrespondence` (``pre_offsets``, ``ref_feats``,
                ``warped_ref_feats``, each a tuple over full / half / LR scale) plus ``sife_feat``
                (B, sife_channels, h, w) when SIFE fusion is enabled and ``reuse_feat`` (B, reuse_channels, 4h, 4w)
                in stage 2.

        Returns:
            Tensor: SR image, shape (B, 3, 4h, 4w).
        """
        if min(lq.shape[-2:]) < MIN_LR_SIZE:
            raise InputSizeError(
                f'FRFSRNet needs an LR of at least {MIN_LR_SIZE}x{MIN_LR_SIZE}, got {tuple(lq.shape[-2:])}.')
        pre_full, pre_half, pre_lr = context['pre_offsets']
        ref_full, ref_half, ref_lr = context['ref_feats']
        warped_full, warped_half, warped_lr = context['warped_ref_feats']

        base = F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)
        x0 = self.conv_first(base)
        aligned = self.align_down_large(x0, warped_full, ref_full, pre_full)
        head = self.fuse_reused('down_large', x0, context)
        x1 = self.down_large(self.aggregate_down_large(torch.cat([head, aligned], 1), x0))

        aligned = self.align_down_medium(x1, warped_half, ref_half, pre_half)
        x2 = self.down_medium(self.aggregate_down_medium(torch.cat([x1, aligned], 1), x1))

        aligned = self.align_up_small(x2, warped_lr, ref_lr, pre_lr)
        head = lrelu(self.sife_fusion(torch.cat([context['sife_feat'], x2], 1))) if self.sife_channels else x2
        x = self.aggregate_up_small(torch.cat([head, aligned], 1), x2)
        x = lrelu(F.pixel_shuffle(self.up_small(x), 2))

        aligned = self.align_up_medium(x, warped_half, ref_half, pre_half)
        x = self.aggregate_up_medium(torch.cat([x + x1, aligned], 1), x)
        x = lrelu(F.pixel_shuffle(self.up_medium(x), 2))

        aligned = self.align_up_large(x, warped_full, ref_full, pre_full)
        head = self.fuse_reused('up_large', x, context)
        feat_rec = self.aggregate_up_large(torch.cat([head + x0, aligned], 1), x)
        return self.tail(feat_rec) + base


@ARCH_REGISTRY.register()
class FRFSRStage2Net(FRFSRNet):
    """FRFSR stage-2 network ("RefSR(2)"): :class:`FRFSRNet` that fuses the frozen stage-1 network's F_SR^rec.

    At ``down_large`` the TAAM head input becomes ``[LReLU(conv([F_rec, x0])), aligned relu1_1]`` and at ``up_large``
    ``[LReLU(conv([F_rec, x])) + x0, aligned relu1_1]``; the skips are unchanged (docs/design.md). The reused feature
    arrives as ``context['reuse_feat']`` with shape (B, reuse_channels, 4h, 4w).

    Args:
        reuse_channels (int): Channels of F_SR^rec. Default: 64.
        **kwargs: :class:`FRFSRNet` arguments.
    """

    def __init__(self, reuse_channels=64, **kwargs):
        super().__init__(reuse_channels=reuse_channels, **kwargs)
