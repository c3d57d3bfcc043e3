"""Explicit vs implicit differentiation of Equilibrium Aggregation on the paper's workloads.

One command writes a markdown table, a JSON file and plots::

    python -m benchmarks.run --out benchmarks/results            # default (CPU: ~10-20 min)
    python -m benchmarks.run --config quick --out /tmp/bench     # smoke test (CI)

For every workload (see ``_workloads.py``) and method it records compile time, train-step time
(median over repeats after warm-up, ``block_until_ready``), memory (XLA's planned buffers of the
compiled step on CPU; the device's peak on GPU), the inner solve's convergence and residual, and the
gradient's cosine similarity and relative error against a converged float64 reference (implicit,
per-set Anderson, tol 1e-10). Step size and momentum are excluded from the gradient comparison: they get no
gradient under implicit differentiation. It also times sum pooling in the same model (cost ratios as
in the paper's Appendix E.2) and, when torch and torch-geometric are installed, PyTorch Geometric's
``EquilibriumAggregation`` at the same shapes, and the tox21 GCN of the molecules example with a
sum or an EA readout (the paper's Appendix E.2 comparison in a whole model).

Every step is jitted with :func:`eqagg.cpu_compiler_options` (``--no_xla_options`` leaves XLA's
defaults); the result files say which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import eqagg
from benchmarks import _gnn, _pyg
from benchmarks._timing import compile_and_time, device_peak_mib, hardware
from benchmarks._workloads import (
    WORKLOADS,
    SetModel,
    init_params,
    make_batch,
    make_loss,
    tiny,
)

NO_IMPLICIT_GRADIENT = ("raw_step_size", "raw_momentum")
XLA_OPTIONS: dict = {}  # set by main(): eqagg.cpu_compiler_options() unless --no_xla_options


def _tol(tol: float) -> str:
    return f"{tol:.0e}".replace("e-0", "e-")


def method_grid(config: str, w) -> dict[str, dict]:
    """Method label -> EquilibriumAggregation overrides."""

    def implicit(solver, tol, **extra):
        options = {
            "tol": tol,
            "linear_solver": "cg",
            "linear_solver_tol": 1e-6,
            "linear_solver_maxiter": 200,
            **extra,
        }
        return dict(method="implicit", solver=solver, max_steps=3000, options=options)

    anderson_step = {"step_size": w.anderson_step_size}
    if config == "quick":
        return {
            "unrolled K=5": dict(steps=5),
            "unrolled K=5 no checkpoint": dict(steps=5, options={"checkpoint": False}),
            "implicit nesterov tol=1e-4": implicit("nesterov", 1e-4),
            "implicit anderson tol=1e-4": implicit("anderson", 1e-4, **anderson_step),
            "implicit jaxopt_anderson tol=1e-4": implicit("jaxopt_anderson", 1e-4),
            "truncated K=10 k=3": dict(method="truncated", steps=10, options={"k": 3}),
            "one_step tol=1e-4": dict(method="one_step", options={"tol": 1e-4}),
        }
    grid = {f"unrolled K={k}": dict(steps=k) for k in (2, 5, 10, 20, 50)}
    grid["unrolled K=50 no checkpoint"] = dict(steps=50, options={"checkpoint": False})
    for tol in (1e-3, 1e-4, 1e-5, 1e-6):
        grid[f"implicit nesterov tol={_tol(tol)}"] = implicit("nesterov", tol)
    for tol in (1e-3, 1e-4, 1e-5, 1e-6):
        grid[f"implicit anderson tol={_tol(tol)}"] = implicit("anderson", tol, **anderson_step)
    grid["implicit anderson tol=1e-3 cg=1e-3"] = implicit(
        "anderson", 1e-3, **anderson_step, linear_solver_tol=1e-3
    )
    # jaxopt's forward solvers: every tolerance in the full config, the ends on the median workload.
    tols = (
        (1e-3, 1e-4, 1e-5, 1e-6) if config == "full" else (1e-3, 1e-6) if w.name == "median" else ()
    )
    for solver in ("jaxopt_anderson", "fixed_point", "accelerated_gd"):
        for tol in tols:
            grid[f"implicit {solver} tol={_tol(tol)}"] = implicit(solver, tol)
    grid["truncated K=50 k=10"] = dict(method="truncated", steps=50, options={"k": 10})
    grid["one_step tol=1e-5"] = dict(method="one_step", max_steps=3000, options={"tol": 1e-5})
    return grid


def _flat(g) -> np.ndarray:
    """The gradient's leaves (less step size and momentum) as one float64 host vector."""

    def keep(path):
        return not any(getattr(k, "key", None) in NO_IMPLICIT_GRADIENT for k in path)

    leaves = [v for p, v in jax.tree_util.tree_leaves_with_path(g) if keep(p)]
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in leaves])


