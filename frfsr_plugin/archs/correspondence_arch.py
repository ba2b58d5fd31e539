"""Correspondence generation: patch matching, flows, deformable-conv pre-offsets and reference VGG19 features."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.archs.vgg_features import VGG19Features
from frfsr_plugin.ops.flow import flow_to_pre_offsets, flow_warp, index_to_flow, upscale_flow
from frfsr_plugin.ops.patch_match import DEFAULT_MAX_CORR_ELEMENTS, PATCH_SIZE, match_patches, match_patches_direct
from frfsr_plugin.utils.errors import InputSizeError, OptionError

REF_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1')  # full, half and quarter resolution of the HR image
LEVEL_SCALES = (4, 2, 1)  # size of each level relative to the matching grid (LR size)
MATCHERS = {'fast': match_patches, 'direct': match_patches_direct}


@ARCH_REGISTRY.register()
class FRFSRCorrespondence(torch.nn.Module):
    """Correspondence module shared by FRFSR and C2-Matching restoration networks (frozen, never trained).

    It matches every 3x3 patch of the LR-side encoder features against all 3x3 patches of the Ref-side features
    (cosine similarity, argmax), turns the matches into flows at three scales and 3x3 deformable-conv pre-offsets,
    and extracts and flow-warps the Ref's VGG19 relu1_1 / relu2_1 / relu3_1 features.

    Args:
        pretrained (str | bool): Local VGG19 ImageNet weights, or False for random init (tests only).
        max_corr_elements (int): Memory budget of one correlation chunk, in elements. Default: 2**29 (2 GiB fp32).
        matcher (str): ``'fast'`` (shifted per-pixel products, about 9x fewer multiply-adds) or ``'direct'`` (the
            original patch-vector products); same matches up to float rounding. Default: ``'fast'``.
    """

    def __init__(self, pretrained=None, max_corr_elements=DEFAULT_MAX_CORR_ELEMENTS, matcher='fast'):
        super().__init__()
        if matcher not in MATCHERS:
            raise OptionError(f'FRFSRCorrespondence: matcher must be one of {sorted(MATCHERS)}, got {matcher!r}.')
        self.match = MATCHERS[matcher]
        self.max_corr_elements = int(max_corr_elements)
        self.vgg = VGG19Features(REF_LAYERS, pretrained, owner=type(self).__name__)

    def forward(self, feat_lq, feat_ref, img_ref, max_corr_elements=None):
        """
        Args:
            feat_lq (Tensor): Encoder features of the upsampled LR, shape (B, C, h, w).
            feat_ref (Tensor): Encoder features of the Ref, shape (B, C, h, w) (the Ref has the HR size).
            img_ref (Tensor): Reference image, shape (B, 3, 4h, 4w).
            max_corr_elements (int | None): Memory budget of this call's correlation chunks; None: the module's
                ``max_corr_elements``. Default: None.

        Returns:
            dict: with keys
                ``pre_offsets``: tuple of 3 tensors (B, 18, s h, s w) for s = 4, 2, 1;
                ``ref_feats``: tuple of VGG19 relu1_1 (B, 64, 4h, 4w), relu2_1 (B, 128, 2h, 2w), relu3_1 (B, 256, h, w);
                ``warped_ref_feats``: the same features warped by the flows.
        """
        if feat_lq.shape[-2:] != feat_ref.shape[-2:] or img_ref.shape[-2:] != tuple(4 * s for s in feat_lq.shape[-2:]):
            raise InputSizeError(
                'FRFSRCorrespondence needs a Ref of exactly the HR size (pad LR and Ref to a common size '
                f'first); got encoder features {tuple(feat_lq.shape[-2:])} / {tuple(feat_ref.shape[-2:])} '
                f'and Ref {tuple(img_ref.shape[-2:])}.')
        budget = self.max_corr_elements if max_corr_elements is None else max_corr_elements
        max_idx, _ = self.match(feat_lq, feat_ref, budget)
        flow = index_to_flow(max_idx, ref_grid_width=feat_ref.shape[-1] - PATCH_SIZE + 1)
        vgg = self.vgg(img_ref)
        ref_feats = tuple(vgg[name] for name in REF_LAYERS)
        flows = tuple(upscale_flow(flow, scale) for scale in LEVEL_SCALES)
        return {
            'pre_offsets': tuple(flow_to_pre_offsets(f, s) for f, s in zip(flows, LEVEL_SCALES)),
            'ref_feats': ref_feats,
            'warped_ref_feats': tuple(flow_warp(feat, f) for feat, f in zip(ref_feats, flows)),
        }
