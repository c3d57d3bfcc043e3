"""The two loops every differentiation mode is built from: a fixed number of steps (``lax.scan``)
and a tolerance-based solve (``lax.while_loop``, not differentiable by itself)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax


class Trajectory(NamedTuple):
    """Final iterate of a loop and the per-step history it recorded."""

    value: object
    steps: Array
    grad_norms: Array
    energies: Array
    last_update: Array
    state: object = None


def max_abs_change(new, old, batched_like: Array) -> Array:
    """``max |new - old|`` over everything but a leading batch axis shaped like ``batched_like``."""
    batched = jnp.ndim(batched_like) == 1
    parts = []
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old), strict=True):
        d = jnp.abs(a - b)
        parts.append(jnp.max(jnp.reshape(d, (d.shape[0], -1)), axis=1) if batched else jnp.max(d))
    return jnp.max(jnp.stack(parts), axis=0).astype(jnp.result_type(batched_like))


def run_fixed(
    iteration,
    value_and_grad,
    y0,
    args,
    num_steps: int,
    *,
    checkpoint: bool = False,
    unroll: int | bool = 1,
    state0=None,
):
    """Runs exactly ``num_steps`` steps with ``lax.scan`` (differentiable end to end).

    Args:
      state0: the iteration's state to continue from (e.g. a momentum buffer); fresh when None.
      checkpoint: rematerialise each step on the backward pass (``jax.checkpoint``), trading one
        extra forward step per step for memory that no longer grows with the activations of every
        step.
    """
    if state0 is None:
        state0 = iteration.init(value_and_grad, y0, args)

    def body(carry, _):
        y, state, _ = carry
        y_new, state, energy, gnorm = iteration.step(value_and_grad, y, state, args)
        return (y_new, state, max_abs_change(y_new, y, gnorm)), (gnorm, energy)

    if checkpoint:
        body = jax.checkpoint(body)
    energy_struct = jax.eval_shape(lambda y: value_and_grad(y, args)[2], y0)
    delta0 = jnp.zeros(energy_struct.shape, energy_struct.dtype)
    (y, state, delta), (gnorms, energies) = lax.scan(
        body, (y0, state0, delta0), None, length=num_steps, unroll=unroll
    )
    return Trajectory(y, jnp.asarray(num_steps, jnp.int32), gnorms, energies, delta, state)


def run_until(iteration, value_and_grad, y0, args, energy_struct):
    """Iterates until every example's gradient norm is ``<= iteration.tol`` or ``max_steps``.

    Examples whose gradient norm is NaN (NaN/Inf inputs) neither keep the loop running nor stop
    it for the others; the caller reports them as not converged.
    """
    max_steps, tol = iteration.max_steps, iteration.tol
    state0 = iteration.init(value_and_grad, y0, args)
    energy_shape = energy_struct.shape
    nan_hist = jnp.full((max_steps, *energy_shape), jnp.nan, energy_struct.dtype)

    def cond(carry):
        t, _, _, last, _, _, _ = carry
        finite = jnp.where(jnp.isnan(last), -jnp.inf, last)
        return (t < max_steps) & (jnp.max(finite) > tol)

    def body(carry):
        t, y, state, _, gn_hist, e_hist, _ = carry
        y_new, state, energy, gnorm = iteration.step(value_and_grad, y, state, args)
        gnorm = gnorm.astype(gn_hist.dtype)
        gn_hist = gn_hist.at[t].set(gnorm)
        e_hist = e_hist.at[t].set(energy.astype(e_hist.dtype))
        delta = max_abs_change(y_new, y, gnorm)
        return t + 1, y_new, state, gnorm, gn_hist, e_hist, delta

    init = (
        jnp.asarray(0, jnp.int32),
        y0,
        state0,
        jnp.full(energy_shape, jnp.inf, energy_struct.dtype),
        nan_hist,
        nan_hist,
        jnp.zeros(energy_shape, energy_struct.dtype),
    )
    t, y, _, _, gn_hist, e_hist, delta = lax.while_loop(cond, body, init)
    return Trajectory(y, t, gn_hist, e_hist, delta)
