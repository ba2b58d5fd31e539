"""tools/convert_checkpoint.py: public checkpoints -> our parameter names, loaded strictly, same outputs; bad inputs.

The ``Official*`` modules below rebuild the original networks' parameter names, shapes and forward passes from their
sources (C2-Matching ``ContrasExtractorSep`` and ``RestorationNet``, ESRGAN's ``RRDBNet``, official FRFSR's
``SwinUnetv3RestorationNet``), with torchvision's deformable conv and our reference DDF formula in place of the CUDA
ops. They check the rename tables independently of the tables themselves.
"""
import importlib.util
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from basicsr.archs.rrdbnet_arch import RRDBNet
from torch import nn
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops import deform_conv2d

from frfsr_plugin.archs.contrastive_encoder_arch import FRFSRContrastiveEncoder
from frfsr_plugin.archs.correspondence_arch import FRFSRCorrespondence
from frfsr_plugin.conversion.converter import (build_target_network, convert_checkpoint, parse_arch_options,
                                               to_source_naming)
from frfsr_plugin.conversion.renames import Rename, rename_key
from frfsr_plugin.conversion.sources import SOURCES
from frfsr_plugin.ops.ddf import ddf_mul_unfold
from frfsr_plugin.utils.checkpoint import PretrainedWeightsError
from frfsr_plugin.utils.errors import BadFileError, OptionError

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'convert_checkpoint.py'


def conv(c_in, c_out, kernel=3):
    return nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2)


def stack(block, count, *args):
    return nn.Sequential(*(block(*args) for _ in range(count)))


def lrelu(x, slope=0.1):
    return F.leaky_relu(x, slope)


class OfficialContrasExtractorLayer(nn.Module):
    """C2-Matching: torchvision VGG16 ``features[:11]`` under VGG layer names, plus ImageNet mean/std buffers."""

    def __init__(self):
        super().__init__()
        names = ('conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1', 'conv2_1', 'relu2_1', 'conv2_2', 'relu2_2',
                 'pool2', 'conv3_1')
        self.model = nn.Sequential(OrderedDict(zip(names, make_layers(cfgs['D'])[:11])))
        self.register_buffer('mean', torch.empty(1, 3, 1, 1))
        self.register_buffer('std', torch.empty(1, 3, 1, 1))

    def forward(self, img):
        return self.model((img - self.mean) / self.std)


class OfficialContrasExtractorSep(nn.Module):

    def __init__(self):
        super().__init__()
        self.feature_extraction_image1 = OfficialContrasExtractorLayer()
        self.feature_extraction_image2 = OfficialContrasExtractorLayer()

    def forward(self, image1, image2):
        return self.feature_extraction_image1(image1), self.feature_extraction_image2(image2)


class OfficialResidualDenseBlock(nn.Module):
    """ESRGAN ``ResidualDenseBlock_5C``."""

    def __init__(self, nf, gc):
        super().__init__()
        for index in range(1, 5):
            setattr(self, f'conv{index}', conv(nf + (index - 1) * gc, gc))
        self.conv5 = conv(nf + 4 * gc, nf)

    def forward(self, x):
        features = [x]
        for index in range(1, 5):
            features.append(lrelu(getattr(self, f'conv{index}')(torch.cat(features, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(features, 1))


class OfficialRRDB(nn.Module):

    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = (OfficialResidualDenseBlock(nf, gc) for _ in range(3))

    def forward(self, x):
        return x + 0.2 * self.RDB3(self.RDB2(self.RDB1(x)))


class OfficialESRGAN(nn.Module):
    """ESRGAN / mmsr ``RRDBNet`` (in_nc 3, out_nc 3, x4)."""

    def __init__(self, nf=64, nb=23, gc=32):
        super().__init__()
        self.conv_first = conv(3, nf)
        self.RRDB_trunk = stack(OfficialRRDB, nb, nf, gc)
        self.trunk_conv = conv(nf, nf)
        self.upconv1, self.upconv2, self.HRconv = conv(nf, nf), conv(nf, nf), conv(nf, nf)
        self.conv_last = conv(nf, 3)

    def forward(self, x):
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        fea = lrelu(self.upconv1(F.interpolate(fea, scale_factor=2, mode='nearest')), 0.2)
        fea = lrelu(self.upconv2(F.interpolate(fea, scale_factor=2, mode='nearest')), 0.2)
        return self.conv_last(lrelu(self.HRconv(fea), 0.2))


class OfficialDCN(nn.Module):
    """DCNv2 ``DCN_sep_pre_multi_offset``: kernel, bias and the offset/mask conv with G * 3 * 9 outputs."""

    def __init__(self, channels, groups):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels))
        self.conv_offset_mask = conv(channels, groups * 27)

    def forward(self, x, offset_feat, pre_offset):
        """``pre_offset`` (B, 18, H, W), (dy, dx) per tap: the original's reordered pre-offset before its repeat."""
        first, second, mask = torch.chunk(self.conv_offset_mask(offset_feat), 3, dim=1)
        offset = torch.cat((first, second), dim=1) + pre_offset.repeat(1, self.groups, 1, 1)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=1, mask=torch.sigmoid(mask))


