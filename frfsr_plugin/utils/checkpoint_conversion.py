"""Conversion of public checkpoints into this plugin's parameter names (logic of ``tools/convert_checkpoint.py``).

Every supported source is one :class:`CheckpointSource`: a table of :class:`Rename` rules from the source's
parameter names to ours, the network of ours it feeds and the YAML key that reads the converted file. The inverse map
(our names -> the source's, :func:`to_source_naming`) is derived from the same table, so the two directions cannot
drift apart.

Layouts were checked against the original code; no tensor needs permuting:

* DCNv2 (C2-Matching, official FRFSR): ``conv_offset_mask`` outputs ``G * 27`` channels; the original code chunks
  them in three and concatenates the first two as offsets, i.e. channels ``[0, 18 G)`` are the offsets in
  (group, tap, (dy, dx)) order and ``[18 G, 27 G)`` the mask logits in (group, tap) order, exactly what
  :class:`~frfsr_plugin.ops.deform_conv.PreOffsetModulatedDeformConv` and ``torchvision.ops.deform_conv2d`` expect.
* DDF (official FRFSR): the channel branch's ``C * 9`` outputs are read channel-major (``(C, 3, 3)``) and the spatial
  branch gives the 9 taps row-major, as in :class:`~frfsr_plugin.archs.aggregation.DDFPack`.
"""
import os
import os.path as osp
import tempfile
from dataclasses import dataclass, field

import torch
import yaml

from frfsr_plugin.archs.c2matching_arch import SCALES as C2_SCALES
from frfsr_plugin.archs.c2matching_arch import C2MatchingRestorationNet
from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.archs.frfsr_arch import FRFSRNet
from frfsr_plugin.archs.sife_arch import FRFSRSIFENet
from frfsr_plugin.archs.vgg_features import IMAGENET_MEAN, IMAGENET_STD
from frfsr_plugin.utils.errors import BadFileError, MissingFileError, OptionError
from frfsr_plugin.utils.pretrained import PretrainedWeightsError, load_state_dict_checked, read_state_dict

INDEX = '#'  # template segment matching any module index (a run of digits), copied to the other side in order
DDP_PREFIX = 'module.'


@dataclass(frozen=True)
class Rename:
    """Rename the key prefix ``source`` to ``target``; ``inner`` renames the rest of the key (empty: rest unchanged).

    Prefixes are dotted templates whose :data:`INDEX` segments match any module index, e.g.
    ``Rename('RRDB_trunk.#', 'body.#', inner)`` turns ``RRDB_trunk.3.RDB1.conv1.weight`` into ``body.3.`` followed by
    ``inner`` applied to ``RDB1.conv1.weight``.
    """
    source: str
    target: str
    inner: tuple = ()

    def __post_init__(self):
        if self.source.split('.').count(INDEX) != self.target.split('.').count(INDEX):
            raise ValueError(f'Rename {self.source!r} -> {self.target!r}: both sides need the same index segments.')

    def inverted(self):
        """The rename from ``target`` back to ``source``."""
        return Rename(self.target, self.source, tuple(rename.inverted() for rename in self.inner))

    def apply(self, segments):
        """Rename a key given as its list of segments; None if ``source`` is not a prefix (or ``inner`` fails)."""
        pattern = self.source.split('.')
        head = segments[:len(pattern)]
        if len(head) < len(pattern) or not all(segment.isdigit() if want == INDEX else segment == want
                                               for want, segment in zip(pattern, head)):
            return None
        indices = iter(segment for want, segment in zip(pattern, head) if want == INDEX)
        target = [next(indices) if segment == INDEX else segment for segment in self.target.split('.')]
        rest = segments[len(pattern):]
        if self.inner:
            rest = rename_key('.'.join(rest), self.inner)
            if rest is None:
                return None
            rest = rest.split('.')
        return '.'.join(target + rest)


def rename_key(key, renames):
    """Rename ``key`` with the one rule of ``renames`` that matches it.

    Args:
        key (str): Parameter name.
        renames (tuple[Rename]): Rules; at most one may match any key.

    Returns:
        str | None: The new name, or None if no rule matches.
    """
    results = [renamed for renamed in (rename.apply(key.split('.')) for rename in renames) if renamed is not None]
    if len(results) > 1:
        raise ValueError(f'Ambiguous rename table: {key!r} becomes each of {results}.')
    return results[0] if results else None


def _under(prefix, renames):
    """The rules ``renames`` with ``prefix`` added to every source prefix."""
    return tuple(Rename(f'{prefix}.{rename.source}', rename.target, rename.inner) for rename in renames)


