"""Side-by-side comparison images written during validation (files and TensorBoard)."""
import os
from os import path as osp

import torch
from basicsr.utils import imwrite, tensor2img


def side_by_side(panels, gap=4):
    """Concatenate image tensors left to right with white gaps, cropping all to the smallest height.

    Args:
        panels (list[Tensor]): RGB images in [0, 1], each (1, 3, H_i, W_i) or (3, H_i, W_i).
        gap (int): Gap width in pixels. Default: 4.

    Returns:
        Tensor: (3, H, sum W_i + gaps), clamped to [0, 1].
    """
    panels = [p.detach().float().cpu().reshape(3, *p.shape[-2:]).clamp(0, 1) for p in panels]
    height = min(p.shape[-2] for p in panels)
    spacer = torch.ones(3, height, gap)
    pieces = []
    for panel in panels:
        pieces += [panel[:, :height], spacer]
    return torch.cat(pieces[:-1], dim=2)


def write_comparison(panels, path, tb_logger=None, tb_tag=None, step=None):
    """Write ``side_by_side(panels)`` as a PNG and, when a TensorBoard writer is given, as an image summary."""
    image = side_by_side(panels)
    os.makedirs(osp.dirname(path), exist_ok=True)
    imwrite(tensor2img(image), path)
    if tb_logger is not None:
        tb_logger.add_image(tb_tag, image, step)
