"""C2-Matching restoration network, for the feature reuse framework on another RefSR method (paper Table IX).

Paper: Robust Reference-based Super-Resolution via C2-Matching (Jiang et al., CVPR 2021).
"""
import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import ResidualBlockNoBN
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from frfsr_plugin.archs.alignment import TextureAlignment
from frfsr_plugin.archs.arch_util import init_restoration_weights

# (scale name, Ref level index in the correspondence context, Ref channels), from the LR scale up
SCALES = (('small', 2, 256), ('medium', 1, 128), ('large', 0, 64))


@ARCH_REGISTRY.register()
class C2MatchingRestorationNet(nn.Module):
    """C2-Matching x4 restoration network (8,865,547 parameters at the defaults).

    A content extractor (conv + 16 ResBlocks at LR scale) is followed, at the LR, half and full scales, by a dynamic
    aggregation (deformable conv on the raw Ref feature, offsets from ``[x, Ref]`` plus pre-offsets), a head conv on
    ``[x, aligned]``, ``n_blocks`` ResBlocks with a skip, and sub-pixel up-sampling; SR = tail + bilinear x4.
    The input of ``tail`` is the full-resolution feature reused by the feature reuse framework.

    Args:
        ngf (int): Channels. Default: 64.
        n_blocks (int): ResBlocks in the content extractor and at every scale. Default: 16.
        groups (int): Deformable offset groups. Default: 8.
        dcn_backend (str): ``'torchvision'`` (default), ``'mmcv'`` or ``'pytorch'``.
    """

    supports_tiling = True  # fully convolutional, Ref features read only by the FAMs (restoration/tiling.py)

    def __init__(self, ngf=64, n_blocks=16, groups=8, dcn_backend='torchvision'):
        super().__init__()
        self.ngf = ngf
        self.conv_first = nn.Conv2d(3, ngf, 3, 1, 1)
        self.content_body = nn.Sequential(*(ResidualBlockNoBN(ngf) for _ in range(n_blocks)))
        self.align = nn.ModuleDict()
        self.head = nn.ModuleDict()
        self.body = nn.ModuleDict()
        for name, _, ref_channels in SCALES:
            self.align[name] = TextureAlignment(ref_channels, ngf, groups, dcn_backend, use_warped_ref=False)
            self.head[name] = nn.Conv2d(ngf + ref_channels, ngf, 3, 1, 1)
            self.body[name] = nn.Sequential(*(ResidualBlockNoBN(ngf) for _ in range(n_blocks)))
        self.upsample = nn.ModuleDict({name: nn.Conv2d(ngf, ngf * 4, 3, 1, 1) for name in ('small', 'medium')})
        self.tail = nn.Sequential(
            nn.Conv2d(ngf, ngf // 2, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(ngf // 2, 3, 3, 1, 1))
        init_restoration_weights(self)

    def inference_bytes_per_pixel(self):
        """Peak memory of one forward without gradients (float32), in bytes per HR output pixel, inputs excluded.

        Dominated by the deformable conv at full resolution; ``tools/measure_memory.py`` measured 5325 bytes at
        ngf 64 and 5083 at ngf 16 on CPU, repeatable to 0.1% under a budget's allocator setting; rounded up by 11-15%.
        """
        return 5500 + 10 * self.ngf

    def forward(self, lq, context):
        """
        Args:
            lq (Tensor): LR image, shape (B, 3, h, w).
            context (dict): ``pre_offsets`` and ``ref_feats`` of :class:`FRFSRCorrespondence` (full / half / LR).

        Returns:
            Tensor: SR image, shape (B, 3, 4h, 4w).
        """
        base = F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)
        x = self.content_body(F.leaky_relu(self.conv_first(lq), 0.1))
        for name, level, _ in SCALES:
            ref = context['ref_feats'][level]
            aligned = self.align[name](x, None, ref, context['pre_offsets'][level])
            h = self.body[name](F.leaky_relu(self.head[name](torch.cat([x, aligned], 1)), 0.1)) + x
            if name in self.upsample:
                x = F.leaky_relu(F.pixel_shuffle(self.upsample[name](h), 2), 0.1)
        return self.tail(h) + base
