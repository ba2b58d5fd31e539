"""Metrics are registered by explicit import, as in BasicSR."""
from frfsr_plugin.metrics.lpips_metric import calculate_lpips  # noqa: F401
