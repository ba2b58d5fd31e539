"""LPIPS as a BasicSR validation metric, with its backbone loaded from a local file (never downloaded)."""
import lpips
import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from frfsr_plugin.utils.checkpoint import load_state_dict_checked, read_state_dict, resolve_pretrained_option
from frfsr_plugin.utils.errors import OptionError

BACKBONE_FILES = {
    'alex': 'alexnet-owt-7be5be79.pth',
    'vgg': 'vgg16-397923af.pth',
    'squeeze': 'squeezenet1_1-b8a52dc0.pth',
}
_MODELS = {}


def build_lpips(net='alex', backbone_weights=None):
    """An LPIPS model whose linear layers come from the ``lpips`` package and whose backbone from a local file.

    Args:
        net (str): ``'alex'``, ``'vgg'`` or ``'squeeze'``.
        backbone_weights (str | bool): torchvision ImageNet weights of the backbone (e.g. ``alexnet-owt-7be5be79.pth``),
            or False for a random backbone (plumbing tests only).

    Returns:
        lpips.LPIPS: The model in eval mode, cached per (net, weights).
    """
    if net not in BACKBONE_FILES:
        raise OptionError(f'calculate_lpips: net must be one of {sorted(BACKBONE_FILES)}, got {net!r}.')
    key = (net, backbone_weights)
    if key not in _MODELS:
        path = resolve_pretrained_option(backbone_weights, 'calculate_lpips.backbone_weights',
                                         f"torchvision's ImageNet {net} weights ({BACKBONE_FILES[net]})")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        if path is not None:
            # lpips splits torchvision's `features` into slices that keep the layer indices: slice2.3 = features.3
            state = read_state_dict(path)
            mapped = {name: state.get('features.' + name.split('.', 1)[1]) for name in model.net.state_dict()}
            load_state_dict_checked(model.net, {k: v for k, v in mapped.items() if v is not None}, f"'{path}'")
        _MODELS[key] = model.eval()
    return _MODELS[key]


def bgr_uint8_to_tensor(img, crop_border):
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    rgb = np.ascontiguousarray(img[..., ::-1], dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, crop_border=0, input_order='HWC', net='alex', backbone_weights=None, **kwargs):
    """LPIPS distance (lower is better) between two images as BasicSR's validation passes them.

    Args:
        img (ndarray): SR, (H, W, 3) BGR uint8.
        img2 (ndarray): GT, (H, W, 3) BGR uint8.
        crop_border (int): Pixels cut from each edge. Default: 0.
        input_order (str): Only ``'HWC'``.
        net (str): LPIPS backbone. Default: ``'alex'`` (the package default, used by the paper's tables).
        backbone_weights (str | bool): Local backbone weights file, or False (random backbone, tests only).

    Returns:
        float: LPIPS.
    """
    if input_order != 'HWC':
        raise OptionError(f"calculate_lpips: input_order must be 'HWC', got {input_order!r}.")
    model = build_lpips(net, backbone_weights)
    with torch.no_grad():
        return float(
            model(bgr_uint8_to_tensor(img, crop_border), bgr_uint8_to_tensor(img2, crop_border), normalize=True).mean())
