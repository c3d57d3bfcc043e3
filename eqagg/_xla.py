"""XLA compiler options that make EA's train steps faster on CPU."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# XLA:CPU (jaxlib 0.10) hands elementwise and reduction fusions to YNNPACK. For the many small
# reductions of EA's inner gradients (LayerNorm statistics, per-set sums) those fusions run several
# times slower than XLA's own loops: one gradient of the median benchmark's energy takes 23 ms with
# them and 6 ms without (benchmarks/README.md).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def cpu_compiler_options() -> dict[str, str]:
    """``compiler_options`` for ``jax.jit`` that speed up EA train steps on CPU (``{}`` elsewhere).

    They turn off XLA:CPU's YNNPACK fusions, which are slow on the small reductions of EA's inner
    gradients. Returns ``{}`` when the default backend is not a CPU or when this jaxlib does not
    know the option (checked once by compiling a tiny function), so it is always safe to pass::

        step = jax.jit(train_step, compiler_options=eqagg.cpu_compiler_options())

    Example:
      >>> import jax, eqagg
      >>> opts = eqagg.cpu_compiler_options()
      >>> jax.jit(lambda x: x + 1, compiler_options=opts)(1)
      Array(2, dtype=int32, weak_type=True)
    """
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: jnp.sum(x * x), compiler_options=_CPU_OPTIONS)(jnp.ones(3))
    except Exception:  # noqa: BLE001 - an unknown option is reported differently across versions
        return {}
    return dict(_CPU_OPTIONS)
