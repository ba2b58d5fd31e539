"""Correspondence generation: patch matching, flows, deformable-conv pre-offsets and reference VGG19 features."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.archs.vgg_features import VGG19Features
from frfsr_plugin.ops.flow import flow_to_pre_offsets, flow_warp, index_to_flow, upscale_flow
from frfsr_plugin.ops.patch_match import DEFAULT_MAX_CORR_ELEMENTS, match_patches, match_patches_direct
from frfsr_plugin.ops.ref_window import on_lr_grid
from frfsr_plugin.ops.reference_set import layout_references, merge_matches, place_on_canvas
from frfsr_plugin.utils.errors import InputSizeError, OptionError

REF_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1')  # full, half and quarter resolution of the HR image
LEVEL_SCALES = (4, 2, 1)  # size of each level relative to the matching grid (LR size)
MATCHERS = {'fast': match_patches, 'direct': match_patches_direct}
MATCHES_KEY = 'matches'  # the context's SetMatches: what the LR drew from which reference, for users, not networks


@ARCH_REGISTRY.register()
class FRFSRCorrespondence(torch.nn.Module):
    """Correspondence module shared by FRFSR and C2-Matching restoration networks (frozen, never trained).

    It matches every 3x3 patch of the LR-side encoder features against all 3x3 patches of the Ref-side features
    (cosine similarity, argmax), turns the matches into flows at three scales and 3x3 deformable-conv pre-offsets,
    and extracts and flow-warps the Ref's VGG19 relu1_1 / relu2_1 / relu3_1 features. The Ref may have any size, and
    may be a set of references, each matched and encoded at its own size and laid out on one canvas
    (``ops/reference_set.py``); flows and pre-offsets point from the LR grid into that canvas.

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
            feat_ref (Tensor | Sequence[Tensor]): Encoder features of the Ref, shape (B, C, h_r, w_r), or of each
                reference of a set. A Ref of the HR size (h_r, w_r) = (h, w) is the papers' padded protocol; any other
                size, and sets, are matched on their own grids (``ops/reference_set.py``).
            img_ref (Tensor | Sequence[Tensor]): The Ref image(s), shape (B, 3, 4 h_r, 4 w_r).
            max_corr_elements (int | None): Memory budget of this call's correlation chunks; None: the module's
                ``max_corr_elements``. Default: None.

        Returns:
            dict: with keys
                ``pre_offsets``: tuple of 3 tensors (B, 18, s h, s w) for s = 4, 2, 1, from the LR grid into the
                reference canvas;
                ``ref_feats``: VGG19 relu1_1 (64 channels), relu2_1 (128) and relu3_1 (256) of the reference canvas;
                each a tensor (B, C, s h, s w) when the canvas has the LR grid's size, else a
                :class:`~frfsr_plugin.ops.ref_window.RefWindow` of the canvas (B, C, s H, s W) seen from the LR grid;
                ``warped_ref_feats``: the canvas features warped by the flows onto the LR grid, (B, C, s h, s w);
                :data:`MATCHES_KEY`: the :class:`~frfsr_plugin.ops.reference_set.SetMatches` of the LR patches.
        """
        feat_refs = [feat_ref] if torch.is_tensor(feat_ref) else list(feat_ref)
        img_refs = [img_ref] if torch.is_tensor(img_ref) else list(img_ref)
        if len(feat_refs) != len(img_refs) or any(
                tuple(img.shape[-2:]) != tuple(4 * side for side in feat.shape[-2:])
                for feat, img in zip(feat_refs, img_refs)):
            raise InputSizeError(
                'FRFSRCorrespondence needs each Ref image at 4x its encoder features (a multiple of 4 in size); got '
                f'features {[tuple(feat.shape[-2:]) for feat in feat_refs]} and Refs '
                f'{[tuple(img.shape[-2:]) for img in img_refs]}.')
        budget = self.max_corr_elements if max_corr_elements is None else max_corr_elements
        layout = layout_references([feat.shape[-2:] for feat in feat_refs])
        matches = merge_matches([self.match(feat_lq, feat, budget) for feat in feat_refs], layout)
        flow = index_to_flow(matches.index, layout.patch_grid_width)
        vgg = [self.vgg(img) for img in img_refs]
        ref_feats = tuple(
            place_on_canvas([feats[name] for feats in vgg], layout, scale)
            for name, scale in zip(REF_LAYERS, LEVEL_SCALES))
        flows = tuple(upscale_flow(flow, scale) for scale in LEVEL_SCALES)
        height, width = feat_lq.shape[-2:]
        return {
            'pre_offsets': tuple(flow_to_pre_offsets(f, s) for f, s in zip(flows, LEVEL_SCALES)),
            'ref_feats': tuple(on_lr_grid(feat, (s * height, s * width)) for feat, s in zip(ref_feats, LEVEL_SCALES)),
            'warped_ref_feats': tuple(flow_warp(feat, f) for feat, f in zip(ref_feats, flows)),
            MATCHES_KEY: matches,
        }