def reference_gradient(w, params, batch):
    """Converged float64 gradient (implicit, per-set Anderson to tol 1e-10, CG to 1e-12)."""
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        b64 = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            batch,
        )
        model = SetModel(
            w,
            "ea",
            dict(
                method="implicit",
                solver="anderson",
                max_steps=20000,
                options={
                    "tol": 1e-10,
                    "linear_solver_tol": 1e-12,
                    "linear_solver_maxiter": 1000,
                    "history_size": 10,
                },
            ),
        )
        (_, result), g = jax.jit(
            jax.value_and_grad(make_loss(model), has_aux=True), compiler_options=XLA_OPTIONS
        )(p64, b64)
        return np.asarray(_flat(g)), {
            "converged_fraction": float(result.converged.mean()),
            "max_residual": float(result.residual.max()),
            "inner_steps": int(result.steps),
        }


def _grads_only(fn):
    return lambda p, b: fn(p, b)[1]


def bench_workload(w, config: str, repeats: int, progress) -> dict:
    batch = make_batch(w)
    params = init_params(w, batch)
    ref, ref_stats = reference_gradient(w, params, batch)
    rows = []
    sum_loss = jax.value_and_grad(make_loss(SetModel(w, "sum")), has_aux=True)
    t_sum = compile_and_time(
        _grads_only(sum_loss),
        init_params(w, batch, "sum"),
        batch,
        repeats=repeats,
        compiler_options=XLA_OPTIONS,
    )
    rows.append({"method": "sum pooling", **t_sum})
    for label, overrides in progress(method_grid(config, w).items(), w.name):
        fn = jax.value_and_grad(make_loss(SetModel(w, "ea", overrides)), has_aux=True)
        timing = compile_and_time(
            _grads_only(fn), params, batch, repeats=repeats, compiler_options=XLA_OPTIONS
        )
        (_, result), g = jax.jit(fn, compiler_options=XLA_OPTIONS)(params, batch)
        gv = np.asarray(_flat(g))
        rows.append(
            {
                "method": label,
                **timing,
                "vs_sum": timing["step_s"] / t_sum["step_s"],
                "inner_steps": int(result.steps),
                "converged_fraction": float(result.converged.mean()),
                "max_residual": float(result.residual.max()),
                "grad_cosine": float(gv @ ref / (np.linalg.norm(gv) * np.linalg.norm(ref))),
                "grad_rel_error": float(np.linalg.norm(gv - ref) / np.linalg.norm(ref)),
            }
        )
    peak = device_peak_mib()
    out = {
        "workload": w.__dict__ | {"hidden": list(w.hidden), "encoder": list(w.encoder)},
        "reference": ref_stats,
        "rows": rows,
    }
    if peak is not None:
        out["device_peak_mib"] = peak
    return out


