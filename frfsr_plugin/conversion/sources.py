"""The public checkpoint formats we convert: one :class:`CheckpointSource` per ``--source`` of the converter."""
from dataclasses import dataclass, field

from frfsr_plugin.archs.c2matching_arch import SCALES as C2_SCALES
from frfsr_plugin.archs.c2matching_arch import C2MatchingRestorationNet
from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.archs.frfsr_arch import FRFSRNet
from frfsr_plugin.archs.sife_arch import FRFSRSIFENet
from frfsr_plugin.archs.vgg_features import IMAGENET_MEAN, IMAGENET_STD
from frfsr_plugin.conversion.renames import Rename, renamed_under, unchanged
from frfsr_plugin.utils.errors import OptionError


@dataclass(frozen=True)
class CheckpointSource:
    """A public checkpoint format and the network of ours it converts into.

    Args:
        name (str): Value of ``--source``.
        summary (str): What the source checkpoint is (shown by ``--help``).
        network (type): Our network class; built with its defaults, ``fixed_options`` and the user's options.
        yaml_key (str): Option that reads the converted file.
        namings (dict[str, tuple[Rename]]): Known namings of the source (name -> rules source -> ours); the one that
            renames most keys of a file is used, the first on ties.
        fixed_options (dict): Constructor arguments the tool sets itself (e.g. ``pretrained: False``).
        constant_buffers (dict[str, tuple]): Source keys holding constants that our network hard-codes; when present
            they must have these values and are then dropped.
    """
    name: str
    summary: str
    network: type
    yaml_key: str
    namings: dict
    fixed_options: dict = field(default_factory=dict)
    constant_buffers: dict = field(default_factory=dict)


def _c2matching_encoder_namings():
    branches = ('feature_extraction_image1', 'feature_extraction_image2')
    return {'c2matching': unchanged(*(f'{branch}.model' for branch in branches))}


def _encoder_constant_buffers():
    """C2-Matching's ``ContrasExtractorLayer`` saves its ImageNet normalisation as buffers ``mean`` and ``std``."""
    return {
        f'{branch}.{name}': values
        for branch in ('feature_extraction_image1', 'feature_extraction_image2')
        for name, values in (('mean', IMAGENET_MEAN), ('std', IMAGENET_STD))
    }


def _rrdb_namings():
    """BasicSR's RRDBNet names, and the original ESRGAN / mmsr names of the same layers."""
    esrgan_rrdb = tuple(Rename(f'RDB{index}', f'rdb{index}') for index in (1, 2, 3))
    esrgan = (Rename('RRDB_trunk.#', 'body.#', esrgan_rrdb), Rename('trunk_conv', 'conv_body'),
              Rename('upconv1', 'conv_up1'), Rename('upconv2', 'conv_up2'), Rename('HRconv', 'conv_hr'))
    basicsr = unchanged('conv_first', 'body', 'conv_body', 'conv_up1', 'conv_up2', 'conv_hr', 'conv_last')
    return {'basicsr': basicsr, 'esrgan': esrgan + unchanged('conv_first', 'conv_last')}


_PLAIN_RESBLOCK = unchanged('conv1', 'conv2')


def _texture_alignment(source, target):
    """The FAM of one stage in mmsr naming: ``<source>_offset_conv1/2`` and the DCNv2 ``<source>_dyn_agg`` become our
    :class:`~frfsr_plugin.archs.alignment.TextureAlignment` ``<target>.offset_conv1/2`` and ``<target>.dcn``."""
    return [
        Rename(f'{source}_offset_conv1', f'{target}.offset_conv1'),
        Rename(f'{source}_offset_conv2', f'{target}.offset_conv2'),
        Rename(f'{source}_dyn_agg', f'{target}.dcn')
    ]


def _c2matching_restoration_namings():
    """C2-Matching's ``RestorationNet`` (``mmsr/models/archs/ref_restoration_arch.py``)."""
    aggregation = []
    for scale, _, _ in C2_SCALES:
        aggregation += _texture_alignment(scale, f'align.{scale}') + [
            Rename(f'head_{scale}.0', f'head.{scale}'),
            Rename(f'body_{scale}.#', f'body.{scale}.#', _PLAIN_RESBLOCK),
        ]
    aggregation += [
        Rename('tail_small.0', 'upsample.small'),
        Rename('tail_medium.0', 'upsample.medium'),
        Rename('tail_large', 'tail')
    ]
    content = (Rename('conv_first', 'conv_first'), Rename('body.#', 'content_body.#', _PLAIN_RESBLOCK))
    return {'mmsr': renamed_under('content_extractor', content) + renamed_under('dyn_agg_restore', aggregation)}


