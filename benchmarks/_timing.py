"""Timing and hardware helpers shared by the benchmarks (warm-up, medians, compile time, memory)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def hardware() -> dict[str, Any]:
    """What the numbers were measured on; recorded in every result file."""
    dev = jax.devices()[0]
    info = {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def compile_and_time(
    fn: Callable,
    *args,
    repeats: int = 10,
    warmup: int = 2,
    compiler_options: dict | None = None,
    slow_s: float = 10.0,
) -> dict[str, float]:
    """Times ``jax.jit(fn, compiler_options=...)`` on ``args``: compile time, then steady steps.

    Returns the compile time (first call, which traces, compiles and runs once, minus one median
    step), the median and min step seconds over ``repeats`` calls after ``warmup`` calls (each ended
    with ``block_until_ready``), and XLA's memory analysis of the compiled step (on CPU the only
    honest memory figure available: the buffers XLA plans for arguments, outputs and temporaries,
    not a measured peak).
    """
    jitted = jax.jit(fn, compiler_options=compiler_options or None)
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first = time.perf_counter() - t0
    if first > slow_s:  # a slow step (long tolerance-based solves): fewer repeats, no warm-up
        repeats, warmup = min(repeats, 3), 0
    for _ in range(warmup):
        jax.block_until_ready(jitted(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    out = {"compile_s": max(first - step, 0.0), "step_s": step, "step_min_s": min(times)}
    out.update(memory_of(jitted, *args))
    return out


def memory_of(jitted, *args) -> dict[str, float]:
    """Planned memory of the compiled executable in MiB (XLA's memory analysis)."""
    try:
        m = jitted.lower(*args).compile().memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return {}
    if m is None:
        return {}
    mib = 1 / 2**20
    temp = getattr(m, "temp_size_in_bytes", 0)
    args = getattr(m, "argument_size_in_bytes", 0)
    out = getattr(m, "output_size_in_bytes", 0)
    return {"temp_mib": temp * mib, "planned_mib": (temp + args + out) * mib}


def device_peak_mib() -> float | None:
    """Peak device memory in MiB where the backend reports it (GPU), else None."""
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20
