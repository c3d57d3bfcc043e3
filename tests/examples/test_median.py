"""Tests of the median-estimation example (``examples/median``): data, models, sweep, flags.

The default suite stays fast: tiny models on sets of 10 numbers, one compiled train step per model
kind. The end-to-end run of ``configs/test.py`` is marked slow (it compiles 4 models x 3 functions).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from examples.common import count_params
from examples.median import input_pipeline as ip
from examples.median import main as median_main
from examples.median import models, train
from examples.median.configs import default, full
from examples.median.configs import test as test_config

# --- Data ----------------------------------------------------------------------------------------


def test_labels_are_the_medians_of_the_sets():
    batch = ip.train_batch(seed=0, step=3, batch_size=64, set_size=100)
    assert batch["x"].shape == (64, 100, 1) and batch["x"].dtype == np.float32
    assert batch["y"].shape == (64,) and batch["kind"].shape == (64,)
    # Exact: the label is numpy's median of the very float32 numbers the model sees.
    np.testing.assert_array_equal(batch["y"], np.median(batch["x"][..., 0], axis=1))


def test_all_three_distributions_occur_and_look_like_themselves():
    data = ip.eval_set(seed=0, num_sets=600, set_size=100)
    counts = np.bincount(data["kind"], minlength=len(ip.DISTRIBUTIONS))
    # Each kind has probability 1/3: 600 draws give 200 +- 12 (1 sd) of each; 120 is > 6 sd below.
    assert (counts > 120).all(), counts
    x = data["x"][..., 0]
    uniform, gamma, normal = (x[data["kind"] == k] for k in range(3))
    assert uniform.min() >= -1 and uniform.max() <= 1
    assert gamma.min() > 0  # Gamma samples are positive; the others are not.
    assert normal.min() < 0 < gamma.min()
    # Each set's median lies near its distribution's population median (sd of a sample median
    # of 100 is <= 0.1 here; 0.5 is 5 sd).
    pop = np.array([d.median for d in ip.DISTRIBUTIONS])[data["kind"]]
    assert np.abs(data["y"] - pop).max() < 0.5


def test_batches_are_a_function_of_seed_and_step():
    a = ip.train_batch(seed=1, step=5, batch_size=8, set_size=20)
    b = ip.train_batch(seed=1, step=5, batch_size=8, set_size=20)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other_step = ip.train_batch(seed=1, step=6, batch_size=8, set_size=20)
    other_seed = ip.train_batch(seed=2, step=5, batch_size=8, set_size=20)
    assert not np.array_equal(a["x"], other_step["x"])
    assert not np.array_equal(a["x"], other_seed["x"])
    # The evaluation sets come from their own stream, never from a training step.
    held_out = ip.eval_set(seed=1, num_sets=8, set_size=20)
    assert not np.array_equal(held_out["x"], ip.train_batch(1, 0, 8, 20)["x"])
    np.testing.assert_array_equal(held_out["x"], ip.eval_set(seed=1, num_sets=8, set_size=20)["x"])


def test_make_sets_rejects_empty_requests():
    with pytest.raises(ValueError, match="set_size"):
        ip.make_sets(np.random.default_rng(0), num_sets=2, set_size=0)


# --- Models and training -------------------------------------------------------------------------

TINY = dataclasses.replace(
    test_config.get_config(),
    set_size=10,
    potential_hidden=(8,),
    ea_steps=2,
    implicit_max_steps=30,
    batch_size=16,
    learning_rate=1e-2,
    num_train_steps=15,
)


# The tiny implicit model's backward solves may miss their tolerance; the loss still goes down.
@pytest.mark.filterwarnings("ignore::solvers.ConvergenceWarning")
@pytest.mark.parametrize("aggregator", models.AGGREGATORS)
def test_a_few_training_steps_lower_the_loss(aggregator):
    model = train.make_model(TINY, aggregator, embedding_size=4)
    loss_fn = train.make_loss_fn(model, train.aux_weight(TINY, aggregator))
    optimizer = train.make_optimizer(TINY.learning_rate, TINY.grad_clip_norm, TINY.num_train_steps)
    params, model_state = jax.jit(train.make_init_fn(model, TINY.set_size))(jax.random.key(0))
    batch = ip.train_batch(0, 0, TINY.batch_size, TINY.set_size)
    rng = jax.random.key(1)

    @jax.jit  # One compile per model kind; the loop below reuses it.
    def step(params, opt_state):
        (loss, (metrics, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, model_state, batch, rng
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, loss, metrics

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(TINY.num_train_steps):
        params, opt_state, loss, metrics = step(params, opt_state)
        losses.append(float(loss))
    assert step._cache_size() == 1
    assert np.isfinite(losses).all(), losses
    # Fitting one fixed batch: 15 Adam steps at lr 1e-2 at least halve the error of any of the
    # models from their random start (measured: by 5-100x).
    assert losses[-1] < 0.5 * losses[0], losses
    if aggregator in models.EA_AGGREGATORS:
        assert set(metrics) == {"mse", "aux_loss", "residual", "converged_fraction"}
    else:
        assert set(metrics) == {"mse"}

    # The eval function computes the MSE of the same forward pass, per distribution too.
    data = ip.eval_set(0, 20, TINY.set_size)
    metrics = train.make_eval_fn(model, data, batch_size=10)(params, model_state)
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["diagnostics"])[0])
    pred = np.asarray(apply(params, data["x"]))
    err = (pred.astype(np.float64) - data["y"]) ** 2
    # float32 forward passes in chunks of 10 vs all 20 at once: agree to float32 rounding.
    np.testing.assert_allclose(metrics["mse"], err.mean(), rtol=1e-4)
    for k, dist in enumerate(ip.DISTRIBUTIONS):
        if (data["kind"] == k).any():
            np.testing.assert_allclose(
                metrics[f"mse_{dist.name}"], err[data["kind"] == k].mean(), rtol=1e-4
            )


def test_factories_return_the_same_functions_for_equal_arguments():
    # `fit` caches compiled steps by the identity of loss_fn and optimizer.
    model = train.make_model(TINY, "ea", 4)
    assert train.make_model(TINY, "ea", 4) == model
    assert train.make_loss_fn(model, 1e-3) is train.make_loss_fn(
        train.make_model(TINY, "ea", 4), 1e-3
    )
    assert train.make_optimizer(1e-3, 1.0, 10) is train.make_optimizer(1e-3, 1.0, 10)


def test_models_report_the_parameter_counts_of_their_parts():
    x = np.zeros((2, 10, 1), np.float32)
    counts = {}
    for aggregator in models.AGGREGATORS:
        model = train.make_model(TINY, aggregator, 4)
        params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
        counts[aggregator] = count_params(params)
        expected = {"embed", "output"} if "ea" not in aggregator else {"pool", "output"}
        if aggregator == "attention":
            expected.add("pool")  # Sum pooling has no parameters.
        assert set(params) == expected
    # Same output network everywhere; sum has no pooling parameters.
    assert counts["sum"] < counts["attention"]


def test_unknown_aggregator_and_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="aggregators"):
        train.check_config(dataclasses.replace(TINY, aggregators=("max",)))
    with pytest.raises(ValueError, match="num_heads"):
        train.check_config(dataclasses.replace(TINY, embedding_sizes=(6,)))
    with pytest.raises(ValueError, match="eval_batch_size"):
        train.check_config(dataclasses.replace(TINY, num_eval_sets=30, eval_batch_size=20))


def test_results_table_and_figure(tmp_path):
    results = [
        {
            "aggregator": a,
            "embedding_size": d,
            "params": 100 * d,
            "mse": m / d,
            "train_seconds": 1.0,
        }
        | ({"converged_fraction": 0.5, "residual": 0.1} if a == "ea" else {})
        for a, m in (("sum", 0.1), ("ea", 0.01))
        for d in (4, 8)
    ]
    refs = {"constant": 0.1, "sample_mean": 0.01, "population_median": 0.005}
    text = train.results_markdown(results, refs, TINY)
    assert "| sum | 4 | 400 | 0.025 |" in text
    assert "| sum | 0.0177 | 0.0125 | 10.00 |" in text  # geometric mean, best, ratio to EA
    path = train.plot_mse(results, refs, tmp_path / "fig.png")
    assert path.stat().st_size > 1000


# --- Configs and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [default, test_config, full])
def test_configs_are_valid(module):
    train.check_config(module.get_config())


def test_flags_load_configs_and_apply_overrides(tmp_path):
    config = median_main.load_config("test")
    assert config == test_config.get_config()
    config = median_main.apply_overrides(
        config,
        [
            "--config.embedding_sizes=8,16",
            "--config.learning_rate=1",
            "--config.num_train_steps=7",
            "--config.progress_bar=true",
            "--config.aggregators=sum",
        ],
    )
    assert config.embedding_sizes == (8, 16) and config.aggregators == ("sum",)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.num_train_steps == 7 and config.progress_bar is True
    path = tmp_path / "mine.py"
    path.write_text(
        "import dataclasses\nfrom examples.median.configs import default\n"
        "def get_config():\n    return dataclasses.replace(default.get_config(), seed=5)\n"
    )
    assert median_main.load_config(str(path)).seed == 5
    with pytest.raises(SystemExit, match="no field"):
        median_main.apply_overrides(config, ["--config.nope=1"])
    with pytest.raises(SystemExit, match="neither"):
        median_main.load_config("nonexistent")


# --- End to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_test_config_end_to_end_and_restart_skips_finished_runs(tmp_path, monkeypatch, capsys):
    config = test_config.get_config()
    results = train.train_and_evaluate(config, tmp_path)
    assert [(r["aggregator"], r["embedding_size"]) for r in results] == [
        (a, d) for a in config.aggregators for d in config.embedding_sizes
    ]
    for r in results:
        assert np.isfinite(r["mse"]) and r["steps"] == config.num_train_steps and r["params"] > 0
    assert "| ea_implicit | 4 |" in capsys.readouterr().out
    assert (tmp_path / "results.md").read_text().startswith("### Median estimation")
    assert (tmp_path / "mse_vs_embedding.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == len(results)

    # A restart finds every run finished and trains nothing.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "train_run", no_training)
    assert train.train_and_evaluate(config, tmp_path) == results
    # Other model settings in the same workdir are refused, loop settings are not.
    with pytest.raises(ValueError, match="embed_width"):
        train.train_and_evaluate(dataclasses.replace(config, embed_width=16), tmp_path)
    train.train_and_evaluate(dataclasses.replace(config, progress_bar=True), tmp_path)
