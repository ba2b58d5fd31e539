"""`import frfsr_plugin` registers every plugin component in BasicSR's registries without shadowing BasicSR's."""
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

PLUGIN_NAMES = {
    ARCH_REGISTRY: [
        'FRFSRNet', 'FRFSRStage2Net', 'FRFSRContrastiveEncoder', 'FRFSRCorrespondence', 'FRFSRSIFENet',
        'FRFSRDiscriminator', 'FeatureReuseNet', 'C2MatchingRestorationNet'
    ],
    MODEL_REGISTRY: ['FRFSRModel', 'FeatureReuseModel'],
    DATASET_REGISTRY: ['RefCUFEDDataset', 'RefSRTestDataset'],
    LOSS_REGISTRY: ['WGANGradientPenaltyLoss', 'FRFSRPerceptualLoss'],
    METRIC_REGISTRY: ['calculate_lpips'],
}


def test_plugin_components_are_registered_under_their_own_modules():
    for registry, names in PLUGIN_NAMES.items():
        for name in names:
            assert name in registry, f'{name} missing from the {registry._name} registry'
            assert registry.get(name).__module__.startswith('frfsr_plugin.'), name


def test_basicsr_components_are_untouched():
    for registry, name in ((ARCH_REGISTRY, 'RRDBNet'), (MODEL_REGISTRY, 'SRModel'), (MODEL_REGISTRY, 'SRGANModel'),
                           (LOSS_REGISTRY, 'GANLoss'), (METRIC_REGISTRY, 'calculate_psnr'), (DATASET_REGISTRY,
                                                                                             'PairedImageDataset')):
        assert registry.get(name).__module__.startswith('basicsr.'), name