def bench_pyg(w, repeats: int) -> dict | None:
    """PyG vs ours at K=5 on the segment layout of ``w`` (same potential widths, no encoder)."""
    if not _pyg.available():
        return None
    batch = make_batch(w)
    x = np.asarray(batch["x"]).reshape(-1, w.in_features)
    ids = np.repeat(np.arange(w.num_sets), x.shape[0] // w.num_sets).astype(np.int32)
    if w.ragged:
        ids = np.asarray(batch["segment_ids"])
    theirs = _pyg.time_train_step(
        x, ids, w.num_sets, w.latent, list(w.hidden), steps=5, repeats=repeats
    )
    flat = dataclasses.replace(w, encoder=(), ragged=True)
    b = {"x": jnp.asarray(x), "segment_ids": jnp.asarray(ids), "target": batch["target"]}
    params = init_params(flat, b)
    fn = jax.value_and_grad(make_loss(SetModel(flat, "ea", dict(steps=5))), has_aux=True)
    ours = compile_and_time(
        _grads_only(fn), params, b, repeats=repeats, compiler_options=XLA_OPTIONS
    )
    return {
        "workload": w.name,
        "pyg_step_s": theirs["step_s"],
        "eqagg_step_s": ours["step_s"],
        "ratio_eqagg_over_pyg": ours["step_s"] / theirs["step_s"],
        "torch": theirs["torch"],
        "torch_threads": theirs["threads"],
        "note": "grads only for eqagg; PyG step includes Adam",
    }


def bench_gnn(config: str, repeats: int, data_dir: str | None) -> dict:
    """The tox21 GCN with a sum readout vs EA readouts of 2, 5 and 10 unrolled steps."""
    w = _gnn.GNNWorkload() if config != "quick" else _gnn.tiny(_gnn.GNNWorkload())
    batch, source = _gnn.make_batch(w, data_dir)
    batch = _gnn.as_device(batch)
    rows = []
    for label, readout, steps in (
        ("sum readout", "sum", None),
        ("EA-2 readout", "ea", 2),
        ("EA-5 readout", "ea", 5),
        ("EA-10 readout", "ea", 10),
    ):
        if config == "quick" and steps not in (None, 5):
            continue
        model = _gnn.make_model(w, readout, {"steps": steps} if steps else None)
        params, stats = _gnn.init(model, batch)
        timing = compile_and_time(
            _gnn.grad_fn(model), params, stats, batch, repeats=repeats, compiler_options=XLA_OPTIONS
        )
        rows.append({"method": label, **timing})
    for r in rows:
        r["vs_sum"] = r["step_s"] / rows[0]["step_s"]
        r["compile_vs_sum"] = r["compile_s"] / max(rows[0]["compile_s"], 1e-9)
    return {
        "workload": dataclasses.asdict(w) | {"data": source},
        "rows": rows,
    }


def targets(res: dict) -> list[dict]:
    """Issue 8's targets, read off this run."""
    out = []
    pyg = next((p for p in res.get("pyg", []) if p["workload"] == "median"), None)
    if pyg:
        out.append(
            dict(
                target="EA-5 train step / PyG's (median shapes)",
                goal="<= 0.5",
                value=pyg["ratio_eqagg_over_pyg"],
            )
        )
    med = next((w for w in res["workloads"] if w["workload"]["name"] == "median"), None)
    if med:
        rows = {r["method"]: r for r in med["rows"]}
        k50, k5 = rows.get("unrolled K=50"), rows.get("unrolled K=5")
        good = [
            r
            for r in med["rows"]
            if r["method"].startswith("implicit") and r.get("grad_cosine", 0) >= 0.99
        ]
        if k50 and good:
            best = min(good, key=lambda r: r["step_s"])
            out.append(
                dict(
                    target=f"K=50 step / fastest implicit with cosine >= 0.99 ({best['method']})",
                    goal=">= 3",
                    value=k50["step_s"] / best["step_s"],
                )
            )
        if k50 and k5 and "planned_mib" in k50:
            out.append(
                dict(
                    target="memory K=50 / K=5 (median)",
                    goal="<= 1.1",
                    value=k50["planned_mib"] / k5["planned_mib"],
                )
            )
    if res.get("gnn"):
        rows = {r["method"]: r for r in res["gnn"]["rows"]}
        if "EA-5 readout" in rows:
            out.append(
                dict(
                    target="tox21 GCN: EA-5 readout step / sum readout step",
                    goal="<= 1.5",
                    value=rows["EA-5 readout"]["vs_sum"],
                )
            )
            out.append(
                dict(
                    target="tox21 GCN: EA-5 compile time / sum compile time",
                    goal="<= 2",
                    value=rows["EA-5 readout"]["compile_vs_sum"],
                )
            )
    return out


def to_markdown(res: dict) -> str:
    hw = res["hardware"]
    out = [
        f"Hardware: {hw['platform']} / {hw['device']} ({hw['cpu_count']} CPUs), jax {hw['jax']}, "
        f"load average {tuple(round(v, 1) for v in hw.get('load_average', ()))}; "
        f"wall time {res['wall_s']:.0f} s; XLA compiler options {res['xla_options'] or 'default'}.",
        "",
    ]
    for wres in res["workloads"]:
        w = wres["workload"]
        ref = wres["reference"]
        out += [
            f"### {w['name']}: {w['num_sets']} sets x {w['set_size']} x {w['in_features']}-d, "
            f"latent {w['latent']}, hidden {w['hidden']}",
            f"Reference (float64 implicit, per-set Anderson, tol 1e-10): converged {ref['converged_fraction']:.2f}, "
            f"max residual {ref['max_residual']:.1e}, {ref['inner_steps']} inner steps.",
            "",
            "| method | step (ms) | x sum | compile (s) | memory (MiB) | inner steps | converged | "
            "max residual | grad cosine | grad rel. err |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in wres["rows"]:

            def f(k, fmt, r=r):
                return format(r[k], fmt) if k in r else ""

            out.append(
                f"| {r['method']} | {r['step_s'] * 1e3:.1f} | {f('vs_sum', '.2f')} | "
                f"{r['compile_s']:.1f} | {f('planned_mib', '.0f')} | {f('inner_steps', 'd')} | "
                f"{f('converged_fraction', '.2f')} | {f('max_residual', '.1e')} | "
                f"{f('grad_cosine', '.5f')} | {f('grad_rel_error', '.1e')} |"
            )
        out.append("")
    if res.get("gnn"):
        g = res["gnn"]
        w = g["workload"]
        out += [
            f"### tox21 {w['model'].upper()} ({w['num_layers']} layers, {w['features']}-d, batch of "
            f"{w['batch_size']} graphs: {w['data']}), readout cost",
            "",
            "| readout | step (ms) | x sum | compile (s) | compile x sum | memory (MiB) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in g["rows"]:
            out.append(
                f"| {r['method']} | {r['step_s'] * 1e3:.1f} | {r['vs_sum']:.2f} | "
                f"{r['compile_s']:.1f} | {r['compile_vs_sum']:.2f} | {r.get('planned_mib', 0):.0f} |"
            )
        out.append("")
    if res.get("pyg"):
        out += [
            "### PyTorch Geometric EquilibriumAggregation, 5 steps, same shapes",
            "",
            "| workload | PyG step (ms) | eqagg step (ms) | eqagg / PyG |",
            "| --- | --- | --- | --- |",
        ]
        for p in res["pyg"]:
            out.append(
                f"| {p['workload']} | {p['pyg_step_s'] * 1e3:.1f} | {p['eqagg_step_s'] * 1e3:.1f} "
                f"| {p['ratio_eqagg_over_pyg']:.2f} |"
            )
    if res.get("targets"):
        out += ["", "### Issue 8 targets in this run", "", "| target | goal | measured |"]
        out.append("| --- | --- | --- |")
        for t in res["targets"]:
            out.append(f"| {t['target']} | {t['goal']} | {t['value']:.2f} |")
    return "\n".join(out) + "\n"


def plot(res: dict, path: Path) -> None:
    """Gradient relative error against train-step time, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    labels = []
    for wres in res["workloads"]:
        labels += [
            r["method"] for r in wres["rows"] if "grad_rel_error" in r and r["method"] not in labels
        ]
    cmap = plt.get_cmap("tab20")
    color = {m: cmap(i % 20) for i, m in enumerate(labels)}

    def marker(m):
        if "jaxopt" in m or "fixed_point" in m or "accelerated_gd" in m:
            return "D"
        return {"unrolled": "o", "implicit": "s", "truncated": "^"}.get(m.split()[0], "X")

    fig, axes = plt.subplots(
        1, len(res["workloads"]), figsize=(5 * len(res["workloads"]) + 3, 4.2), squeeze=False
    )
    for ax, wres in zip(axes[0], res["workloads"], strict=True):
        for r in wres["rows"]:
            if "grad_rel_error" not in r:
                continue
            m = r["method"]
            ax.scatter(r["step_s"] * 1e3, r["grad_rel_error"], color=color[m], marker=marker(m))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("train step (ms)")
        ax.set_ylabel("gradient relative error vs float64 reference")
        ax.set_title(wres["workload"]["name"])
        ax.grid(True, which="major", alpha=0.3)
    handles = [
        Line2D([], [], color=color[m], marker=marker(m), linestyle="", label=m) for m in labels
    ]
    fig.legend(handles=handles, fontsize=6, loc="center right")
    hw = res["hardware"]
    fig.suptitle(f"{hw['platform']} / {hw['device']} ({hw['cpu_count']} CPUs), jax {hw['jax']}")
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    import time

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=("quick", "default", "full"), default="default")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--workloads", default="median,omniglot,molecules")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no_pyg", action="store_true")
    p.add_argument("--no_gnn", action="store_true", help="skip the tox21 GCN readout comparison")
    p.add_argument(
        "--no_xla_options",
        action="store_true",
        help="jit with XLA's defaults instead of eqagg.cpu_compiler_options()",
    )
    a = p.parse_args(argv)
    global XLA_OPTIONS
    XLA_OPTIONS = {} if a.no_xla_options else eqagg.cpu_compiler_options()
    repeats = a.repeats or (2 if a.config == "quick" else 10)
    try:
        from tqdm import tqdm

        def progress(items, name):
            return tqdm(list(items), desc=name, disable=None)
    except ImportError:  # pragma: no cover

        def progress(items, name):
            return items

    t0 = time.perf_counter()
    workloads = [WORKLOADS[n] for n in a.workloads.split(",")]
    if a.config == "quick":
        workloads = [tiny(w) for w in workloads]
    res = {
        "config": a.config,
        "workloads": [bench_workload(w, a.config, repeats, progress) for w in workloads],
    }
    if not a.no_gnn:
        from examples.common.data_dir import resolve_data_dir

        try:
            data_dir = str(resolve_data_dir(None))
        except (FileNotFoundError, ValueError):
            data_dir = None
        res["gnn"] = bench_gnn(a.config, repeats, data_dir)
    if not a.no_pyg:
        res["pyg"] = [r for r in (bench_pyg(w, repeats) for w in workloads[:1]) if r]
    res["xla_options"] = XLA_OPTIONS
    res["targets"] = targets(res)
    res["wall_s"] = time.perf_counter() - t0
    res["hardware"] = hardware()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=float))
    md = to_markdown(res)
    (out / "results.md").write_text(md)
    plot(res, out / "accuracy_vs_time.png")
    print(md)
    return res


if __name__ == "__main__":
    main()
