"""The reference pipeline: the frozen networks of a RefSR model and the one path from a batch to its SR.

A batch (LR ``lq`` (B, 3, h, w), its PIL-bicubic ``lq_up`` (B, 3, 4h, 4w) and ``ref``: zero-padded to the HR canvas
(B, 3, 4h, 4w) in the papers' protocol, or a reference of its own size (B, 3, H_r, W_r), or a list of those, a
reference set) is restored in two steps, by everyone alike (training, ``basicsr test``, tiles, ``frfsr infer`` and
the tools):

1. :meth:`ReferencePipeline.reference_context`: the frozen reference networks, once per canvas and without
   gradients: the contrastive encoder on (LR-up, Ref) (``network_extractor``), patch matching, flows, pre-offsets
   and VGG19 Ref features (``network_map``) and the SIFE feature of the LR (``network_sife``, optional);
2. :meth:`ReferencePipeline.restore`: the restoration networks on the canvas or on one tile of it: the frozen
   stage-1 network Net1 (two-stage models) with its reused feature taken by a hook, then the generator with that
   feature as ``context['reuse_feat']``. It returns a :class:`Restoration` and keeps nothing.

:meth:`ReferencePipeline.super_resolve` does both, the second optionally on overlapping tiles (``tiling.py``).
"""
from typing import NamedTuple, Optional

import torch

from frfsr_plugin.archs.arch_util import HOOK_PORTS, bare_network, captured_feature, get_submodule_checked
from frfsr_plugin.archs.correspondence_arch import MATCHES_KEY
from frfsr_plugin.restoration.tiling import DEFAULT_TILE_OVERLAP, check_supports_tiling, restore_in_tiles
from frfsr_plugin.utils.errors import OptionError
from frfsr_plugin.utils.frozen_networks import build_frozen_network, load_frozen_weights
from frfsr_plugin.utils.speed import autocast_context, parse_speed_options

STAGE1_CHECKPOINT = 'the feature reuse framework needs the stage-1 checkpoint (net_g_*.pth of a stage-1 run).'
# the frozen reference networks: options key -> arch of the plugin
REFERENCE_NETWORKS = {
    'network_extractor': 'FRFSRContrastiveEncoder',
    'network_map': 'FRFSRCorrespondence',
    'network_sife': 'FRFSRSIFENet'
}


def random_reference_network_options(**extra):
    """Options sections of the frozen reference networks with random weights (``pretrained: false``).

    For the demo, the tools and the tests: no weights file is needed (nothing can be downloaded), so matching and
    SIFE run with random networks.

    Args:
        **extra (dict): Further options per section, e.g. ``network_sife={'num_feat': 32}``.

    Returns:
        dict: ``network_extractor``, ``network_map`` and ``network_sife`` sections of an options YAML.
    """
    return {key: {'type': arch, 'pretrained': False, **extra.get(key, {})} for key, arch in REFERENCE_NETWORKS.items()}


def build_reference_networks(opt, device='cpu', owner='the reference pipeline'):
    """The frozen reference networks of an options YAML, in this order (which random initialisations follow):
    ``network_extractor``, ``network_map`` and the optional ``network_sife``.

    Args:
        opt (dict): Parsed options.
        device (torch.device | str): Where the networks run. Default: ``'cpu'``.
        owner (str): Who needs them, named in the error for a missing section.

    Returns:
        tuple[nn.Module, nn.Module, nn.Module | None]: Encoder, correspondence and SIFE (None without it), in eval
        mode without gradients.
    """
    extractor = build_frozen_network(opt, 'network_extractor', device, owner)
    correspondence = build_frozen_network(opt, 'network_map', device, owner)
    return extractor, correspondence, build_frozen_network(opt, 'network_sife', device)


class FeatureReuse(NamedTuple):
    """Where Net1's reused feature is taken: the input or the output of its submodule ``source``."""

    source: str
    port: str = 'output'


def parse_feature_reuse(opt):
    """The ``feature_reuse`` section: ``{source, port, enabled}``.

    Args:
        opt (dict): Parsed options.

    Returns:
        FeatureReuse | None: None with ``enabled: false`` (Net2 is then trained without the reused feature, and Net1
        is not needed).
    """
    reuse_opt = opt.get('feature_reuse') or {}
    enabled = reuse_opt.get('enabled', True)
    if not isinstance(enabled, bool):
        raise OptionError(f'feature_reuse.enabled must be true or false, got {enabled!r}.')
    if not enabled:
        return None
    port = reuse_opt.get('port', 'output')
    if 'source' not in reuse_opt or port not in HOOK_PORTS:
        raise OptionError('feature_reuse needs `source` (a submodule path of network_stage1) and `port` in '
                          f'{HOOK_PORTS}; got {reuse_opt!r}.')
    return FeatureReuse(reuse_opt['source'], port)


