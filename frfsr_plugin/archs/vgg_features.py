"""Truncated torchvision VGG feature stacks with ImageNet input normalisation, loaded from local files."""
import torch
from torchvision.models.vgg import cfgs, make_layers

from frfsr_plugin.utils.checkpoint import load_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Index of each ReLU output in torchvision's ``vgg19().features``.
VGG19_RELU_INDEX = {'relu1_1': 1, 'relu2_1': 6, 'relu3_1': 11, 'relu4_1': 20, 'relu5_1': 29}
VGG19_WEIGHTS_DESCRIPTION = ("torchvision's VGG19 ImageNet weights (vgg19-dcbb9e9d.pth, "
                             'torchvision.models.VGG19_Weights.IMAGENET1K_V1)')


class ImageNetNormalize(torch.nn.Module):
    """(x - mean) / std with ImageNet statistics for RGB images in [0, 1]; the statistics are not saved."""

    def __init__(self):
        super().__init__()
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class VGG19Features(torch.nn.Module):
    """VGG19 up to the deepest requested ReLU, returning the requested layers' outputs.

    Args:
        layers (Sequence[str]): ReLU names from ``VGG19_RELU_INDEX``, e.g. ``('relu1_1', 'relu2_1', 'relu3_1')``.
        pretrained (str | bool): Local file with torchvision's VGG19 weights, or False for random init.
        owner (str): Name used in error messages.
    """

    def __init__(self, layers, pretrained, owner='VGG19Features'):
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_RELU_INDEX]
        if unknown:
            raise ValueError(f'{owner}: unknown VGG19 layers {unknown}; choose from {list(VGG19_RELU_INDEX)}.')
        self.layers = tuple(layers)
        self.normalize = ImageNetNormalize()
        last = max(VGG19_RELU_INDEX[name] for name in layers)
        self.features = make_layers(cfgs['E'])[:last + 1]  # torchvision's VGG19 feature stack
        load_pretrained(self, pretrained, owner, VGG19_WEIGHTS_DESCRIPTION, strict=False)
        self.requires_grad_(False)

    def forward(self, img):
        """
        Args:
            img (Tensor): RGB in [0, 1], shape (B, 3, H, W).

        Returns:
            dict[str, Tensor]: Requested layer outputs, e.g. ``relu2_1`` of shape (B, 128, H / 2, W / 2).
        """
        wanted = {VGG19_RELU_INDEX[name]: name for name in self.layers}
        outputs = {}
        x = self.normalize(img)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return outputs
