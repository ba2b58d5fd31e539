"""Restoration of LR images with references: the reference pipeline, tiles, the memory planner and inference."""