class OfficialESA(nn.Module):

    def __init__(self, nf):
        super().__init__()
        f = nf // 4
        self.conv1, self.conv_f, self.conv_max = conv(nf, f, 1), conv(f, f, 1), conv(f, f)
        self.conv2, self.conv3, self.conv3_, self.conv4 = nn.Conv2d(f, f, 3, 2, 0), conv(f, f), conv(f,
                                                                                                     f), conv(f, nf, 1)

    def forward(self, x):
        c1_ = self.conv1(x)
        v_max = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        c3 = self.conv3_(F.relu(self.conv3(F.relu(self.conv_max(v_max)))))
        c3 = F.interpolate(c3, x.shape[-2:], mode='bilinear', align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class OfficialResidualBlockNoBN(nn.Module):
    """mmsr ``ResidualBlockNoBN``; FRFSR's adds ``ESA`` (use_ESA defaults to True)."""

    def __init__(self, nf, use_esa):
        super().__init__()
        self.conv1, self.conv2 = conv(nf, nf), conv(nf, nf)
        if use_esa:
            self.ESA = OfficialESA(nf)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        return x + (self.ESA(out) if hasattr(self, 'ESA') else out)


class OfficialDDFPack(nn.Module):
    """ddfnet ``DDFPack`` as in FRFSR (kernel 3, head 1, se_ratio 0.2, no FilterNorm)."""

    def __init__(self, nf):
        super().__init__()
        self.spatial_branch = nn.Sequential(conv(nf, 9, 1))
        self.channel_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv(nf, int(nf * 0.2), 1), nn.ReLU(), conv(int(nf * 0.2), nf * 9, 1))

    def forward(self, x):
        channel_filter = self.channel_branch(x).reshape(x.shape[0], x.shape[1], 9)
        return ddf_mul_unfold(x, channel_filter, self.spatial_branch(x))


class OfficialResidualDDFBlock(nn.Module):

    def __init__(self, nf):
        super().__init__()
        self.conv1, self.conv2 = OfficialDDFPack(nf), OfficialDDFPack(nf)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


def up_tail(ngf):
    return nn.Sequential(conv(ngf, ngf * 4), nn.PixelShuffle(2), nn.LeakyReLU(0.1))