class Restoration(NamedTuple):
    """What the restoration networks give for an LR canvas or tile of shape (B, 3, h, w).

    Attributes:
        sr (Tensor): The generator's SR, (B, 3, 4h, 4w), float32.
        sr_stage1 (Tensor | None): Net1's SR, (B, 3, 4h, 4w), for two-stage models.
        reuse_feat (Tensor | None): Net1's reused feature as the generator received it, e.g. (B, 64, 4h, 4w) for
            FRFSR; None without Net1, and for a canvas restored in tiles (each tile reuses its own).
        matches (SetMatches | None): What each LR patch (h - 2, w - 2) drew from which reference and its best cosine
            similarity (:class:`~frfsr_plugin.ops.reference_set.SetMatches`), from :meth:`ReferencePipeline.
            super_resolve`; None from :meth:`ReferencePipeline.restore`.
    """

    sr: torch.Tensor
    sr_stage1: Optional[torch.Tensor] = None
    reuse_feat: Optional[torch.Tensor] = None
    matches: Optional[tuple] = None


class ReferencePipeline:
    """The frozen networks of a RefSR model, and the one restoration path (see the module docstring).

    Args:
        extractor (nn.Module): Contrastive encoder, ``(lq_up, ref) -> (feat_lq, feat_ref)``, with the branches alone
            as ``encode_lr(lq_up)`` and ``encode_reference(ref)`` (reference sets encode the LR once).
        correspondence (nn.Module): ``(feat_lq, feat_ref, ref, max_corr_elements) -> context``
            (:class:`~frfsr_plugin.archs.correspondence_arch.FRFSRCorrespondence`).
        sife (nn.Module | None): ``lq -> (B, C, h, w)``, fused by the generator; None without SIFE. Default: None.
        stage1 (nn.Module | None): Net1 of the feature reuse framework; None for one-stage models. Default: None.
        feature_reuse (FeatureReuse | None): Where Net1's reused feature is taken; needed with ``stage1``.
        speed (dict | None): Speed options (``utils/speed.py``); ``bf16`` autocasts the restoration networks.

    Attributes:
        extractor, correspondence, sife, stage1: The networks, as given.
    """

    def __init__(self, extractor, correspondence, sife=None, stage1=None, feature_reuse=None, speed=None):
        self.extractor = extractor
        self.correspondence = correspondence
        self.sife = sife
        self.stage1 = stage1
        self.feature_reuse = feature_reuse
        self.speed = speed or parse_speed_options({})
        if stage1 is not None:
            self.reuse_module = get_submodule_checked(stage1, feature_reuse.source, 'feature_reuse.source')

    @classmethod
    def from_options(cls, opt, device='cpu', stage1=False, owner='the reference pipeline'):
        """Build the frozen networks that the options YAML names.

        The reference networks (:func:`build_reference_networks`) come first, then, for two-stage models, Net1 from
        ``network_stage1``, loaded strictly from ``path.pretrain_network_stage1`` (``path.param_key_stage1``, default
        ``params``); Net1 is skipped with ``feature_reuse.enabled: false``.

        Args:
            opt (dict): Parsed options.
            device (torch.device | str): Where the networks run. Default: ``'cpu'``.
            stage1 (bool): Whether the model is two-stage (the feature reuse framework). Default: False.
            owner (str): Who needs the networks, named in the error for a missing section.

        Returns:
            ReferencePipeline
        """
        networks = build_reference_networks(opt, device, owner)
        feature_reuse = parse_feature_reuse(opt) if stage1 else None
        net1 = None
        if feature_reuse is not None:
            net1 = build_frozen_network(opt, 'network_stage1', device, owner)
            load_frozen_weights(net1, opt, 'stage1', STAGE1_CHECKPOINT)
        return cls(*networks, net1, feature_reuse, parse_speed_options(opt))

    @property
    def sife_channels(self):
        """Channels of the SIFE feature in the context (0 without SIFE)."""
        return 0 if self.sife is None else bare_network(self.sife).out_channels

    def restoration_networks(self, generator):
        """The networks :meth:`restore` runs (Net1, then the generator), without DDP or torch.compile wrappers."""
        return tuple(bare_network(net) for net in (self.stage1, generator) if net is not None)

    def check_generator(self, generator):
        """Stop with one line when ``generator`` needs Net1's reused feature but this pipeline has no Net1."""
        net = bare_network(generator)
        if self.stage1 is None and getattr(net, 'needs_reuse_feat', False):
            raise OptionError(f'network_g: {type(net).__name__} needs the reused feature of Net1, but there is none '
                              '(feature_reuse.enabled: false, or a one-stage model); use a one-stage arch such as '
                              'FRFSRNet or enable feature reuse.')

    @torch.no_grad()
    def reference_context(self, lq, lq_up, ref, max_corr_elements=None):
        """The context of the restoration networks for one canvas; frozen networks, no gradients.

        Args:
            lq (Tensor): LR, (B, 3, h, w).
            lq_up (Tensor): PIL-bicubic x4 of ``lq``, (B, 3, 4h, 4w).
            ref (Tensor | Sequence[Tensor]): Reference zero-padded to the HR canvas, (B, 3, 4h, 4w), or of its own size
                (B, 3, H_r, W_r), multiples of 4; or a list of such references, a reference set.
            max_corr_elements (int | None): Matching chunk budget; None: the correspondence module's. Default: None.

        Returns:
            dict: ``pre_offsets``, ``ref_feats``, ``warped_ref_feats`` (tuples over full / half / LR scale; see
            :class:`~frfsr_plugin.archs.correspondence_arch.FRFSRCorrespondence`), the matches under ``'matches'``,
            and ``sife_feat`` (B, C, h, w) when there is a SIFE network.
        """
        if torch.is_tensor(ref):
            context = self.correspondence(*self.extractor(lq_up, ref), ref, max_corr_elements)
        else:  # the LR encoded once, each reference alone
            feat_refs = [self.extractor.encode_reference(image) for image in ref]
            context = self.correspondence(self.extractor.encode_lr(lq_up), feat_refs, list(ref), max_corr_elements)
        if self.sife is not None:
            context['sife_feat'] = self.sife(lq)
        return context

    def _forward(self, net, lq, context):
        """``net(lq, context)`` under bf16 autocast when ``speed.bf16`` is set; the SR is returned in float32."""
        with autocast_context(lq.device, self.speed):
            return net(lq, context).float()

    def restore(self, generator, lq, context):
        """The restoration networks on an LR canvas or tile: Net1 (if any, without gradients), then ``generator``.

        Gradients reach ``generator`` when the caller enables them (training).

        Args:
            generator (nn.Module): ``net_g`` (or its EMA), possibly wrapped in DDP or torch.compile.
            lq (Tensor): LR, (B, 3, h, w).
            context (dict): :meth:`reference_context` of the canvas, or a tile's crop of it.

        Returns:
            Restoration: ``sr``, ``sr_stage1`` and ``reuse_feat``.
        """
        if self.stage1 is None:
            return Restoration(self._forward(generator, lq, context))
        with torch.no_grad(), captured_feature(self.reuse_module, self.feature_reuse.port) as captured:
            sr_stage1 = self._forward(self.stage1, lq, context)
        if not captured:
            raise OptionError(f'feature_reuse.source: {self.feature_reuse.source!r} of {type(self.stage1).__name__} '
                              'did not run in its forward.')
        reuse_feat = captured[-1]
        return Restoration(self._forward(generator, lq, dict(context, reuse_feat=reuse_feat)), sr_stage1, reuse_feat)

    def super_resolve(self,
                      generator,
                      lq,
                      lq_up,
                      ref,
                      tile_size=None,
                      tile_overlap=DEFAULT_TILE_OVERLAP,
                      max_corr_elements=None):
        """:meth:`reference_context` of the canvas, then :meth:`restore` on it or on overlapping tiles of it.

        Args:
            generator (nn.Module): ``net_g`` (or its EMA).
            lq (Tensor): LR canvas, (B, 3, h, w).
            lq_up (Tensor): Its PIL-bicubic x4, (B, 3, 4h, 4w).
            ref (Tensor | Sequence[Tensor]): Reference(s), as :meth:`reference_context` takes them.
            tile_size (int | None): Largest tile in LR pixels (``tiling.py``); None: the whole canvas. Default: None.
            tile_overlap (int): LR pixels shared by neighbouring tiles. Default: 16.
            max_corr_elements (int | None): Matching chunk budget; None: the correspondence module's. Default: None.

        Returns:
            Restoration: For the whole canvas (in tiles: blended SR images, no reused feature), with the matches.
        """
        context = self.reference_context(lq, lq_up, ref, max_corr_elements)
        matches = context.pop(MATCHES_KEY)  # the networks' context is the frozen networks' tensors on the LR grid
        if tile_size is None:
            return self.restore(generator, lq, context)._replace(matches=matches)
        for net in self.restoration_networks(generator):
            check_supports_tiling(net)

        def restore_tile(tile_lq, tile_context):  # the images of a tile, to be blended
            images = self.restore(generator, tile_lq, tile_context)._asdict()
            return {name: image for name, image in images.items() if name != 'reuse_feat' and image is not None}

        return Restoration(**restore_in_tiles(restore_tile, lq, context, tile_size, tile_overlap), matches=matches)
