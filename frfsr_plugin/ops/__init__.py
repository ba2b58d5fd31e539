"""Plain-PyTorch operators used by the FRFSR networks (no compiled extensions)."""