def last_tail(ngf):
    return nn.Sequential(conv(ngf, ngf // 2), nn.LeakyReLU(0.1), conv(ngf // 2, 3))


def head(c_in, ngf):
    return nn.Sequential(conv(c_in, ngf), nn.LeakyReLU(0.1))


class OfficialC2MatchingRestorationNet(nn.Module):
    """C2-Matching ``RestorationNet``: ``content_extractor`` and ``dyn_agg_restore``."""

    scales = (('small', 2, 256), ('medium', 1, 128), ('large', 0, 64))  # (name, context level, Ref channels)

    def __init__(self, ngf=64, n_blocks=16, groups=8):
        super().__init__()
        self.content_extractor = nn.Module()
        self.content_extractor.conv_first = conv(3, ngf)
        self.content_extractor.body = stack(OfficialResidualBlockNoBN, n_blocks, ngf, False)
        self.dyn_agg_restore = restore = nn.Module()
        for scale, _, channels in self.scales:
            setattr(restore, f'{scale}_offset_conv1', conv(ngf + channels, channels))
            setattr(restore, f'{scale}_offset_conv2', conv(channels, channels))
            setattr(restore, f'{scale}_dyn_agg', OfficialDCN(channels, groups))
            setattr(restore, f'head_{scale}', head(ngf + channels, ngf))
            setattr(restore, f'body_{scale}', stack(OfficialResidualBlockNoBN, n_blocks, ngf, False))
        restore.tail_small, restore.tail_medium, restore.tail_large = up_tail(ngf), up_tail(ngf), last_tail(ngf)

    def forward(self, lq, context):
        restore = self.dyn_agg_restore
        x = self.content_extractor.body(lrelu(self.content_extractor.conv_first(lq)))
        for scale, level, _ in self.scales:
            ref = context['ref_feats'][level]
            offset = lrelu(getattr(restore, f'{scale}_offset_conv1')(torch.cat([x, ref], 1)))
            offset = lrelu(getattr(restore, f'{scale}_offset_conv2')(offset))
            swapped = lrelu(getattr(restore, f'{scale}_dyn_agg')(ref, offset, context['pre_offsets'][level]))
            h = getattr(restore, f'head_{scale}')(torch.cat([x, swapped], 1))
            x = getattr(restore, f'tail_{scale}')(getattr(restore, f'body_{scale}')(h) + x)
        return x + F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)


class OfficialFRFSRNet(nn.Module):
    """Official FRFSR ``SwinUnetv3RestorationNet``: ``dyn_agg_restore`` = ``DynamicAggregationRestoration``.

    ``ddf_blocks`` (2) and ``sife_channels`` (64) are hard-coded in the original; they are arguments here so that a
    small network can be checked.
    """

    stages = (('down', 'large', 0, 64), ('down', 'medium', 1, 128), ('up', 'small', 2, 256), ('up', 'medium', 1, 128),
              ('up', 'large', 0, 64))  # (direction, scale, context level, Ref channels); ddf_block_<n> is stage n

    def __init__(self, ngf=64, n_blocks=16, groups=8, ddf_blocks=2, sife_channels=64):
        super().__init__()
        self.dyn_agg_restore = restore = nn.Module()
        restore.unet_head = conv(3, ngf)
        for number, (direction, scale, _, channels) in enumerate(self.stages, start=1):
            setattr(restore, f'{direction}_{scale}_offset_conv1', conv(ngf + 2 * channels, channels))
            setattr(restore, f'{direction}_{scale}_offset_conv2', conv(channels, channels))
            setattr(restore, f'{direction}_{scale}_dyn_agg', OfficialDCN(channels, groups))
            setattr(restore, f'ddf_block_{number}', stack(OfficialResidualDDFBlock, ddf_blocks, ngf))
            setattr(restore, f'{direction}_head_{scale}', head(ngf + channels, ngf))
            setattr(restore, f'{direction}_body_{scale}', stack(OfficialResidualBlockNoBN, n_blocks, ngf, True))
        restore.down_tail_large, restore.down_tail_medium = nn.Conv2d(ngf, ngf, 3, 2, 1), nn.Conv2d(ngf, ngf, 3, 2, 1)
        restore.up_tail_small, restore.up_tail_medium, restore.up_tail_large = up_tail(ngf), up_tail(ngf), last_tail(
            ngf)
        restore.high_q_conv1 = conv(sife_channels + ngf, ngf)

    def forward(self, lq, context):
        """The original's U-Net, stage by stage; the context gives its pre-offsets, Ref and pre-warped Ref features."""
        restore = self.dyn_agg_restore
        base = F.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)

        def stage(number, x, head_input, skip):
            direction, scale, level, _ = self.stages[number - 1]
            ref, warped = context['ref_feats'][level], context['warped_ref_feats'][level]
            offset = lrelu(getattr(restore, f'{direction}_{scale}_offset_conv1')(torch.cat([x, warped, ref], 1)))
            offset = lrelu(getattr(restore, f'{direction}_{scale}_offset_conv2')(offset))
            swapped = lrelu(
                getattr(restore, f'{direction}_{scale}_dyn_agg')(ref, offset, context['pre_offsets'][level]))
            h = getattr(restore, f'{direction}_head_{scale}')(torch.cat([head_input, swapped], 1))
            h = getattr(restore, f'ddf_block_{number}')(h) + skip
            return getattr(restore, f'{direction}_body_{scale}')(h) + skip

        x0 = restore.unet_head(base)
        x1 = restore.down_tail_large(stage(1, x0, x0, x0))
        x2 = restore.down_tail_medium(stage(2, x1, x1, x1))
        x2_agg = lrelu(restore.high_q_conv1(torch.cat([context['sife_feat'], x2], 1)))
        x = restore.up_tail_small(stage(3, x2, x2_agg, x2))
        x = restore.up_tail_medium(stage(4, x, x + x1, x))
        return restore.up_tail_large(stage(5, x, x + x0, x)) + base


