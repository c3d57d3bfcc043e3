"""solvers: every forward iteration x every differentiation mode against closed forms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers


# A strongly convex quadratic with a known minimiser and Jacobian:
#   E(y; a, lam) = ||y - a||^2 + lam ||y||^2  ->  y* = a / (1 + lam),
#   dy*/da = I / (1 + lam),  dy*/dlam = -a / (1 + lam)^2.
def quadratic(y, args):
    return jnp.sum((y - args["a"]) ** 2) + args["lam"] * jnp.sum(y**2)


ARGS = {"a": jnp.array([0.5, -1.0, 2.0]), "lam": jnp.array(0.5)}
ITERATIONS = {
    "nesterov": solvers.Nesterov(step_size=0.2, momentum=0.5, max_steps=200, tol=1e-5),
    "gradient_descent": solvers.GradientDescent(step_size=0.2, max_steps=300, tol=1e-5),
    "fixed_point": solvers.FixedPointIteration(step_size=0.2, max_steps=300, tol=1e-5),
    "anderson": solvers.Anderson(step_size=0.2, max_steps=300, tol=1e-5),
    "jaxopt_anderson": solvers.AndersonAcceleration(step_size=0.2, max_steps=300, tol=1e-5),
    "accelerated_gd": solvers.AcceleratedGradientDescent(step_size=0.2, max_steps=300, tol=1e-5),
}
ADJOINTS = {
    "unrolled": solvers.Unrolled(),
    "implicit": solvers.Implicit(),
    "truncated": solvers.Truncated(k=100),
}


@pytest.mark.parametrize("adjoint", list(ADJOINTS))
@pytest.mark.parametrize("iteration", list(ITERATIONS))
def test_value_and_gradient_match_closed_form(iteration, adjoint):
    it, adj = ITERATIONS[iteration], ADJOINTS[adjoint]
    solve = jax.jit(
        lambda args: solvers.minimise(quadratic, jnp.zeros(3), args, solver=it, adjoint=adj)
    )
    sol = solve(ARGS)
    expected = ARGS["a"] / 1.5
    # tol=1e-5 on ||grad E|| and curvature 3 bound the error by ~1e-5; float32 adds ~1e-6.
    np.testing.assert_allclose(sol.value, expected, atol=2e-5)
    assert bool(sol.converged) and float(sol.residual) <= it.tol
    grads = jax.jit(jax.grad(lambda args: jnp.sum(solve(args).value)))(ARGS)
    # Truncation with k=100 of >=200 steps loses only the contraction factor's k-th power.
    np.testing.assert_allclose(grads["a"], np.full(3, 1 / 1.5), rtol=1e-4)
    np.testing.assert_allclose(grads["lam"], -jnp.sum(ARGS["a"]) / 1.5**2, rtol=1e-4)


def test_one_step_gradient_is_scaled_identity_on_quadratic():
    # JFB replaces H^{-1} by alpha * I: dy/da = alpha * dgrad/da = alpha * 2 I here.
    it = ITERATIONS["nesterov"]
    g = jax.grad(
        lambda a: solvers.minimise(
            quadratic, jnp.zeros(3), {"a": a, "lam": 0.5}, solver=it, adjoint=solvers.OneStep()
        ).value.sum()
    )(ARGS["a"])
    np.testing.assert_allclose(g, np.full(3, 2 * 0.2), rtol=1e-5)


def test_unrolled_step_size_and_momentum_receive_gradients():
    def loss(hyper):
        it = solvers.Nesterov(step_size=hyper[0], momentum=hyper[1], max_steps=5)
        return jnp.sum(solvers.minimise(quadratic, jnp.zeros(3), ARGS, solver=it).value)

    g = jax.grad(loss)(jnp.array([0.1, 0.5]))
    assert np.all(np.isfinite(g)) and np.all(np.abs(g) > 1e-3)


def test_unrolled_gradients_match_finite_differences_of_unrolled_map(x64):
    it = solvers.Nesterov(step_size=0.1, momentum=0.7, max_steps=7)
    # A non-quadratic energy so the unrolled map is genuinely nonlinear in its inputs.
    energy = lambda y, a: jnp.sum(jnp.cosh(y - a)) + 0.3 * jnp.sum(y**4)

    def f(a):
        return jnp.sum(jnp.sin(solvers.minimise(energy, jnp.zeros(3), a, solver=it).value))

    a = jnp.array([0.3, -0.2, 0.9])
    g = jax.grad(f)(a)
    eps = 1e-6
    fd = np.array([(f(a.at[i].add(eps)) - f(a.at[i].add(-eps))) / (2 * eps) for i in range(3)])
    # Central differences in float64 are accurate to ~eps^2 + 1e-16/eps ~ 1e-10.
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)


def test_batched_convergence_is_per_example():
    # Example 0 is easy (minimum at 0), example 1 has a NaN target and can never converge.
    energy = lambda y, a: jnp.sum((y - a) ** 2, axis=1)
    a = jnp.array([[0.0, 0.0], [jnp.nan, 1.0]])
    sol = solvers.minimise(
        energy,
        jnp.zeros((2, 2)),
        a,
        solver=ITERATIONS["nesterov"],
        adjoint=solvers.Implicit(),
        batched=True,
    )
    assert sol.converged.tolist() == [True, False]
    assert np.isnan(sol.residual[1])


def test_non_convergence_is_reported_by_default_and_raised_on_request():
    it = solvers.GradientDescent(step_size=1e-3, max_steps=3, tol=1e-8)
    sol = solvers.minimise(quadratic, jnp.zeros(3), ARGS, solver=it, adjoint=solvers.Implicit())
    assert not bool(sol.converged) and float(sol.residual) > 1e-8
    with pytest.raises(Exception, match="did not converge"):
        out = jax.jit(
            lambda a: (
                solvers.minimise(
                    quadratic,
                    jnp.zeros(3),
                    a,
                    solver=it,
                    adjoint=solvers.Implicit(),
                    on_failure="raise",
                ).value
            )
        )(ARGS)
        out.block_until_ready()
        jax.effects_barrier()


def test_backward_residual_is_recorded_and_failure_warns():
    it = ITERATIONS["nesterov"]
    # Ill-conditioned energy: CG capped at one iteration cannot solve the backward system.
    energy = lambda y, a: jnp.sum(jnp.array([1.0, 30.0, 900.0]) * (y - a) ** 2)
    it = solvers.Nesterov(step_size=1e-3, momentum=0.9, max_steps=5000, tol=1e-5)

    def grad_with(adjoint):
        f = lambda a: jnp.sum(
            jnp.arange(1.0, 4.0)
            * solvers.minimise(energy, jnp.zeros(3), a, solver=it, adjoint=adjoint).value
        )
        return jax.grad(f)(jnp.ones(3))

    with solvers.record_backward_residuals() as rec, warnings.catch_warnings():
        warnings.simplefilter("error", solvers.ConvergenceWarning)
        g = grad_with(solvers.Implicit())
    np.testing.assert_allclose(g, np.arange(1.0, 4.0), rtol=1e-4)  # dy*/da = I
    assert len(rec.values) == 1 and rec.values[0] < 1e-5

    from solvers import _report

    _report._BACKWARD_FAILURES[0] = 0  # the warnings are thinned per process: start afresh
    with pytest.warns(solvers.ConvergenceWarning, match="backward linear solve") as caught:
        for _ in range(12):
            grad_with(solvers.Implicit(linear_solver_maxiter=1)).block_until_ready()
        jax.effects_barrier()
    # Twelve failing steps warn twice (the 1st and the 10th), not twelve times.
    assert len([w for w in caught if issubclass(w.category, solvers.ConvergenceWarning)]) == 2


@pytest.mark.parametrize("name", ["gmres", "bicgstab", "normal_cg"])
def test_other_linear_solvers_give_the_same_gradient(name):
    f = lambda a, adj: jnp.sum(
        solvers.minimise(
            quadratic, jnp.zeros(3), a, solver=ITERATIONS["nesterov"], adjoint=adj
        ).value
    )
    ref = jax.grad(f)(ARGS, solvers.Implicit())
    got = jax.grad(f)(ARGS, solvers.Implicit(linear_solver=name))
    np.testing.assert_allclose(got["a"], ref["a"], rtol=1e-4)


def test_checkpointed_unrolled_equals_plain():
    it = solvers.Nesterov(max_steps=8)
    f = lambda a, adj: jnp.sum(
        solvers.minimise(quadratic, jnp.zeros(3), a, solver=it, adjoint=adj).value ** 2
    )
    g1 = jax.grad(f)(ARGS, solvers.Unrolled())
    g2 = jax.grad(f)(ARGS, solvers.Unrolled(checkpoint=True))
    np.testing.assert_allclose(g1["a"], g2["a"], rtol=1e-6)


def test_pytree_unknowns():
    energy = lambda y, a: jnp.sum((y["u"] - a) ** 2) + jnp.sum((y["v"] + a[0]) ** 2)
    sol = solvers.minimise(
        energy,
        {"u": jnp.zeros(2), "v": jnp.zeros(())},
        jnp.array([1.0, 2.0]),
        adjoint=solvers.Implicit(),
        solver=ITERATIONS["nesterov"],
    )
    np.testing.assert_allclose(sol.value["u"], [1.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(sol.value["v"], -1.0, atol=1e-5)


def test_bad_arguments_name_the_problem():
    with pytest.raises(TypeError, match="must return a scalar"):
        solvers.minimise(lambda y, a: y, jnp.zeros(3))
    with pytest.raises(TypeError, match="one energy per example"):
        solvers.minimise(lambda y, a: jnp.sum(y), jnp.zeros((2, 3)), batched=True)
    with pytest.raises(TypeError, match="floating-point"):
        solvers.minimise(quadratic, jnp.zeros(3, jnp.int32), ARGS)
    with pytest.raises(ValueError, match="on_failure"):
        solvers.minimise(quadratic, jnp.zeros(3), ARGS, on_failure="explode")
    with pytest.raises(ValueError, match="linear_solver"):
        solvers.Implicit(linear_solver="lu")
    with pytest.raises(ValueError, match="max_steps"):
        solvers.Nesterov(max_steps=0)
    with pytest.raises(ValueError, match="k <= max_steps"):
        solvers.minimise(
            quadratic,
            jnp.zeros(3),
            ARGS,
            solver=solvers.Nesterov(max_steps=3),
            adjoint=solvers.Truncated(k=5),
        )
    with pytest.raises(TypeError, match="solver must be"):
        solvers.minimise(quadratic, jnp.zeros(3), ARGS, solver="nesterov")


def _batched_quartic(y, a):
    """Independent problems with different curvatures: E_b(y) = sum(c_b (y - a_b)^2 + 0.1 y^4)."""
    c = jnp.array([1.0, 30.0, 0.3, 5.0])[:, None]
    return jnp.sum(c * (y - a) ** 2 + 0.1 * y**4, axis=1)


def test_per_example_anderson_converges_each_example_and_beats_shared_mixing():
    a = jax.random.normal(jax.random.key(0), (4, 6))
    y0 = jnp.zeros((4, 6))
    ours = solvers.minimise(
        _batched_quartic,
        y0,
        a,
        batched=True,
        solver=solvers.Anderson(step_size=0.01, max_steps=2000, tol=1e-5),
        adjoint=solvers.Implicit(),
    )
    shared = solvers.minimise(
        _batched_quartic,
        y0,
        a,
        batched=True,
        solver=solvers.AndersonAcceleration(step_size=0.01, max_steps=2000, tol=1e-5),
        adjoint=solvers.Implicit(),
    )
    assert bool(ours.converged.all())
    # Each example's own mixing weights: far fewer steps than one set of weights for the batch.
    assert int(ours.steps) * 3 < int(shared.steps)
    # Recorded gradient norms are per example (not one global value repeated).
    first = ours.grad_norms[0]
    assert len(set(np.round(np.asarray(first), 6).tolist())) == 4


def test_per_example_cg_matches_dense_implicit_gradient():
    """Per-example CG on a batched problem gives the implicit gradient of a dense solve."""
    a = jax.random.normal(jax.random.key(1), (4, 6))
    it = solvers.Nesterov(step_size=0.01, momentum=0.9, max_steps=3000, tol=1e-6)

    def loss(a, linear_solver):
        adj = solvers.Implicit(linear_solver=linear_solver, linear_solver_tol=1e-7)
        sol = solvers.minimise(
            _batched_quartic, jnp.zeros((4, 6)), a, batched=True, solver=it, adjoint=adj
        )
        return jnp.sum(jnp.sin(sol.value))

    g_cg = jax.grad(loss)(a, "cg")
    g_gmres = jax.grad(loss)(a, "gmres")
    np.testing.assert_allclose(g_cg, g_gmres, rtol=1e-4, atol=1e-6)
    # ... and it really is per example: a block of n unknowns needs about n matvecs.
    b = jax.random.normal(jax.random.key(2), (4, 6))
    hess = jax.vmap(jax.hessian(lambda y, a: _batched_quartic(y[None], a[None])[0]))(a, a)
    count = []

    def matvec(v):
        count.append(1)
        return jnp.einsum("bij,bj->bi", hess, v)

    from solvers._linear_solve import solve_cg_per_example

    x = solve_cg_per_example(matvec, b, tol=1e-6, maxiter=50)
    np.testing.assert_allclose(jnp.einsum("bij,bj->bi", hess, x), b, rtol=1e-4, atol=1e-4)


def test_unroll_and_checkpoint_do_not_change_values_or_gradients():
    it = solvers.Nesterov(step_size=0.1, momentum=0.5, max_steps=7)

    def loss(args, adjoint):
        return jnp.sum(
            solvers.minimise(quadratic, jnp.zeros(3), args, solver=it, adjoint=adjoint).value ** 2
        )

    ref = jax.grad(loss)(ARGS, solvers.Unrolled(checkpoint=False))
    for adj in (
        solvers.Unrolled(),
        solvers.Unrolled(unroll=True),
        solvers.Truncated(k=7, unroll=3),
    ):
        got = jax.grad(loss)(ARGS, adj)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-6)
