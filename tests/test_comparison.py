"""Labelled comparison images: nearest-neighbour upscaling to 256 px, one label strip per panel, white padding."""
import cv2
import numpy as np
import pytest
import torch

from frfsr_plugin.utils.comparison import LABEL_HEIGHT, label_strip, labelled_side_by_side, write_comparison


def test_panels_are_upscaled_together_by_nearest_neighbour_under_their_labels():
    small = torch.rand(1, 3, 40, 50)
    tall = torch.rand(3, 60, 30)
    image = labelled_side_by_side([('SR', small), ('Ref', tall)], gap=5)
    factor = 9  # ceil(256 / 30): the shortest side of all panels (the Ref's width) reaches 256
    assert image.shape == (3, LABEL_HEIGHT + factor * 60, factor * 50 + 5 + factor * 30)
    body = image[:, LABEL_HEIGHT:]
    expected = small[0].repeat_interleave(factor, 1).repeat_interleave(factor, 2)
    assert torch.equal(body[:, :factor * 40, :factor * 50], expected)
    assert torch.equal(body[:, factor * 40:, :factor * 50], torch.ones(3, factor * 20, factor * 50))  # white pad
    assert torch.equal(body[:, :, factor * 50:factor * 50 + 5], torch.ones(3, factor * 60, 5))  # gap
    assert torch.equal(body[:, 0, factor * 50 + 5::factor], tall[:, 0])


def test_large_panels_keep_their_size():
    image = labelled_side_by_side([('GT', torch.rand(3, 300, 400))])
    assert image.shape == (3, LABEL_HEIGHT + 300, 400)


@pytest.mark.parametrize('text', ['SR', 'stage-1 SR with a rather long label that must shrink'])
def test_label_text_is_drawn_inside_the_strip(text):
    strip = label_strip(text, 120)
    dark = (strip < 0.5).all(0)
    assert strip.shape == (3, LABEL_HEIGHT, 120)
    assert dark.any()
    columns = dark.any(0).nonzero()
    assert columns.min() >= 0 and columns.max() < 120


def test_different_labels_give_different_strips():
    assert not torch.equal(label_strip('bicubic', 200), label_strip('SR', 200))


def test_write_comparison_writes_the_labelled_png(tmp_path):
    path = tmp_path / 'sub' / 'cmp.png'
    panels = [('bicubic', torch.zeros(1, 3, 64, 64)), ('SR', torch.ones(1, 3, 64, 64))]
    write_comparison(panels, str(path))
    written = cv2.imread(str(path))
    assert written.shape == (LABEL_HEIGHT + 256, 2 * 256 + 6, 3)
    assert np.all(written[LABEL_HEIGHT:, :256] == 0) and np.all(written[LABEL_HEIGHT:, -256:] == 255)