def shapes(state_dict):
    return {key: tuple(value.shape) for key, value in state_dict.items()}


@pytest.mark.parametrize('source_name, naming, official, official_params', [
    ('c2matching-encoder', 'c2matching', OfficialContrasExtractorSep, 1_110_656),
    ('basicsr-rrdb', 'basicsr', lambda: RRDBNet(3, 3), 16_697_987),
    ('basicsr-rrdb', 'esrgan', OfficialESRGAN, 16_697_987),
    ('c2matching-restoration', 'mmsr', OfficialC2MatchingRestorationNet, 8_865_547),
    ('frfsr-official', 'mmsr', OfficialFRFSRNet, 13_487_071),
])
def test_inverse_map_of_full_size_network_gives_the_original_names_and_shapes(source_name, naming, official,
                                                                              official_params):
    source = SOURCES[source_name]
    with torch.device('meta'):
        ours = build_target_network(source).state_dict()
        reference = official()
    assert sum(p.numel() for p in reference.parameters()) == official_params  # the layout rebuilt above is complete
    assert shapes(to_source_naming(source, ours, naming)) == shapes(reference.state_dict())


def test_rename_templates_copy_indices_and_invert():
    rules = SOURCES['basicsr-rrdb'].namings['esrgan']
    assert rename_key('RRDB_trunk.12.RDB3.conv5.bias', rules) == 'body.12.rdb3.conv5.bias'
    assert rename_key('RRDB_trunk.x.RDB3.conv5.bias', rules) is None  # '#' matches module indices only
    assert rename_key('RRDB_trunk.1.RDB4.conv1.bias', rules) is None  # inner rules must match too
    inverse = tuple(rule.inverted() for rule in rules)
    assert rename_key('body.12.rdb3.conv5.bias', inverse) == 'RRDB_trunk.12.RDB3.conv5.bias'
    with pytest.raises(ValueError, match='index segments'):
        Rename('a.#', 'b')
    with pytest.raises(ValueError, match='Ambiguous'):
        rename_key('a.b', (Rename('a', 'x'), Rename('a.b', 'y')))


