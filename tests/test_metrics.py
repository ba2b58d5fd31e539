"""LPIPS validation metric: equality with the lpips package, local backbone loading, clear errors."""
import lpips
import numpy as np
import pytest
import torch
import torchvision
from basicsr.utils.registry import METRIC_REGISTRY
from skimage import data as skimage_data

from frfsr_plugin.metrics.lpips_metric import build_lpips
from frfsr_plugin.utils.checkpoint import PretrainedWeightsError


@pytest.fixture(scope='module')
def alexnet_file(tmp_path_factory):
    torch.manual_seed(3)
    net = torchvision.models.alexnet(weights=None)
    path = tmp_path_factory.mktemp('weights') / 'alexnet.pth'
    torch.save(net.state_dict(), path)
    return str(path), net


def photo_pair():
    gt = skimage_data.astronaut()[100:164, 200:264]
    distorted = np.clip(gt.astype(np.int16) + np.random.default_rng(0).integers(-40, 40, gt.shape), 0, 255)
    return gt[..., ::-1].copy(), distorted.astype(np.uint8)[..., ::-1].copy()  # BGR, as BasicSR passes them


def test_lpips_equals_package_forward_with_the_same_backbone(alexnet_file):
    path, alexnet = alexnet_file
    img, img2 = photo_pair()
    ours = METRIC_REGISTRY.get('calculate_lpips')(img, img2, crop_border=4, backbone_weights=path)
    reference = lpips.LPIPS(net='alex', pnet_rand=True, verbose=False).eval()
    for index, layer in enumerate(alexnet.features):  # torchvision layer i lives in one of lpips' slices as '<i>'
        for slice_ in (reference.net.slice1, reference.net.slice2, reference.net.slice3, reference.net.slice4,
                       reference.net.slice5):
            if str(index) in slice_._modules:
                slice_._modules[str(index)].load_state_dict(layer.state_dict())

    def to_tensor(bgr):
        rgb = bgr[4:-4, 4:-4, ::-1].astype(np.float32) / 127.5 - 1
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]

    with torch.no_grad():
        expected = reference(to_tensor(img), to_tensor(img2)).item()
    assert ours == pytest.approx(expected, rel=1e-5)
    assert METRIC_REGISTRY.get('calculate_lpips')(img, img, backbone_weights=path) == pytest.approx(0.0, abs=1e-7)


def test_lpips_loads_backbone_from_local_file(alexnet_file):
    path, alexnet = alexnet_file
    model = build_lpips('alex', path)
    assert torch.equal(model.net.slice3._modules['6'].weight, alexnet.features[6].weight)


def test_lpips_missing_backbone_names_file_and_content(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="alexnet.pth' not found.*ImageNet alex weights"):
        METRIC_REGISTRY.get('calculate_lpips')(*photo_pair(), backbone_weights=str(tmp_path / 'alexnet.pth'))
