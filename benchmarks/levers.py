"""The performance levers of issue 8, measured one at a time on the median workload.

    python -m benchmarks.levers --out benchmarks/results          # ~6 min on a 2-core CPU

Every variant is compiled once; then the variants are timed in interleaved rounds (so a change in
machine load hits them all alike) and the table gives each one's fastest round. Rows change one
thing against the row above them. Writes ``levers.md`` and ``levers.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

import eqagg
from benchmarks._timing import hardware, memory_of
from benchmarks._workloads import WORKLOADS, SetModel, init_params, make_batch, make_loss


def implicit(solver: str, step: float | None = None, linear_solver: str = "cg") -> dict:
    options = {"tol": 1e-3, "linear_solver": linear_solver, "linear_solver_tol": 1e-4}
    if step:
        options["step_size"] = step
    return dict(method="implicit", solver=solver, max_steps=3000, options=options)


def variants() -> list[tuple[str, str, dict, dict]]:
    """(group, label, EA overrides, compiler options) of every row, in table order."""
    no_ynn = eqagg.cpu_compiler_options()
    return [
        ("unrolled K=5", "lax.scan, activations kept", dict(steps=5, options={"checkpoint": False}), {}),
        ("unrolled K=5", "+ every step unrolled", dict(steps=5, options={"checkpoint": False, "unroll": True}), {}),
        ("unrolled K=5", "scan + checkpoint (default)", dict(steps=5), {}),
        ("unrolled K=5", "checkpoint + YNNPACK fusions off (default)", dict(steps=5), no_ynn),
        ("unrolled K=20", "lax.scan, activations kept", dict(steps=20, options={"checkpoint": False}), no_ynn),
        ("unrolled K=20", "scan + checkpoint (default)", dict(steps=20), no_ynn),
        ("implicit tol 1e-3", "Nesterov, one CG for the batch", implicit("nesterov", linear_solver="batch_cg"), no_ynn),
        ("implicit tol 1e-3", "Nesterov, CG per set", implicit("nesterov"), no_ynn),
        ("implicit tol 1e-3", "jaxopt Anderson (shared weights), CG per set", implicit("jaxopt_anderson"), no_ynn),
        ("implicit tol 1e-3", "per-set Anderson, step 0.005, CG per set", implicit("anderson", 0.005), no_ynn),
        ("implicit tol 1e-3", "per-set Anderson, step 0.02, CG per set", implicit("anderson", 0.02), no_ynn),
        ("implicit tol 1e-3", "per-set Anderson, step 0.02, YNNPACK on", implicit("anderson", 0.02), {}),
    ]  # fmt: skip


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    w = WORKLOADS["median"]
    batch = make_batch(w)
    params = init_params(w, batch)
    compiled = []
    for group, label, overrides, options in variants():
        fn = jax.value_and_grad(make_loss(SetModel(w, "ea", overrides)), has_aux=True)
        jitted = jax.jit(fn, compiler_options=options or None)
        t0 = time.perf_counter()
        (_, result), _ = jax.block_until_ready(jitted(params, batch))
        first = time.perf_counter() - t0
        row = dict(
            group=group,
            variant=label,
            compiler_options=options,
            inner_steps=int(result.steps),
            converged=float(result.converged.mean()),
            **memory_of(jitted, params, batch),
        )
        compiled.append((row, jitted, first))
        print(f"compiled {group} / {label} ({first:.1f} s)", flush=True)
    times = [[] for _ in compiled]
    for _ in range(a.rounds):
        for i, (_, jitted, _) in enumerate(compiled):
            t0 = time.perf_counter()
            jax.block_until_ready(jitted(params, batch))
            times[i].append(time.perf_counter() - t0)
    rows = []
    for (row, _, first), ts in zip(compiled, times, strict=True):
        row["step_s"] = min(ts)
        row["compile_s"] = max(first - min(ts), 0.0)
        rows.append(row)
    hw = hardware()
    md = [
        f"Levers on the median workload (128 sets x 100 scalars, latent 16, hidden [64, 64]); "
        f"{hw['platform']} / {hw['device']} ({hw['cpu_count']} CPUs), jax {hw['jax']}, load "
        f"average {tuple(round(v, 1) for v in hw.get('load_average', ()))}; fastest of "
        f"{a.rounds} interleaved rounds; {time.perf_counter() - t_start:.0f} s in all.",
        "",
        "| case | variant | train step (ms) | compile (s) | memory (MiB) | inner steps | converged |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        md.append(
            f"| {r['group']} | {r['variant']} | {r['step_s'] * 1e3:.0f} | {r['compile_s']:.1f} | "
            f"{r.get('planned_mib', 0):.0f} | {r['inner_steps']} | {r['converged']:.2f} |"
        )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.md").write_text("\n".join(md) + "\n")
    (out / "levers.json").write_text(json.dumps({"hardware": hw, "rows": rows}, indent=2))
    print("\n".join(md))
    return rows


if __name__ == "__main__":
    main()
