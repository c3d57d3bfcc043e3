"""Configurations of the Omniglot counting example: ``default`` (CPU), ``test`` (seconds), ``full``."""
