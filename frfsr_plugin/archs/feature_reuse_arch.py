"""Generic feature reuse: give any registered RefSR generator the stage-2 fusion of FRFSR's feature reuse framework."""
import functools

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from frfsr_plugin.archs.arch_util import generator_bytes_per_pixel, get_submodule_checked
from frfsr_plugin.utils.checkpoint import load_pretrained
from frfsr_plugin.utils.errors import OptionError

FUSION_INITS = ('zero', 'small')


class ReuseFusion(nn.Module):
    """``x + conv3x3([x, F_rec])``, with F_rec bilinearly resized to x; identity at start when zero-initialised.

    Args:
        channels (int): Channels of x.
        reuse_channels (int): Channels of F_rec.
        init (str): ``'zero'`` (exact identity at start) or ``'small'`` (N(0, 1e-3) weights). Default: ``'zero'``.
    """

    def __init__(self, channels, reuse_channels, init='zero'):
        super().__init__()
        if init not in FUSION_INITS:
            raise OptionError(f'fusion_init must be one of {FUSION_INITS}, got {init!r}.')
        self.conv = nn.Conv2d(channels + reuse_channels, channels, 3, 1, 1)
        nn.init.zeros_(self.conv.bias)
        if init == 'zero':
            nn.init.zeros_(self.conv.weight)
        else:
            nn.init.normal_(self.conv.weight, 0.0, 1e-3)

    def forward(self, x, reuse_feat):
        """x: (B, C, H, W); reuse_feat: (B, C_r, H', W') -> (B, C, H, W)."""
        if reuse_feat.shape[-2:] != x.shape[-2:]:
            reuse_feat = F.interpolate(reuse_feat, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return x + self.conv(torch.cat([x, reuse_feat], 1))


@ARCH_REGISTRY.register()
class FeatureReuseNet(nn.Module):
    """Stage-2 network of the feature reuse framework around any registered RefSR generator.

    The base generator is built unchanged; a :class:`ReuseFusion` is inserted in front of each named submodule of
    ``fusion_targets`` (through a forward pre-hook on its first positional input, registered for the duration of each
    forward), so a user's arch gets feature reuse without editing its code. The reused feature arrives as
    ``context['reuse_feat']``.

    Args:
        base (dict): Options of the base arch (``type`` plus its kwargs); its forward is ``(lq, context)``.
        fusion_targets (dict[str, int]): Submodule path of the base -> channels of that submodule's first input.
        reuse_channels (int): Channels of the reused feature. Default: 64.
        fusion_init (str): ``'zero'`` or ``'small'``. Default: ``'zero'``.
        pretrained_base (str | None): Stage-1 checkpoint loaded strictly into the base (the usual initialisation of
            stage 2); None leaves the base randomly initialised. Default: None.
    """

    def __init__(self, base, fusion_targets, reuse_channels=64, fusion_init='zero', pretrained_base=None):
        super().__init__()
        if not fusion_targets:
            raise OptionError('FeatureReuseNet: fusion_targets must name at least one submodule of the base arch.')
        self.base = build_network(dict(base))
        self.reuse_channels = reuse_channels
        self.fusions = nn.ModuleDict()
        self.fusion_paths = {}  # key in self.fusions -> submodule path in the base
        for path, channels in fusion_targets.items():
            get_submodule_checked(self.base, path, 'FeatureReuseNet.fusion_targets')
            key = path.replace('.', '__')
            self.fusions[key] = ReuseFusion(channels, reuse_channels, fusion_init)
            self.fusion_paths[key] = path
        if pretrained_base is not None:
            load_pretrained(self.base, pretrained_base, 'FeatureReuseNet.pretrained_base',
                            f'a stage-1 checkpoint of {base["type"]}')

    needs_reuse_feat = True  # the reused feature is an input of every fusion

    @property
    def supports_tiling(self):
        """Whether the base arch can be restored in tiles (``restoration/tiling.py``); the fusions are local."""
        return getattr(self.base, 'supports_tiling', False)

    def inference_bytes_per_pixel(self):
        """The base arch's peak memory per HR output pixel (``restoration/memory.py``) plus the reused feature."""
        return generator_bytes_per_pixel(self.base) + 4 * self.reuse_channels

    def _fuse_input(self, key, reuse_feat, module, args):
        return (self.fusions[key](args[0], reuse_feat), ) + tuple(args[1:])

    def forward(self, lq, context):
        """
        Args:
            lq (Tensor): LR image, shape (B, 3, h, w).
            context (dict): The base arch's context plus ``reuse_feat`` (B, reuse_channels, H, W).

        Returns:
            Tensor: The base arch's output, e.g. SR of shape (B, 3, 4h, 4w).
        """
        handles = [
            self.base.get_submodule(path).register_forward_pre_hook(
                functools.partial(self._fuse_input, key, context['reuse_feat']))
            for key, path in self.fusion_paths.items()
        ]
        try:
            return self.base(lq, context)
        finally:
            for handle in handles:
                handle.remove()
