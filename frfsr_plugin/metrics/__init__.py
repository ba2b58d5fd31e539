"""Metrics are registered by explicit import, as in BasicSR."""
