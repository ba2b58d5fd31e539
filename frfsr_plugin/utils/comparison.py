"""Comparison images with a label over each panel, written during validation, by ``frfsr infer`` and the tools."""
import math
import os
from os import path as osp

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils import imwrite, tensor2img

MIN_PANEL_SIZE = 256  # pixels along the shorter side of the smallest panel, reached by nearest-neighbour upscaling
LABEL_HEIGHT = 30
GAP = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX


def panel_scale(panels, min_size=MIN_PANEL_SIZE):
    """The integer nearest-neighbour factor that brings the smallest panel's shorter side to at least ``min_size``.

    Args:
        panels (list[Tensor]): Images (..., H_i, W_i).
        min_size (int): Target size in pixels. Default: 256.

    Returns:
        int: Factor >= 1 (1 when every panel is large enough already).
    """
    smallest = min(min(panel.shape[-2:]) for panel in panels)
    return max(1, math.ceil(min_size / smallest))


def label_strip(text, width, height=LABEL_HEIGHT):
    """A white (3, height, width) strip with ``text`` in black, centred, shrunk to fit the width.

    Args:
        text (str): The label.
        width (int): Strip width in pixels.
        height (int): Strip height in pixels. Default: 30.

    Returns:
        Tensor: RGB in [0, 1], shape (3, height, width).
    """
    strip = np.full((height, width, 3), 255, np.uint8)
    font_scale = 0.6
    (text_width, text_height), _ = cv2.getTextSize(text, FONT, font_scale, 1)
    if text_width > width - 8:
        font_scale *= (width - 8) / text_width
        (text_width, text_height), _ = cv2.getTextSize(text, FONT, font_scale, 1)
    origin = (max((width - text_width) // 2, 0), (height + text_height) // 2)
    cv2.putText(strip, text, origin, FONT, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.from_numpy(strip).permute(2, 0, 1).float() / 255


def labelled_grid(rows, min_size=MIN_PANEL_SIZE, gap=GAP):
    """Rows of panels, one above the other; each panel under its label, all upscaled together by nearest neighbour.

    Every panel gets the same integer factor (:func:`panel_scale` over all rows), so their pixels stay comparable;
    panels shorter than the tallest of their row are padded with white at the bottom, rows narrower than the widest
    on the right.

    Args:
        rows (list[list[tuple[str, Tensor]]]): Rows of (label, RGB image in [0, 1] of shape (1, 3, H_i, W_i) or
            (3, H_i, W_i)) pairs, left to right.
        min_size (int): Shorter side of the smallest panel after upscaling, at least. Default: 256.
        gap (int): White gap between panels and between rows, in pixels. Default: 6.

    Returns:
        Tensor: RGB in [0, 1], shape (3, H, W); one row is (3, LABEL_HEIGHT + H_row, sum W_i + gaps), H_row its
        tallest upscaled panel.
    """
    images = [[image.detach().float().cpu().reshape(3, *image.shape[-2:]).clamp(0, 1) for _, image in row]
              for row in rows]
    factor = panel_scale([image for row in images for image in row], min_size)
    strips = []
    for row, row_images in zip(rows, images):
        row_images = [image.repeat_interleave(factor, 1).repeat_interleave(factor, 2) for image in row_images]
        height = max(image.shape[1] for image in row_images)
        columns = []
        for (label, _), image in zip(row, row_images):
            column = torch.ones(3, LABEL_HEIGHT + height, image.shape[2])
            column[:, :LABEL_HEIGHT] = label_strip(label, image.shape[2])
            column[:, LABEL_HEIGHT:LABEL_HEIGHT + image.shape[1]] = image
            columns += [column, torch.ones(3, LABEL_HEIGHT + height, gap)]
        strips.append(torch.cat(columns[:-1], 2))
    width = max(strip.shape[2] for strip in strips)
    pieces = []
    for strip in strips:
        padded = torch.ones(3, strip.shape[1], width)
        padded[..., :strip.shape[2]] = strip
        pieces += [padded, torch.ones(3, gap, width)]
    return torch.cat(pieces[:-1], 1)


def labelled_side_by_side(panels, min_size=MIN_PANEL_SIZE, gap=GAP):
    """One row of :func:`labelled_grid`: panels left to right, each under its label, upscaled together.

    Args:
        panels (list[tuple[str, Tensor]]): (label, RGB image in [0, 1] of shape (1, 3, H_i, W_i) or (3, H_i, W_i)).
        min_size (int): Shorter side of the smallest panel after upscaling, at least. Default: 256.
        gap (int): White gap between panels in pixels. Default: 6.

    Returns:
        Tensor: (3, LABEL_HEIGHT + H, sum W_i + gaps) RGB in [0, 1], H the tallest upscaled panel.
    """
    return labelled_grid([panels], min_size, gap)


def labelled_side_by_side_with_keys(panels, keys, min_size=MIN_PANEL_SIZE, gap=GAP):
    """:func:`labelled_side_by_side` of ``panels`` with a key (a colour scale, a legend) under some of them, drawn at
    the final resolution (keys are not upscaled).

    Args:
        panels (list[tuple[str, Tensor]]): (label, image) pairs, see :func:`labelled_side_by_side`.
        keys (list[Callable[[int], Tensor] | None]): For each panel, None or a function of the panel's upscaled width
            that returns its key, RGB in [0, 1] of shape (3, h_k, width); at least one key.
        min_size (int): Shorter side of the smallest panel after upscaling, at least. Default: 256.
        gap (int): White gap between panels, and between panels and keys, in pixels. Default: 6.

    Returns:
        Tensor: (3, H_row + gap + max h_k, W_row) RGB in [0, 1], the row of :func:`labelled_side_by_side` (3, H_row,
        W_row) on top; key k starts at the left edge of panel k.
    """
    row = labelled_side_by_side(panels, min_size, gap)
    factor = panel_scale([image for _, image in panels], min_size)
    widths = [factor * image.shape[-1] for _, image in panels]
    drawn = [None if key is None else key(width) for key, width in zip(keys, widths)]
    keys_row = torch.ones(3, max(key.shape[1] for key in drawn if key is not None), row.shape[2])
    left = 0
    for key, width in zip(drawn, widths):
        if key is not None:
            keys_row[:, :key.shape[1], left:left + width] = key
        left += width + gap
    return torch.cat([row, torch.ones(3, gap, row.shape[2]), keys_row], 1)


def refsr_panels(lq, sr, ref, gt=None, sr_stage1=None):
    """The panels of a RefSR comparison: bicubic | SR | Ref | GT, two-stage bicubic | stage-1 SR | stage-2 SR | Ref |
    GT (validation and ``frfsr infer --compare``).

    Args:
        lq (Tensor): LR, (1, 3, h, w); its bicubic x4 is cut to the SR's size (the LR may be a padded canvas).
        sr (Tensor): SR, (1, 3, H, W).
        ref (Tensor): Reference as shown, (1, 3, H_r, W_r).
        gt (Tensor | None): Ground truth, (1, 3, H, W). Default: None (no panel).
        sr_stage1 (Tensor | None): Net1's SR of a two-stage model, (1, 3, H, W). Default: None.

    Returns:
        list[tuple[str, Tensor]]: (label, image) pairs for :func:`write_comparison`.
    """
    height, width = sr.shape[-2:]
    bicubic = F.interpolate(lq, scale_factor=4, mode='bicubic', align_corners=False)[..., :height, :width]
    outputs = [('SR', sr)] if sr_stage1 is None else [('stage-1 SR', sr_stage1), ('stage-2 SR', sr)]
    return [('bicubic', bicubic)] + outputs + [('Ref', ref)] + ([('GT', gt)] if gt is not None else [])


def save_image(image, path):
    """Write an RGB image in [0, 1] of shape (3, H, W) as a PNG (folders are created)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    imwrite(tensor2img(image), path)


def write_comparison(panels, path, tb_logger=None, tb_tag=None, step=None):
    """Write :func:`labelled_side_by_side` of ``panels`` as a PNG and, with a TensorBoard writer, as an image summary.

    Args:
        panels (list[tuple[str, Tensor]]): (label, image) pairs, see :func:`labelled_side_by_side`.
        path (str): PNG path (folders are created).
        tb_logger (SummaryWriter | None): TensorBoard writer. Default: None.
        tb_tag (str | None): Its tag. Default: None.
        step (int | str | None): Its step. Default: None.
    """
    image = labelled_side_by_side(panels)
    save_image(image, path)
    if tb_logger is not None:
        tb_logger.add_image(tb_tag, image, step)