def randomise(net, seed):
    """Every parameter U(-0.1, 0.1), so that zero-initialised convs (offsets, biases) are checked too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) * 0.2 - 0.1)
    return net.eval()


@pytest.fixture(scope='module')
def inputs():
    """LR (1, 3, 16, 16), Ref (1, 3, 64, 64) and a correspondence context from random frozen parts."""
    torch.manual_seed(0)
    lq, ref = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64)
    lq_up = F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)
    with torch.no_grad():
        context = FRFSRCorrespondence(pretrained=False)(*FRFSRContrastiveEncoder(pretrained=False)(lq_up, ref), ref)
    context['sife_feat'] = torch.rand(1, 8, 16, 16)
    return {'lq': lq, 'lq_up': lq_up, 'ref': ref, 'context': context}


def run_network(source_name, net, inputs):
    with torch.no_grad():
        if source_name == 'c2matching-encoder':
            return torch.cat([feat.flatten() for feat in net(inputs['lq_up'], inputs['ref'])])
        if source_name == 'basicsr-rrdb':  # the whole SR forward, so that the up-sampling layers are checked too
            return RRDBNet.forward(net, inputs['lq']) if isinstance(net, RRDBNet) else net(inputs['lq'])
        return net(inputs['lq'], inputs['context'])


SMALL = {
    'c2matching-encoder': {},
    'basicsr-rrdb': {
        'num_feat': 8,
        'num_block': 2,
        'num_grow_ch': 4
    },
    'c2matching-restoration': {
        'ngf': 16,
        'n_blocks': 1
    },
    'frfsr-official': {
        'num_feat': 16,
        'num_res_blocks': 1,
        'num_ddf_blocks': 1,
        'sife_channels': 8
    },
}


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          cwd=ROOT)


def save_as_shipped(source_name, naming, state, path):
    """Save source-named weights in the file layout that source ships."""
    if source_name == 'c2matching-encoder':  # saved from a DataParallel/DDP wrapper
        state = {f'module.{key}': value for key, value in state.items()}
    elif naming == 'basicsr':  # BasicSR GAN checkpoints: the EMA weights are the ones to convert
        state = {'params': {key: torch.zeros_like(value) for key, value in state.items()}, 'params_ema': state}
    torch.save(state, path)


@pytest.mark.parametrize('source_name, naming, official, through_cli', [
    ('c2matching-encoder', 'c2matching', OfficialContrasExtractorSep, False),
    ('basicsr-rrdb', 'basicsr', lambda: RRDBNet(3, 3, num_feat=8, num_block=2, num_grow_ch=4), False),
    ('basicsr-rrdb', 'esrgan', lambda: OfficialESRGAN(nf=8, nb=2, gc=4), False),
    pytest.param(
        'c2matching-restoration',
        'mmsr',
        lambda: OfficialC2MatchingRestorationNet(ngf=16, n_blocks=1),
        True,
        marks=pytest.mark.integration),
    ('frfsr-official', 'mmsr', lambda: OfficialFRFSRNet(ngf=16, n_blocks=1, ddf_blocks=1, sife_channels=8), False),
])
def test_converted_checkpoint_loads_strictly_and_reproduces_the_outputs(tmp_path, inputs, source_name, naming, official,
                                                                        through_cli):
    """Our random net -> source naming (inverse map) -> file -> converter -> strict load: the same outputs, also
    those of the original network's layout and forward loaded with the source-named weights."""
    source, options = SOURCES[source_name], SMALL[source_name]
    original = randomise(build_target_network(source, options), seed=1)
    source_state = to_source_naming(source, original.state_dict(), naming)
    official = official().eval()
    official.load_state_dict(source_state, strict=True)
    source_file, converted_file = tmp_path / 'source.pth', tmp_path / 'out' / 'converted.pth'
    save_as_shipped(source_name, naming, source_state, source_file)

    if through_cli:
        result = run_tool('--source', source_name, source_file, converted_file, '--arch-options',
                          *(f'{key}={value}' for key, value in options.items()))
        assert result.returncode == 0, result.stderr
        assert f'{naming} naming' in result.stdout and source.yaml_key in result.stdout
    else:
        assert convert_checkpoint(source_name, str(source_file), str(converted_file), options).naming == naming

    checkpoint = torch.load(converted_file, map_location='cpu', weights_only=True)
    assert list(checkpoint) == ['params']
    loaded = build_target_network(source, options).eval()
    loaded.load_state_dict(checkpoint['params'], strict=True)
    expected = run_network(source_name, original, inputs)
    assert torch.equal(run_network(source_name, loaded, inputs), expected)
    torch.testing.assert_close(run_network(source_name, official, inputs), expected, rtol=1e-4, atol=1e-5)
    assert expected.std() > 1e-3  # not a trivial output
    assert sorted(tmp_path.joinpath('out').iterdir()) == [converted_file]  # no temporary files left


