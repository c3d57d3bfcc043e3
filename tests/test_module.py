"""eqagg.EquilibriumAggregation (Linen and NNX): the paper's layer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import eqagg
from eqagg.nnx import EquilibriumAggregation as NNXEquilibriumAggregation

B, N = 6, 12
X = jax.random.normal(jax.random.key(0), (B, N, 1))
EA = eqagg.EquilibriumAggregation(features=8, hidden=(16, 16), steps=5)


@pytest.fixture(scope="module")
def variables():
    return EA.init(jax.random.key(1), X)


def test_shapes_layouts_and_padding(variables):
    y = EA.apply(variables, X)
    assert y.shape == (B, 8)
    assert EA.apply(variables, X[0]).shape == (8,)
    mask = jnp.ones((B, N), bool).at[2, 5:].set(False)
    xp = jnp.where(mask[..., None], X, jnp.nan)
    padded = EA.apply(variables, xp, mask)
    ids = np.repeat(np.arange(B), N)[np.asarray(mask).reshape(-1)]
    ragged = EA.apply(
        variables, X.reshape(-1, 1)[np.asarray(mask).reshape(-1)], segment_ids=ids, num_segments=B
    )
    np.testing.assert_allclose(padded, ragged, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded[2], EA.apply(variables, X[2, :5]), rtol=1e-5, atol=1e-6)
    perm = jax.random.permutation(jax.random.key(2), N)
    np.testing.assert_allclose(EA.apply(variables, X[:, perm]), y, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_parameter_including_step_size_and_momentum(variables):
    g = jax.grad(lambda v: jnp.sum(EA.apply(v, X) ** 2))(variables)
    flat = jax.tree_util.tree_leaves_with_path(g["params"])
    for path, leaf in flat:
        assert np.any(np.abs(leaf) > 0), jax.tree_util.keystr(path)
    assert {"raw_step_size", "raw_momentum", "raw_regularizer"} <= set(g["params"])


def test_unrolled_and_implicit_agree_when_both_converge(variables):
    # A small step and many steps make the unrolled solve converge on this initialisation.
    unrolled = EA.clone(steps=400)
    implicit = EA.clone(method="implicit", max_steps=2000, options={"tol": 1e-5})
    yu, ru = unrolled.apply(variables, X, return_result=True)
    yi, ri = implicit.apply(variables, X, return_result=True)
    assert bool(ri.converged.all()), ri.residual
    both = np.asarray(ru.converged & ri.converged)
    assert both.any()
    # Both within tol 1e-4..1e-5 of a stationary point whose curvature is >= ~1 -> agree to ~1e-3.
    np.testing.assert_allclose(yu[both], yi[both], atol=2e-3)


def test_diagnostics_are_sown_and_auxiliary_loss_trains_convergence():
    x = jax.random.normal(jax.random.key(3), (16, 20, 1))
    target = jnp.median(x, axis=1)
    model = eqagg.EquilibriumAggregation(features=4, hidden=(16,), steps=5)
    head_init = jnp.zeros((4, 1))

    def loss_fn(p, aux_weight):
        y, state = model.apply({"params": p["ea"]}, x, mutable=[eqagg.DIAGNOSTICS])
        task = jnp.mean((y @ p["head"] - target) ** 2)
        aux = eqagg.collect_auxiliary_loss(state[eqagg.DIAGNOSTICS])
        return task + aux_weight * aux, state[eqagg.DIAGNOSTICS]

    def train(aux_weight):
        p = {"ea": model.init(jax.random.key(4), x)["params"], "head": head_init}
        opt = optax.adam(3e-3)
        s = opt.init(p)

        @jax.jit
        def step(p, s):
            (_, diag), g = jax.value_and_grad(loss_fn, has_aux=True)(p, aux_weight)
            u, s = opt.update(g, s)
            return optax.apply_updates(p, u), s, diag

        for _ in range(150):
            p, s, diag = step(p, s)
        return float(diag["residual"][0])

    # The auxiliary loss penalises inner-step gradient norms, so after training the final
    # gradient norm (the solve's residual) must be clearly lower than without it.
    assert train(aux_weight=1.0) < 0.5 * train(aux_weight=0.0)


def test_jit_vmap_and_bad_input(variables):
    y = jax.jit(lambda v, x: EA.apply(v, x))(variables, X)
    np.testing.assert_allclose(y, EA.apply(variables, X), rtol=1e-5, atol=1e-6)
    yv = jax.vmap(lambda s: EA.apply(variables, s))(X)
    np.testing.assert_allclose(yv, y, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mask has shape"):
        EA.apply(variables, X, jnp.ones((B, N + 1), bool))
    with pytest.raises(ValueError, match="method='nope'"):
        EA.clone(method="nope").apply(variables, X)


def test_nnx_module_matches_linen_given_the_same_parameters(variables):
    m = NNXEquilibriumAggregation(1, 8, hidden=(16, 16), steps=5, rngs=nnx.Rngs(0))
    p = variables["params"]
    for k, v in p["potential"].items():
        m.potential[k][...] = v
    m.raw_step_size[...] = p["raw_step_size"]
    m.raw_momentum[...] = p["raw_momentum"]
    m.raw_regularizer[...] = p["raw_regularizer"]
    np.testing.assert_allclose(m(X), EA.apply(variables, X), rtol=1e-6)
    assert set(m.diagnostics.get_value()) == {
        "aux_loss",
        "residual",
        "last_update",
        "converged_fraction",
    }
    grads = nnx.grad(lambda m: jnp.sum(m(X) ** 2))(m)
    assert np.abs(grads.raw_step_size[...]) > 0