# FRFSR U-Net stages: (our stage name, official direction, official scale, official DDF block number)
_FRFSR_STAGES = (('down_large', 'down', 'large', 1), ('down_medium', 'down', 'medium', 2),
                 ('up_small', 'up', 'small', 3), ('up_medium', 'up', 'medium', 4), ('up_large', 'up', 'large', 5))
_DDF_PACK = (Rename('spatial_branch.0', 'spatial_branch'), Rename('channel_branch', 'channel_branch'))
_RESIDUAL_DDF_BLOCK = (Rename('conv1', 'ddf1', _DDF_PACK), Rename('conv2', 'ddf2', _DDF_PACK))
_ESA_RESBLOCK = _PLAIN_RESBLOCK + (Rename('ESA', 'esa'), )


def _frfsr_official_namings():
    """Official FRFSR ``SwinUnetv3RestorationNet`` (Yi-Yang355/FRFSR, ``mmsr/models/archs/ref_restoration_arch.py``).

    Per stage the official net has flat modules ``<stage>_offset_conv1/2``, ``<stage>_dyn_agg`` (DCNv2),
    ``<direction>_head_<scale>`` (conv + LReLU), ``ddf_block_<n>`` and ``<direction>_body_<scale>``; ours groups them
    into ``align_<stage>`` (:class:`TextureAlignment`) and ``aggregate_<stage>`` (:class:`TextureAdaptiveAggregation`).
    """
    restoration = [Rename('unet_head', 'conv_first'), Rename('high_q_conv1', 'sife_fusion')]
    for stage, direction, scale, ddf_number in _FRFSR_STAGES:
        restoration += _texture_alignment(stage, f'align_{stage}') + [
            Rename(f'{direction}_head_{scale}.0', f'aggregate_{stage}.head'),
            Rename(f'ddf_block_{ddf_number}.#', f'aggregate_{stage}.ddf_blocks.#', _RESIDUAL_DDF_BLOCK),
            Rename(f'{direction}_body_{scale}.#', f'aggregate_{stage}.body.#', _ESA_RESBLOCK),
        ]
    restoration += [
        Rename('down_tail_large', 'down_large'),
        Rename('down_tail_medium', 'down_medium'),
        Rename('up_tail_small.0', 'up_small'),
        Rename('up_tail_medium.0', 'up_medium'),
        Rename('up_tail_large', 'tail')
    ]
    return {'mmsr': renamed_under('dyn_agg_restore', restoration)}


SOURCES = {
    source.name: source
    for source in (
        CheckpointSource(
            'c2matching-encoder',
            "C2-Matching's released contrastive texture encoder feature_extraction.pth (student ContrasExtractorSep; "
            'plain state dict, `module.` prefixes allowed; its ImageNet mean/std buffers are checked and dropped)',
            FRFSRContrastiveEncoder,
            'network_extractor.pretrained',
            _c2matching_encoder_namings(),
            fixed_options={'pretrained': False},
            constant_buffers=_encoder_constant_buffers()),
        CheckpointSource(
            'basicsr-rrdb', "BasicSR's ESRGAN RRDBNet x4 weights ({'params': ...} or params_ema, e.g. "
            'ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth), or the original ESRGAN / mmsr naming '
            '(RRDB_trunk.*.RDB1.conv1, trunk_conv, upconv1, HRconv, ...)',
            FRFSRSIFENet,
            'network_sife.pretrained',
            _rrdb_namings(),
            fixed_options={'pretrained': False}),
        CheckpointSource(
            'c2matching-restoration', "C2-Matching's restoration generator RestorationNet (plain state dict, e.g. "
            'c2_matching_restoration_mse.pth / restoration_gan.pth)', C2MatchingRestorationNet,
            'path.pretrain_network_g of options/c2matching_stage1.yml', _c2matching_restoration_namings()),
        CheckpointSource(
            'frfsr-official', 'the official FRFSR stage-1 generator SwinUnetv3RestorationNet (Yi-Yang355/FRFSR, mmsr '
            'naming, plain state dict)', FRFSRNet, 'path.pretrain_network_g of options/frfsr_stage1.yml',
            _frfsr_official_namings()),
    )
}


def get_source(name):
    """The :class:`CheckpointSource` called ``name``."""
    if name not in SOURCES:
        raise OptionError(f'unknown checkpoint source {name!r}; choose from {", ".join(SOURCES)}.')
    return SOURCES[name]