@pytest.mark.integration
def test_wrong_architecture_exits_1_naming_keys_and_writes_nothing(tmp_path):
    rrdb = build_target_network(SOURCES['basicsr-rrdb'], SMALL['basicsr-rrdb'])
    source_file, output = tmp_path / 'rrdb.pth', tmp_path / 'converted.pth'
    torch.save({'params': rrdb.state_dict()}, source_file)
    output.write_bytes(b'previous file')

    result = run_tool('--source', 'frfsr-official', source_file, output)

    assert result.returncode == 1
    message = result.stderr.strip()
    assert '\n' not in message and message.startswith('convert_checkpoint: error: FRFSRNet')
    missing = len(build_target_network(SOURCES['frfsr-official']).state_dict()) - 2  # conv_first is in both
    assert f'missing keys ({missing}): align_down_large.offset_conv1.weight' in message
    assert f'unexpected keys ({len(rrdb.state_dict()) - 2}): body.0.rdb1.conv1.weight' in message
    assert 'shape mismatch' in message and 'conv_first.weight: (8, 3, 3, 3) vs (64, 3, 3, 3)' in message
    assert output.read_bytes() == b'previous file' and sorted(tmp_path.iterdir()) == [output, source_file]


def test_non_default_sizes_without_arch_options_fail_with_a_hint(tmp_path):
    small = build_target_network(SOURCES['frfsr-official'], SMALL['frfsr-official'])
    source_file = tmp_path / 'small.pth'
    torch.save(to_source_naming(SOURCES['frfsr-official'], small.state_dict()), source_file)
    with pytest.raises(PretrainedWeightsError, match='shape mismatch.*--arch-options'):
        convert_checkpoint('frfsr-official', str(source_file), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_missing_input_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / 'nowhere.pth'
    assert load_tool().main(['--source', 'frfsr-official', str(missing), str(tmp_path / 'out.pth')]) == 1
    message = capsys.readouterr().err.strip()
    assert message == f"convert_checkpoint: error: input checkpoint '{missing}' not found."
    assert not (tmp_path / 'out.pth').exists()


def test_help_documents_every_source_with_network_and_yaml_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool().main(['--help'])
    assert exit_info.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    for source in SOURCES.values():
        assert f'{source.name} {" ".join(source.summary.split())}' in text
        assert f'-> {source.network.__name__}, YAML {source.yaml_key}' in text


def test_encoder_normalisation_buffers_must_be_imagenet(tmp_path):
    source = SOURCES['c2matching-encoder']
    state = to_source_naming(source, build_target_network(source).state_dict())
    state['feature_extraction_image2.std'] = torch.ones(1, 3, 1, 1)
    torch.save(state, tmp_path / 'encoder.pth')
    with pytest.raises(BadFileError, match="'feature_extraction_image2.std' is \\[1.0, 1.0, 1.0\\]"):
        convert_checkpoint('c2matching-encoder', str(tmp_path / 'encoder.pth'), str(tmp_path / 'out.pth'))


def test_training_state_is_rejected(tmp_path):
    torch.save({'epoch': 3, 'iter': 1000}, tmp_path / '1000.state')
    with pytest.raises(BadFileError, match='not a network state dict: entries epoch, iter'):
        convert_checkpoint('frfsr-official', str(tmp_path / '1000.state'), str(tmp_path / 'out.pth'))


@pytest.mark.parametrize('source_name, items, message', [
    ('frfsr-official', ['num_feat'], 'expected key=value'),
    ('frfsr-official', ['num_fet=16'], "do not fit FRFSRNet: .*'num_fet'"),
    ('c2matching-encoder', ['pretrained=x.pth'], 'pretrained of FRFSRContrastiveEncoder is set by the converter'),
])
def test_bad_arch_options(source_name, items, message):
    with pytest.raises(OptionError, match=message):
        build_target_network(SOURCES[source_name], parse_arch_options(items))


def test_arch_option_values_are_yaml_scalars():
    assert parse_arch_options(['num_feat=16', 'use_esa=false', 'dcn_backend=pytorch']) == {
        'num_feat': 16,
        'use_esa': False,
        'dcn_backend': 'pytorch'
    }


def test_unwritable_output_is_one_line(tmp_path):
    source = SOURCES['c2matching-encoder']
    torch.save(to_source_naming(source, build_target_network(source).state_dict()), tmp_path / 'encoder.pth')
    (tmp_path / 'a_file').write_text('not a folder')
    output = tmp_path / 'a_file' / 'out.pth'
    with pytest.raises(BadFileError, match=f"cannot write the converted checkpoint '{output}'"):
        convert_checkpoint('c2matching-encoder', str(tmp_path / 'encoder.pth'), str(output))
