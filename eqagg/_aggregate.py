"""``solve_aggregation``: aggregation of sets as energy minimisation (paper eq. 3)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

import solvers
from solvers._pytree import pytree_dataclass, static_field

from ._energies import EnergySpec, check_scaling, regularizer_value, set_size_scale
from ._layouts import Sets, make_sets
from ._methods import resolve_method

DEFAULT_REGULARIZER = 0.1


@pytree_dataclass
class AggregationResult:
    """The aggregate of each set and how well each inner solve converged.

    Per-set fields have the sets' leading shape: nothing for one set ``[N, d]``, ``[B]`` for a
    padded batch, ``[num_segments]`` for ragged sets.

    Attributes:
      value: the aggregate (after the energy's readout, if any): ``[D]``, ``[B, D]`` or
        ``[num_segments, D]``.
      latent: the minimiser ``y*`` itself (differs from ``value`` only with a readout).
      residual: ``||grad_y E(y*)||`` per set; implicit gradients are only as good as this is small.
      converged: ``residual <= tol``, finite, and the set's inputs finite (false for any set with a
        NaN/Inf element, even when the potential happens to saturate it to a finite energy).
      inputs_finite: per set, whether every real element is finite.
      steps: inner steps taken.
      grad_norms: ``[steps_cap, ...sets]`` gradient norm evaluated at each inner step (eq. 5).
      energies: ``[steps_cap, ...sets]`` energy at the same points.
      last_update: max-norm of the last inner update per set (paper Figure 5).
      set_sizes: number of real elements per set.
      tol: the tolerance ``converged`` refers to.
      history_differentiable: whether ``grad_norms`` carry gradients (unrolled / truncated).
    """

    value: Array
    latent: Array
    residual: Array
    converged: Array
    inputs_finite: Array
    steps: Array
    grad_norms: Array
    energies: Array
    last_update: Array
    set_sizes: Array
    tol: float = static_field(default=0.0)
    history_differentiable: bool = static_field(default=False)


def auxiliary_loss(result: AggregationResult) -> Array:
    """The auxiliary loss of eq. 5: the mean squared energy-gradient norm over inner steps and sets.

    ``L_aux = mean_{t, s} ||grad_y E_s(y_t)||^2``. The mean over steps (rather than the sum) keeps the
    weight comparable across step counts. Under ``"implicit"``/``"one_step"`` the inner trajectory is
    not differentiated, so the loss is the mean squared residual at the solution instead.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> f = lambda x, y, w: jnp.sum((w * x - y) ** 2)
      >>> def loss(w):
      ...     r = eqagg.solve_aggregation(f, jnp.ones((4, 2)), w, steps=3, step_size=0.1)
      ...     return r.value.sum() + 0.1 * eqagg.auxiliary_loss(r)
      >>> jax.grad(loss)(1.0).shape
      ()
    """
    if result.history_differentiable:
        return jnp.mean(jnp.square(result.grad_norms))
    return jnp.mean(jnp.square(result.residual))


def _check_energy_fn(potential, sets: Sets, features: int, params: Any, dtype) -> None:
    x_struct = jax.ShapeDtypeStruct(sets.x.shape[-1:], sets.x.dtype)
    y_struct = jax.ShapeDtypeStruct((features,), dtype)
    try:
        out = jax.eval_shape(potential, x_struct, y_struct, params)
    except TypeError as err:
        raise TypeError(
            f"energy_fn(x, y, params) failed for one element x {x_struct.shape} and aggregate y "
            f"{y_struct.shape}: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", out)
        raise TypeError(
            f"energy_fn(x, y, params) must return a scalar potential F(x_i, y) for one element x "
            f"{x_struct.shape} and aggregate y {y_struct.shape}; got {shape}. Reduce it (e.g. "
            "jnp.sum) inside energy_fn; the toolkit sums over the set."
        )


def _initial_aggregate(y0: Any, features: int | None, sets: Sets, spec_extra: int) -> Array:
    if y0 is not None:
        y0 = jnp.asarray(y0)
        if y0.ndim == 1:
            y0 = jnp.broadcast_to(y0, (sets.num_sets, y0.shape[0]))
        if y0.shape[0] != sets.num_sets or y0.ndim != 2:
            raise ValueError(
                f"y0 has shape {y0.shape}; give one start [D] for every set, or [S, D] with S = "
                f"{sets.num_sets} sets."
            )
        if features is not None and y0.shape[1] != features:
            raise ValueError(f"y0 has {y0.shape[1]} features but features={features}; drop one.")
        return y0.astype(sets.x.dtype)
    if features is None:
        features = sets.x.shape[-1] + spec_extra
    if not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive int (the latent size D); got {features!r}.")
    # Appendix C.3: y0 = 0.
    return jnp.zeros((sets.num_sets, features), sets.x.dtype)


def set_energies(potential, scaling: str, eps: float):
    """Returns ``E(Y, (sets, params, regularizer)) -> [S]``: every set's scaled energy (eq. 3, 13).

    The regulariser travels in the arguments, not in a closure, so a learned ``lambda`` is
    differentiated correctly by every method (implicit differentiation must not close over traced
    values).
    """

    def energies(y: Array, args) -> Array:
        sets, params, regularizer = args
        f = sets.map_elements(potential, y, params)
        scale = set_size_scale(sets.counts, scaling, eps)
        reg = jax.vmap(lambda v: regularizer_value(regularizer, v))(y)
        return reg + scale * sets.per_set_sum(f)

    return energies


def solve_aggregation(
    energy_fn,
    inputs: Any,
    params: Any = None,
    *,
    mask: Any = None,
    segment_ids: Any = None,
    num_segments: int | None = None,
    y0: Any = None,
    features: int | None = None,
    regularizer: float | Any = None,
    scaling: str | None = None,
    eps: float = 1e-8,
    method: str | solvers.Adjoint = "unrolled",
    solver: str | solvers.Iteration | None = None,
    on_failure: str = "report",
    **options: Any,
) -> AggregationResult:
    """Aggregates each set to the minimiser of its energy (Equilibrium Aggregation, eq. 3).

    For each set ``X = {x_i}`` the aggregate is ``y* = argmin_y E(y)`` with

        E(y) = R(y) + s(N) * sum_i F(x_i, y, params),      R(y) = lambda ||y||^2       (eq. 3, 13)

    found from ``y0 = 0`` (Appendix C.3) by ``solver`` and differentiated as ``method`` says.

    Args:
      energy_fn: the potential ``F(x, y, params) -> scalar`` of one element ``x [d]`` given the
        aggregate ``y [D]``, or an :class:`EnergySpec` (e.g. :func:`median_energy`) that also brings
        its regulariser, scaling and readout.
      inputs: one set ``[N, d]``; a padded batch ``[B, N, d]``; or ragged ``[T, d]`` with
        ``segment_ids``.
      params: pytree passed to ``energy_fn``; gradients flow to it (and to ``inputs``).
      mask: boolean ``[N]`` / ``[B, N]``, True for real elements (padded layouts only).
      segment_ids: int ``[T]``, the set of each row (ragged layout; the jraph convention).
      num_segments: number of sets, a Python int (ragged layout).
      y0: starting aggregate ``[D]`` or ``[S, D]``; defaults to zeros.
      features: latent size ``D`` when ``y0`` is not given (default: ``d``, plus the spec's extra).
      regularizer: ``lambda`` (float or traced scalar, learnable) or a callable ``R(y)``; default
        the spec's, else 0.1. A callable must not close over traced values (pass learnable
        quantities through ``params`` and the potential instead).
      scaling: ``"sublinear"`` (default for plain potentials; ``1/sqrt(N + eps)``), ``"sum"`` or
        ``"mean"``.
      eps: the constant that keeps the sublinear scaling finite for empty sets.
      method: ``"unrolled"`` (the paper's explicit differentiation, default), ``"implicit"``,
        ``"truncated"``, ``"one_step"``, or a configured ``solvers.Adjoint``.
      solver: forward iteration: ``"nesterov"`` (default), ``"gradient_descent"``,
        ``"fixed_point"``, ``"anderson"``, ``"accelerated_gd"``, or a configured
        ``solvers.Iteration``.
      on_failure: ``"report"`` (default: the result's ``converged`` and ``residual`` say which sets
        did not converge; only an inaccurate implicit backward solve warns), ``"raise"`` (raises
        :class:`solvers.NonConvergenceError`; under ``jit`` JAX delivers it wrapped in a
        ``JaxRuntimeError`` whose message contains it) or ``"ignore"``.
      **options: passed to the solver and method: ``steps``/``max_steps``, ``step_size``,
        ``momentum``, ``tol``, ``history_size``; ``checkpoint`` (unrolled, truncated); ``k``
        (truncated); ``linear_solver``, ``linear_solver_tol``, ``linear_solver_maxiter``, ``ridge``,
        ``check_rtol`` (implicit). Defaults: unrolled 10 steps, truncated 20 steps, implicit and
        one-step up to 1000 steps to ``tol=1e-5``; step size 0.1, momentum 0.5.

    Returns:
      An :class:`AggregationResult`; use :func:`auxiliary_loss` on it for eq. 5.

    Raises:
      ValueError / TypeError: for inputs of the wrong rank, a mask or segment ids that do not match
        the inputs, ids out of range, a non-scalar ``energy_fn``, unknown methods or options.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> x = jax.random.normal(jax.random.key(0), (8, 100, 1))          # 8 sets of 100 scalars
      >>> r = eqagg.solve_aggregation(eqagg.mean_energy(), x, method="implicit")
      >>> bool(jnp.allclose(r.value, x.mean(axis=1), atol=1e-4)), bool(r.converged.all())
      (True, True)
    """
    spec = energy_fn if isinstance(energy_fn, EnergySpec) else None
    potential = spec.potential if spec else energy_fn
    if not callable(potential):
        raise TypeError(
            f"energy_fn must be a callable F(x, y, params) or an EnergySpec; got {type(energy_fn)}."
        )
    if regularizer is None:
        regularizer = spec.regularizer if spec else DEFAULT_REGULARIZER
    scaling = check_scaling(
        scaling if scaling is not None else (spec.scaling if spec else "sublinear")
    )
    iteration, adjoint = resolve_method(method, solver, options)

    sets = make_sets(inputs, mask=mask, segment_ids=segment_ids, num_segments=num_segments)
    y_init = _initial_aggregate(y0, features, sets, spec.extra_features if spec else 0)
    _check_energy_fn(potential, sets, y_init.shape[1], params, y_init.dtype)

    # A callable regulariser is static (it must not close over traced values); a weight is data.
    reg_static = regularizer if callable(regularizer) else None
    reg_data = None if callable(regularizer) else jnp.asarray(regularizer, y_init.dtype)
    energy = set_energies(potential, scaling, eps)
    if reg_static is not None:
        energy = _with_static_regularizer(energy, reg_static)
    sol = solvers.minimise(
        energy,
        y_init,
        (sets, params, reg_data),
        solver=iteration,
        adjoint=adjoint,
        batched=True,
        on_failure=on_failure,
    )
    latent = sol.value
    value = spec.readout(latent) if spec and spec.readout else latent
    result = AggregationResult(
        value=value,
        latent=latent,
        residual=sol.residual,
        converged=sol.converged & sets.finite,
        inputs_finite=sets.finite,
        steps=sol.steps,
        grad_norms=sol.grad_norms,
        energies=sol.energies,
        last_update=sol.last_update,
        set_sizes=sets.counts,
        tol=sol.tol,
        history_differentiable=sol.history_differentiable,
    )
    return _squeeze_single(result) if sets.layout == "single" else result


def _with_static_regularizer(energy, regularizer):
    return lambda y, args: energy(y, (args[0], args[1], regularizer))


def _squeeze_single(r: AggregationResult) -> AggregationResult:
    return AggregationResult(
        value=r.value[0],
        latent=r.latent[0],
        residual=r.residual[0],
        converged=r.converged[0],
        inputs_finite=r.inputs_finite[0],
        steps=r.steps,
        grad_norms=r.grad_norms[:, 0],
        energies=r.energies[:, 0],
        last_update=r.last_update[0],
        set_sizes=r.set_sizes[0],
        tol=r.tol,
        history_differentiable=r.history_differentiable,
    )
