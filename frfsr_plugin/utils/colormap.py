"""Colour maps and their keys for image panels: a continuous map (viridis) with a scale bar, and distinct colours for
categories with a legend (``frfsr infer --explain``)."""
import math

import cv2
import numpy as np
import torch

# matplotlib's viridis at 0, 1/8, ..., 1 (RGB in [0, 1]); colours between anchors are interpolated linearly
VIRIDIS = torch.tensor([[0.267, 0.005, 0.329], [0.279, 0.175, 0.483], [0.230, 0.322, 0.546], [0.173, 0.449, 0.558],
                        [0.128, 0.567, 0.551], [0.158, 0.684, 0.502], [0.369, 0.789, 0.383], [0.678, 0.864, 0.190],
                        [0.993, 0.906, 0.144]])
# matplotlib's tab10, for the first ten categories; further ones get hues a golden angle apart
TAB10 = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
         (127, 127, 127), (188, 189, 34), (23, 190, 207))
FONT = cv2.FONT_HERSHEY_SIMPLEX
KEY_FONT_SCALE = 0.45
BAR_HEIGHT = 16
TICK_LENGTH = 4
TEXT_HEIGHT = 18  # pixels per line of key text
MARGIN = 8  # pixels left and right of a key


def colormap(values, low, high):
    """Viridis colours of ``values``, ``low`` mapped to the first anchor and ``high`` to the last.

    Args:
        values (Tensor): (H, W), any float.
        low (float): Value of the darkest colour.
        high (float): Value of the brightest colour, > ``low``.

    Returns:
        Tensor: RGB in [0, 1], (3, H, W): anchor ``k`` at ``low + k (high - low) / 8``, linear in between, clamped.
    """
    position = ((values.float().cpu() - low) / (high - low)).clamp(0, 1) * (len(VIRIDIS) - 1)
    below = position.floor().long().clamp(max=len(VIRIDIS) - 2)
    weight = (position - below)[..., None]
    return (VIRIDIS[below] * (1 - weight) + VIRIDIS[below + 1] * weight).permute(2, 0, 1)


def category_colours(count):
    """``count`` distinct colours: tab10, then hues a golden angle apart.

    Returns:
        Tensor: RGB in [0, 1], (count, 3).
    """
    colours = [tuple(channel / 255 for channel in TAB10[index]) for index in range(min(count, len(TAB10)))]
    for index in range(len(TAB10), count):
        hsv = np.array([[[round((index * 137.508) % 360 / 2), 200, 230]]], np.uint8)  # OpenCV's hue is in [0, 180)
        colours.append(tuple(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255))
    return torch.tensor(colours, dtype=torch.float32).reshape(count, 3)


def tick_values(low, high, count=5):
    """``count`` evenly spaced ticks from ``low`` to ``high`` and the decimals that tell neighbours apart."""
    step = (high - low) / (count - 1)
    decimals = min(max(0, math.ceil(-math.log10(step))), 6)
    return [low + index * step for index in range(count)], decimals


def _draw_text(canvas, text, origin):
    cv2.putText(canvas, text, origin, FONT, KEY_FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)


def colour_scale_bar(low, high, width, caption, ticks=5):
    """A horizontal viridis bar from ``low`` (left) to ``high`` (right) with tick marks, tick labels and a caption.

    Args:
        low (float): Value at the bar's left end.
        high (float): Value at its right end, > ``low``.
        width (int): Width of the key in pixels (the bar spans it less :data:`MARGIN` on each side).
        caption (str): What the colours mean, under the tick labels.
        ticks (int): Number of ticks, ends included. Default: 5.

    Returns:
        Tensor: RGB in [0, 1], (3, BAR_HEIGHT + TICK_LENGTH + 2 TEXT_HEIGHT, width).
    """
    height = BAR_HEIGHT + TICK_LENGTH + 2 * TEXT_HEIGHT
    canvas = np.full((height, width, 3), 255, np.uint8)
    span = width - 2 * MARGIN
    ramp = torch.linspace(low, high, span)[None].expand(BAR_HEIGHT, span)
    canvas[:BAR_HEIGHT, MARGIN:MARGIN + span] = (colormap(ramp, low, high).permute(1, 2, 0) * 255).round().byte()
    values, decimals = tick_values(low, high, ticks)
    for value in values:
        x = MARGIN + round((value - low) / (high - low) * (span - 1))
        canvas[BAR_HEIGHT:BAR_HEIGHT + TICK_LENGTH, x] = 0
        text = f'{value:.{decimals}f}'
        (text_width, _), _ = cv2.getTextSize(text, FONT, KEY_FONT_SCALE, 1)
        left = min(max(x - text_width // 2, 0), width - text_width)
        _draw_text(canvas, text, (left, BAR_HEIGHT + TICK_LENGTH + TEXT_HEIGHT - 4))
    (caption_width, _), _ = cv2.getTextSize(caption, FONT, KEY_FONT_SCALE, 1)
    _draw_text(canvas, caption, (max((width - caption_width) // 2, 0), height - 4))
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255


def legend(names, colours, width):
    """A legend: one line per category, a swatch of its colour and its name (clipped at the key's right edge).

    Args:
        names (Sequence[str]): The categories' names.
        colours (Tensor): (len(names), 3) RGB in [0, 1], e.g. :func:`category_colours`.
        width (int): Width in pixels.

    Returns:
        Tensor: RGB in [0, 1], (3, TEXT_HEIGHT len(names) + 4, width).
    """
    canvas = np.full((TEXT_HEIGHT * len(names) + 4, width, 3), 255, np.uint8)
    swatch = TEXT_HEIGHT - 6
    for line, (name, colour) in enumerate(zip(names, colours)):
        top = 4 + line * TEXT_HEIGHT
        canvas[top:top + swatch, MARGIN:MARGIN + swatch] = (colour * 255).round().byte().numpy()
        _draw_text(canvas, name, (MARGIN + swatch + 6, top + swatch - 1))
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255
