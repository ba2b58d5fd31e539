"""WGAN-GP gradient penalty with the per-sample flattened gradient norm (as C2-Matching / FRFSR)."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class WGANGradientPenaltyLoss(nn.Module):
    """``loss_weight * mean_b (||grad D(x_b)||_2 - 1)^2``, ``x = a real + (1 - a) fake``, ``a ~ U(0, 1)`` per sample.

    The gradient of each sample is flattened over (C, H, W) before its norm (BasicSR's ``gradient_penalty_loss`` takes
    a per-pixel channel norm instead). It is built with ``torch.autograd.grad(create_graph=True)``, out of place, so
    the penalty's own backward is an ordinary one and stays correct under DDP.

    Args:
        loss_weight (float): Penalty weight lambda. Default: 10.
    """

    def __init__(self, loss_weight=10.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, discriminator, real, fake):
        """
        Args:
            discriminator (nn.Module): The critic.
            real (Tensor): Real images, shape (B, C, H, W).
            fake (Tensor): Generated images (detached), shape (B, C, H, W).

        Returns:
            Tensor: Scalar penalty.
        """
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        interpolated = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = discriminator(interpolated)
        gradients, = torch.autograd.grad(scores, interpolated, grad_outputs=torch.ones_like(scores), create_graph=True)
        norms = gradients.reshape(gradients.shape[0], -1).norm(2, dim=1)
        return self.loss_weight * ((norms - 1)**2).mean()
