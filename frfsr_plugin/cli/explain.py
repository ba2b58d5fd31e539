"""``frfsr infer --explain``: the image of what an LR drew from its references, and its one-line summary."""
from functools import partial

from frfsr_plugin.data.transforms import SUPPORTED_SCALE
from frfsr_plugin.restoration.explanation import explain_matches, summarize
from frfsr_plugin.utils.colormap import category_colours, colormap, colour_scale_bar, legend
from frfsr_plugin.utils.comparison import labelled_side_by_side_with_keys, save_image

PANEL_LABELS = ('match confidence', 'reference drawn from', 'warped reference', 'SR')
CONFIDENCE_CAPTION = 'best cosine similarity'


def confidence_range(confidence):
    """(low, high) of the confidence colours: the map's range, widened to 1e-3 when it is flat."""
    low, high = confidence.min().item(), confidence.max().item()
    return (low, high) if high - low >= 1e-3 else ((low + high) / 2 - 5e-4, (low + high) / 2 + 5e-4)


def explanation_figure(explanation, sr, ref_names):
    """The panels of :data:`PANEL_LABELS`, all at SR size, with a colour scale under the confidence and a legend
    under the sources.

    Args:
        explanation (MatchExplanation): Of one image (batch of one), maps (1, h, w).
        sr (Tensor): The SR, (1, 3, 4h, 4w).
        ref_names (Sequence[str]): One name per reference of the canvas (``explanation.num_refs``).

    Returns:
        Tensor: RGB in [0, 1], (3, H, W) (:func:`~frfsr_plugin.utils.comparison.labelled_side_by_side_with_keys`).
    """
    scale = sr.shape[-1] // explanation.confidence.shape[-1]
    low, high = confidence_range(explanation.confidence)
    colours = category_colours(explanation.num_refs)
    maps = (colormap(explanation.confidence[0], low, high), colours[explanation.source[0].cpu()].permute(2, 0, 1))
    maps = [image.repeat_interleave(scale, 1).repeat_interleave(scale, 2) for image in maps]
    images = (*maps, explanation.warped_ref[0].cpu(), sr[0].cpu())
    scale_bar = partial(colour_scale_bar, low, high, caption=CONFIDENCE_CAPTION)
    keys = [scale_bar, partial(legend, ref_names, colours), None, None]
    return labelled_side_by_side_with_keys(list(zip(PANEL_LABELS, images)), keys)


def summary_line(name, summary, ref_names, threshold):
    """``<name>: mean confidence 0.9812, 97.3% of pixels above 0.5; drawn from a.png 12.0%, b.png 88.0%``."""
    shares = ', '.join(f'{ref} {100 * share:.1f}%' for ref, share in zip(ref_names, summary.shares))
    return (f'{name}: mean confidence {summary.mean_confidence:.4f}, {100 * summary.share_above:.1f}% of pixels '
            f'above {threshold:g}; drawn from {shares}')


def write_explanation(name, restoration, inputs, ref_names, threshold, path):
    """Write the explanation image of one restored LR image and return its summary line.

    Args:
        name (str): The LR's name, the line's prefix.
        restoration (Restoration): From :meth:`~frfsr_plugin.restoration.inference.RefSRInferencer.
            super_resolve_with_inputs`, SR cropped to (1, 3, 4h, 4w).
        inputs (PreparedInputs): What it restored.
        ref_names (Sequence[str]): The references' file names; on the padded canvas several, stitched into one
            reference, are named together.
        threshold (float): Confidence threshold of the summary, in [-1, 1].
        path (str): PNG path.

    Returns:
        str: :func:`summary_line`.
    """
    lr_size = tuple(side // SUPPORTED_SCALE for side in inputs.output_size)
    explanation = explain_matches(restoration.matches, inputs.batch['ref'], lr_size)
    names = list(ref_names) if explanation.num_refs == len(ref_names) else [' + '.join(ref_names)]
    save_image(explanation_figure(explanation, restoration.sr, names), path)
    return summary_line(name, summarize(explanation, threshold), names, threshold)
