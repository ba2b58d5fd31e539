"""Command-line entry points: ``basicsr`` (train/test launcher) and ``frfsr`` (demo)."""
