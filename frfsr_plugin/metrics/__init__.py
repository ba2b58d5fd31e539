"""Metrics are registered by explicit import, as in BasicSR."""
from frfsr_plugin.metrics.lpips_metric import calculate_lpips  # noqa: F401
from frfsr_plugin.metrics.matching_accuracy import calculate_matching_accuracy  # noqa: F401
