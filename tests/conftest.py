"""Shared test settings: data location and compile caching."""

import os
from pathlib import Path

import jax
import pytest

# Reuse compiled executables across test processes and runs (JAX on CPU compiles slowly).
_CACHE = Path(os.environ.get("EQAGG_TEST_JAX_CACHE", Path.home() / ".cache" / "eqagg-jax-tests"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def x64():
    """Runs a test body in float64 (for finite-difference checks)."""
    with jax.enable_x64(True):
        yield