def _same(*names):
    """Rules keeping each of ``names`` (and everything below it) unchanged."""
    return tuple(Rename(name, name) for name in names)


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
    return {'c2matching': _same(*(f'{branch}.model' for branch in branches))}


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
    basicsr = _same('conv_first', 'body', 'conv_body', 'conv_up1', 'conv_up2', 'conv_hr', 'conv_last')
    return {'basicsr': basicsr, 'esrgan': esrgan + _same('conv_first', 'conv_last')}


_PLAIN_RESBLOCK = _same('conv1', 'conv2')


def _c2matching_restoration_namings():
    """C2-Matching's ``RestorationNet`` (``mmsr/models/archs/ref_restoration_arch.py``)."""
    aggregation = []
    for scale, _, _ in C2_SCALES:
        aggregation += [
            Rename(f'{scale}_offset_conv1', f'align.{scale}.offset_conv1'),
            Rename(f'{scale}_offset_conv2', f'align.{scale}.offset_conv2'),
            Rename(f'{scale}_dyn_agg', f'align.{scale}.dcn'),
            Rename(f'head_{scale}.0', f'head.{scale}'),
            Rename(f'body_{scale}.#', f'body.{scale}.#', _PLAIN_RESBLOCK),
        ]
    aggregation += [
        Rename('tail_small.0', 'upsample.small'),
        Rename('tail_medium.0', 'upsample.medium'),
        Rename('tail_large', 'tail')
    ]
    content = (Rename('conv_first', 'conv_first'), Rename('body.#', 'content_body.#', _PLAIN_RESBLOCK))
    return {'mmsr': _under('content_extractor', content) + _under('dyn_agg_restore', aggregation)}


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
        restoration += [
            Rename(f'{stage}_offset_conv1', f'align_{stage}.offset_conv1'),
            Rename(f'{stage}_offset_conv2', f'align_{stage}.offset_conv2'),
            Rename(f'{stage}_dyn_agg', f'align_{stage}.dcn'),
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
    return {'mmsr': _under('dyn_agg_restore', restoration)}


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


def read_checkpoint(path, param_key='params_ema'):
    """Read a plain or BasicSR-style checkpoint and strip DDP's ``module.`` prefixes.

    Args:
        path (str): Checkpoint file.
        param_key (str): Key of the state dict in BasicSR checkpoints; ``'params'`` is used when it is absent and a
            plain state dict when neither is present. Default: ``'params_ema'`` (what BasicSR tests with).

    Returns:
        dict[str, Tensor]: The state dict.
    """
    if not osp.isfile(path):
        raise MissingFileError(f"input checkpoint '{path}' not found.")
    state_dict = read_state_dict(path, param_key=None)
    for key in (param_key, 'params'):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise BadFileError(f"'{path}' is not a network state dict: entries {', '.join(not_tensors[:5])} are not "
                           'tensors (a training state?).')
    return {key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key: value for key, value in state_dict.items()}


def _drop_constant_buffers(source, state_dict, origin):
    """Check the source's constant buffers present in ``state_dict`` and return the dict without them."""
    for key, expected in source.constant_buffers.items():
        value = state_dict.get(key)
        if value is not None and (value.numel() != len(expected) or not torch.allclose(
                value.double().flatten(), torch.tensor(expected, dtype=torch.float64))):
            raise BadFileError(f"{origin}: '{key}' is {value.flatten().tolist()}, but "
                               f'{source.network.__name__} hard-codes {list(expected)}; it cannot hold these weights.')
    return {key: value for key, value in state_dict.items() if key not in source.constant_buffers}


def rename_state_dict(source, state_dict, origin='checkpoint'):
    """Rename a source state dict to our names (keys no rule matches are kept, so strict loading reports them).

    Args:
        source (CheckpointSource): Format of ``state_dict``.
        state_dict (dict[str, Tensor]): Weights in the source's naming, without ``module.`` prefixes.
        origin (str): Where the weights come from, for messages.

    Returns:
        tuple[dict[str, Tensor], str]: The renamed state dict and the name of the naming that was recognised.
    """
    state_dict = _drop_constant_buffers(source, state_dict, origin)

    def renamed_count(item):
        return sum(rename_key(key, item[1]) is not None for key in state_dict)

    naming, renames = max(source.namings.items(), key=renamed_count)  # max keeps the first of equal counts
    converted, origins = {}, {}
    for key, value in state_dict.items():
        new_key = rename_key(key, renames) or key
        if new_key in converted:
            raise BadFileError(f"{origin}: '{origins[new_key]}' and '{key}' both become '{new_key}'.")
        converted[new_key], origins[new_key] = value, key
    return converted, naming


def to_source_naming(source, state_dict, naming=None):
    """Inverse of :func:`rename_state_dict`: our names -> the source's (with its constant buffers).

    Args:
        source (CheckpointSource): Target format.
        state_dict (dict[str, Tensor]): Weights of ``source.network``.
        naming (str | None): One of ``source.namings``. Default: the first.

    Returns:
        dict[str, Tensor]: The weights under the source's names.
    """
    renames = tuple(rename.inverted() for rename in source.namings[naming or next(iter(source.namings))])
    converted = {}
    for key, value in state_dict.items():
        new_key = rename_key(key, renames)
        if new_key is None:
            raise KeyError(f'{source.name}: no rename for our parameter {key!r}.')
        converted[new_key] = value
    converted.update({key: torch.tensor(values).view(1, -1, 1, 1) for key, values in source.constant_buffers.items()})
    return converted


def parse_arch_options(items):
    """Parse ``key=value`` items (values as YAML scalars: ``16``, ``false``, ``pytorch``).

    Args:
        items (Sequence[str]): Items from the command line.

    Returns:
        dict: Constructor arguments.
    """
    options = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise OptionError(f'--arch-options: expected key=value, got {item!r} (give INPUT and OUTPUT before '
                              '--arch-options).')
        options[key.strip()] = yaml.safe_load(value)
    return options


def build_target_network(source, arch_options=None):
    """Build ``source.network`` with its default sizes, ``arch_options`` and the fixed options (random init).

    Args:
        source (CheckpointSource): The source whose target network is built.
        arch_options (dict | None): Constructor arguments other than the defaults (e.g. ``{'num_feat': 32}``).

    Returns:
        nn.Module: The network.
    """
    arch_options = dict(arch_options or {})
    name = source.network.__name__
    fixed = sorted(set(arch_options) & set(source.fixed_options))
    if fixed:
        raise OptionError(f'--arch-options: {", ".join(fixed)} of {name} is set by the converter.')
    try:
        return source.network(**arch_options, **source.fixed_options)
    except (TypeError, ValueError) as error:
        raise OptionError(f'--arch-options {arch_options} do not fit {name}: {error}') from error


def _fit_into(network, state_dict, origin):
    """Load ``state_dict`` strictly; on mismatch raise one line naming the keys (plus a hint for shape errors)."""
    own = network.state_dict()
    try:
        load_state_dict_checked(network, state_dict, origin)
    except PretrainedWeightsError as error:
        if any(key in state_dict and state_dict[key].shape != value.shape for key, value in own.items()):
            raise PretrainedWeightsError(f'{error}. If the checkpoint has sizes other than the defaults, give them '
                                         'with --arch-options (e.g. num_feat=32).') from error
        raise


def _save_atomically(obj, path):
    """``torch.save`` to a temporary file next to ``path``, then move it into place (no partial files)."""
    staged = None
    try:
        folder = osp.dirname(osp.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, staged = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.incomplete', dir=folder)
        os.close(handle)
        torch.save(obj, staged)
        os.replace(staged, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        raise BadFileError(f"cannot write the converted checkpoint '{path}': {error}") from error
    finally:
        if staged is not None and osp.exists(staged):
            os.remove(staged)


@dataclass(frozen=True)
class ConversionResult:
    """Summary of a written checkpoint: target network class, recognised source naming, tensor and parameter counts."""
    network: str
    naming: str
    num_tensors: int
    num_params: int


def convert_checkpoint(source_name, input_path, output_path, arch_options=None, param_key='params_ema'):
    """Convert a public checkpoint into a BasicSR checkpoint ``{'params': state_dict}`` of our network.

    The renamed weights are loaded strictly into the target network built with ``arch_options``; the output file is
    written (atomically) only if they fit.

    Args:
        source_name (str): One of :data:`SOURCES`.
        input_path (str): Source checkpoint.
        output_path (str): Converted checkpoint.
        arch_options (dict | None): Non-default constructor arguments of the target network.
        param_key (str): See :func:`read_checkpoint`.

    Returns:
        ConversionResult: What was written.
    """
    source = get_source(source_name)
    network = build_target_network(source, arch_options)
    origin = f"'{input_path}' (--source {source.name})"
    converted, naming = rename_state_dict(source, read_checkpoint(input_path, param_key), origin)
    _fit_into(network, converted, origin)
    params = network.state_dict()
    _save_atomically({'params': params}, output_path)
    return ConversionResult(type(network).__name__, naming, len(params), sum(p.numel() for p in network.parameters()))
