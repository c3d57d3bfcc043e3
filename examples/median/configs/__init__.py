"""Configurations of the median example: ``default`` (2-core CPU), ``test`` (seconds), ``full`` (GPU)."""
