"""eqagg.solve_aggregation: closed forms, layouts, invariances, gradients and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqagg

KEY = jax.random.key(0)
B, N, D = 4, 9, 2  # odd N, so the median is one element


def sets(key=KEY, shape=(B, N, D)):
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


# Each Table 1 energy with solver settings suited to its curvature, the closed form it must recover,
# and the documented tolerance of the recovery.
CASES = {
    # Quadratic, curvature 2 (mean scaling): converges to tol 1e-5 -> error ~1e-5.
    "mean": (eqagg.mean_energy(), dict(step_size=0.05), lambda x: x.mean(-2), 5e-5),
    # Pseudo-Huber with delta=1e-3: the minimiser is within ~delta of the median (docstring).
    "median": (
        eqagg.median_energy(delta=1e-3),
        dict(step_size=1e-3, momentum=0.9, max_steps=4000, tol=1e-5),
        lambda x: np.median(x, axis=-2),
        2e-3,
    ),
    # Quadratic with curvature 1: exact up to tol.
    "sum": (eqagg.sum_energy(), dict(step_size=0.5), lambda x: x.sum(-2), 5e-5),
    # Smoothed hinge (b=100, weight 2): y* in [max, max + log(2N)/b], log(18)/100 = 0.029.
    "max": (
        eqagg.max_energy(sharpness=100.0),
        dict(step_size=4 / (2 * 100 * N), momentum=0.9, max_steps=4000),
        lambda x: x.max(-2),
        np.log(2 * N) / 100,
    ),
}


def _flatten(x, mask):
    """Padded [B, N, d] + mask -> ragged [T, d] + segment_ids (the jraph layout)."""
    mask = np.asarray(mask)
    ids = np.repeat(np.arange(x.shape[0]), x.shape[1])[mask.reshape(-1)]
    return np.asarray(x).reshape(-1, x.shape[-1])[mask.reshape(-1)], ids


@pytest.mark.parametrize("layout", ["single", "padded", "segments"])
@pytest.mark.parametrize("name", list(CASES))
def test_table1_energies_recover_their_closed_forms(name, layout):
    spec, opts, closed_form, tol = CASES[name]
    x = sets()
    mask = np.ones((B, N), bool)
    mask[1, -2:] = False  # set 1 has N - 2 elements
    if layout == "single":
        r = eqagg.solve_aggregation(spec, x[0], method="implicit", **opts)
        expected = closed_form(np.asarray(x[0]))
    elif layout == "padded":
        r = eqagg.solve_aggregation(spec, x, mask=jnp.asarray(mask), method="implicit", **opts)
        expected = np.stack([closed_form(np.asarray(x[b])[mask[b]]) for b in range(B)])
    else:
        flat, ids = _flatten(x, mask)
        r = eqagg.solve_aggregation(
            spec, flat, segment_ids=ids, num_segments=B, method="implicit", **opts
        )
        expected = np.stack([closed_form(np.asarray(x[b])[mask[b]]) for b in range(B)])
    assert np.all(r.converged), r.residual
    if name == "max":  # one-sided: the smoothed max never undershoots the max
        assert np.all(r.value >= expected - 1e-5) and np.all(r.value <= expected + tol)
    else:
        np.testing.assert_allclose(r.value, expected, atol=tol)


def test_attention_energy_is_softmax_attention():
    x = sets()
    q = jnp.array([0.7, -1.2])
    r = eqagg.solve_aggregation(
        eqagg.attention_energy(), x, q, method="implicit", step_size=0.05, momentum=0.9
    )
    w = jax.nn.softmax(x @ q, axis=1)
    assert r.latent.shape == (B, D + 1) and r.value.shape == (B, D)
    # Quadratic with unit curvature solved to tol 1e-5; the readout divides by sum(w) ~ N.
    np.testing.assert_allclose(r.value, jnp.einsum("bn,bnd->bd", w, x), atol=1e-5)


def potential(x, y, p):
    """A small neural-style potential, strongly convex in y for |u| < 1 (curvature <= ~3)."""
    h = jnp.tanh(p["w"] @ x + p["u"] * y)
    r = y - x[0]
    log_cosh = r + jax.nn.softplus(-2 * r) - jnp.log(2.0)
    return jnp.sum((y - h) ** 2) + 0.1 * jnp.sum(log_cosh)


def params(dtype=jnp.float32):
    return {"w": jnp.array([[0.5, -0.3], [0.2, 0.8]], dtype), "u": jnp.array([0.3, -0.2], dtype)}


def test_layouts_agree_and_padding_changes_nothing():
    x = sets()
    mask = np.ones((B, N), bool)
    mask[0, 3:] = False
    mask[2, :] = False  # an empty set
    garbage = jnp.where(jnp.asarray(mask)[..., None], x, jnp.nan)  # NaN in every padded slot
    opts = dict(method="unrolled", steps=40, step_size=0.05)
    padded = eqagg.solve_aggregation(potential, garbage, params(), mask=jnp.asarray(mask), **opts)
    flat, ids = _flatten(x, mask)
    # Extra padding rows routed to a padding segment (as jraph.pad_with_graphs does), and an
    # extra empty segment: neither may change the real sets.
    flat = np.concatenate([flat, np.full((3, D), 7.0, np.float32)])
    ids = np.concatenate([ids, [B, B, B]])
    ragged = eqagg.solve_aggregation(
        potential, flat, params(), segment_ids=ids, num_segments=B + 2, **opts
    )
    np.testing.assert_allclose(padded.value, ragged.value[:B], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(padded.value))
    for b in (0, 1, 3):
        single = eqagg.solve_aggregation(potential, x[b][mask[b]], params(), **opts)
        np.testing.assert_allclose(single.value, padded.value[b], rtol=1e-5, atol=1e-6)
    # Empty sets: the regulariser's minimiser, marked converged.
    np.testing.assert_array_equal(padded.value[2], 0.0)
    assert bool(padded.converged[2]) and float(padded.set_sizes[2]) == 0
    assert bool(ragged.converged[B + 1]) and np.all(ragged.value[B + 1] == 0)


def test_padding_gets_no_gradient_even_when_nan():
    x = sets()
    mask = jnp.ones((B, N), bool).at[:, -1].set(False)
    x = x.at[:, -1].set(jnp.nan)
    g = jax.grad(
        lambda x: eqagg.solve_aggregation(potential, x, params(), mask=mask, steps=5).value.sum()
    )(x)
    assert np.all(np.isfinite(g)) and np.all(g[:, -1] == 0)


def test_permutation_invariance():
    x = sets()
    perm = jax.random.permutation(jax.random.key(1), N)
    for method in ("unrolled", "implicit"):
        a = eqagg.solve_aggregation(potential, x, params(), method=method).value
        b = eqagg.solve_aggregation(potential, x[:, perm], params(), method=method).value
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_jit_equals_eager_vmap_equals_loop_and_no_recompile():
    x = sets()

    def agg(x, p):
        return eqagg.solve_aggregation(potential, x, p, method="implicit").value

    eager = agg(x, params())
    traces = []

    def counted(x, p):
        traces.append(1)
        return agg(x, p)

    jitted = jax.jit(counted)
    np.testing.assert_allclose(jitted(x, params()), eager, rtol=1e-5, atol=1e-6)
    jitted(x + 1.0, params())  # same shapes: must not retrace
    assert len(traces) == 1
    vmapped = jax.vmap(lambda s: agg(s, params()))(x)  # vmap over sets of [N, d]
    looped = jnp.stack([agg(x[b], params()) for b in range(B)])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-5, atol=1e-6)


def _fd(f, p, eps):
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    out = []
    for i in range(flat.size):
        e = jnp.zeros_like(flat).at[i].set(eps)
        out.append((f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * eps))
    return unravel(jnp.stack(out))


def test_implicit_gradients_match_finite_differences_and_long_unrolled(x64):
    import jax.flatten_util  # noqa: F401

    x = sets().astype(jnp.float64)
    p = params(jnp.float64)
    cot = jax.random.normal(jax.random.key(3), (B, D), jnp.float64)

    def loss(p, x, method, **kw):
        r = eqagg.solve_aggregation(potential, x, p, method=method, **kw)
        return jnp.sum(cot * r.value)

    implicit = dict(
        method="implicit", tol=1e-12, max_steps=5000, step_size=0.05, linear_solver_tol=1e-12
    )
    g_imp = jax.grad(loss, argnums=(0, 1))(p, x, **implicit)
    g_fd = _fd(jax.jit(lambda q: loss(q, x, **implicit)), p, 1e-5)
    # float64 central differences of a solve converged to 1e-12: error ~1e-10 relative.
    for k in p:
        np.testing.assert_allclose(g_imp[0][k], g_fd[k], rtol=1e-5)
    # Inputs of the first set (the others are held fixed).
    g_fd_x = _fd(jax.jit(lambda z: loss(p, jnp.concatenate([z, x[1:]]), **implicit)), x[:1], 1e-5)
    np.testing.assert_allclose(g_imp[1][:1], g_fd_x, rtol=1e-5, atol=1e-10)
    g_unr = jax.grad(loss)(p, x, method="unrolled", steps=400, step_size=0.05)
    for k in p:
        np.testing.assert_allclose(g_imp[0][k], g_unr[k], rtol=1e-6)


def test_unrolled_gradient_matches_finite_differences_of_unrolled_map(x64):
    x = sets().astype(jnp.float64)
    f = jax.jit(lambda p: jnp.sum(eqagg.solve_aggregation(potential, x, p, steps=5).value ** 2))
    g = jax.grad(f)(params(jnp.float64))
    g_fd = _fd(f, params(jnp.float64), 1e-6)
    for k in g:
        np.testing.assert_allclose(g[k], g_fd[k], rtol=1e-6)


def test_all_methods_and_solvers_run_and_agree():
    x = sets()
    ref = eqagg.solve_aggregation(potential, x, params(), method="implicit", tol=1e-6).value
    for method, kw in [
        ("unrolled", dict(steps=200, step_size=0.05)),
        ("truncated", dict(steps=200, k=10, step_size=0.05)),
        ("one_step", dict(tol=1e-6)),
        ("implicit", dict(solver="anderson", tol=1e-6)),
        ("implicit", dict(solver="fixed_point", tol=1e-6, step_size=0.05)),
        ("implicit", dict(solver="accelerated_gd", tol=1e-6)),
        ("implicit", dict(solver="gradient_descent", tol=1e-6, step_size=0.05)),
    ]:
        r = eqagg.solve_aggregation(potential, x, params(), method=method, **kw)
        np.testing.assert_allclose(r.value, ref, atol=1e-5, err_msg=f"{method} {kw}")


def test_auxiliary_loss_and_diagnostics():
    x = sets()
    r = eqagg.solve_aggregation(potential, x, params(), steps=6)
    assert r.grad_norms.shape == (6, B) and r.energies.shape == (6, B)
    assert r.residual.shape == (B,) and r.last_update.shape == (B,)
    np.testing.assert_allclose(eqagg.auxiliary_loss(r), np.mean(np.square(r.grad_norms)), rtol=1e-6)
    g = jax.grad(lambda p: eqagg.auxiliary_loss(eqagg.solve_aggregation(potential, x, p, steps=6)))(
        params()
    )
    assert all(np.any(v != 0) for v in jax.tree_util.tree_leaves(g))
    r_imp = eqagg.solve_aggregation(potential, x, params(), method="implicit")
    np.testing.assert_allclose(
        eqagg.auxiliary_loss(r_imp), np.mean(np.square(r_imp.residual)), rtol=1e-6
    )


def test_nan_and_inf_inputs_are_reported_not_converged():
    x = sets().at[1, 0, 0].set(jnp.nan).at[2, 0, 1].set(jnp.inf)
    # The Inf lands where this potential saturates it (tanh), so its energy stays finite: the set
    # must still be flagged, from the inputs.
    r = eqagg.solve_aggregation(potential, x, params(), method="implicit")
    assert r.converged.tolist() == [True, False, False, True]
    assert r.inputs_finite.tolist() == [True, False, False, True]
    ragged = eqagg.solve_aggregation(
        potential,
        x.reshape(-1, D),
        params(),
        segment_ids=np.repeat(np.arange(B), N),
        num_segments=B,
        method="implicit",
    )
    assert ragged.converged.tolist() == [True, False, False, True]


def test_non_convergence_is_reported_per_set():
    r = eqagg.solve_aggregation(potential, sets(), params(), steps=2, tol=1e-6)
    assert not np.any(r.converged) and np.all(r.residual > 1e-6)


def test_learnable_regulariser_and_scalings():
    x = sets()

    def total(lam, method, **kw):
        return eqagg.solve_aggregation(
            potential, x, params(), regularizer=lam, method=method, **kw
        ).value.sum()

    # The weight is data, not a closure: implicit differentiation must handle it (a closed-over
    # traced lambda used to leak a tracer out of the custom VJP).
    g_imp = jax.grad(total)(0.3, "implicit", tol=1e-6)
    g_unr = jax.grad(total)(0.3, "unrolled", steps=300, step_size=0.05)
    assert np.isfinite(g_imp) and g_imp != 0
    np.testing.assert_allclose(g_imp, g_unr, rtol=1e-3)
    vals = {
        s: eqagg.solve_aggregation(potential, x, params(), scaling=s, method="implicit").value
        for s in eqagg.SCALINGS
    }
    assert not np.allclose(vals["sum"], vals["mean"])
    r = eqagg.solve_aggregation(
        potential, x, params(), regularizer=lambda y: jnp.sum(jnp.abs(y) ** 3)
    )
    assert r.value.shape == (B, D)


def test_features_and_y0():
    x = sets()
    f = lambda x, y, p: jnp.sum((y - jnp.concatenate([x, x[:1]])) ** 2)
    r = eqagg.solve_aggregation(f, x, features=3)
    assert r.value.shape == (B, 3)
    r0 = eqagg.solve_aggregation(f, x, y0=jnp.ones(3), steps=1, step_size=0.0)
    np.testing.assert_allclose(r0.value, 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(inputs=np.zeros((2, 3, 4, 5), np.float32)), ValueError, "rank 4"),
        (dict(inputs=np.zeros(5, np.float32)), ValueError, r"inputs\[..., None\]"),
        (dict(inputs=np.zeros((3, 2), np.int32)), TypeError, "floating point"),
        (dict(mask=np.ones((B, N + 1), bool)), ValueError, "mask has shape"),
        (dict(mask=np.ones((B, N), np.float32)), TypeError, "mask must be boolean"),
        (
            dict(
                inputs=np.zeros((5, D), np.float32),
                segment_ids=np.zeros(4, np.int32),
                num_segments=2,
            ),
            ValueError,
            "segment_ids has shape",
        ),
        (
            dict(
                inputs=np.zeros((3, D), np.float32), segment_ids=np.array([0, 1, 5]), num_segments=2
            ),
            ValueError,
            "num_segments=2",
        ),
        (
            dict(inputs=np.zeros((3, D), np.float32), segment_ids=np.array([0, 1, 1])),
            ValueError,
            "num_segments must be",
        ),
        (
            dict(inputs=np.zeros((3, D), np.float32), num_segments=2),
            ValueError,
            "without segment_ids",
        ),
        (dict(energy_fn=lambda x, y, p: x * y), TypeError, "must return a scalar"),
        (dict(method="newton"), ValueError, "method='newton'"),
        (dict(solver="lbfgs"), ValueError, "solver='lbfgs'"),
        (dict(warp=3), TypeError, "unexpected options"),
        (dict(scaling="log"), ValueError, "scaling='log'"),
        (dict(linear_solver="lu", method="implicit"), ValueError, "linear_solver='lu'"),
        (dict(y0=np.zeros((B + 1, D), np.float32)), ValueError, "y0 has shape"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match):
    call = dict(energy_fn=potential, inputs=np.zeros((B, N, D), np.float32))
    call.update(kwargs)
    energy_fn, inputs = call.pop("energy_fn"), call.pop("inputs")
    with pytest.raises(exc, match=match):
        eqagg.solve_aggregation(energy_fn, inputs, params(), **call)
