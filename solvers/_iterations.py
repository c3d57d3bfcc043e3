"""Forward iterations: one step of an iterative minimiser of ``E(y, args)``.

An iteration is a pytree (its step size and momentum are leaves, so they can be learned when the
solve is differentiated by unrolling) with three methods:

- ``init(value_and_grad, y0, args) -> state``
- ``step(value_and_grad, y, state, args) -> (y_next, state_next, energy, grad_norm)`` where
  ``energy``/``grad_norm`` describe the point the step evaluated (NaN when not available);
- ``gradient_step(grad, y) -> y`` one plain gradient step, used by Jacobian-free differentiation.

``value_and_grad(y, args)`` returns ``(per-example energies, gradient pytree, per-example gradient
norms)``. The loop that repeats steps, and how it is differentiated, live in ``_adjoint.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._pytree import pytree_dataclass, static_field


class Iteration:
    """Base class of forward iterations (see the module docstring for the protocol)."""

    max_steps: int
    tol: float
    step_size: Any

    def init(self, value_and_grad, y0, args):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, value_and_grad, y, state, args):  # pragma: no cover - interface
        raise NotImplementedError

    def gradient_step(self, grad, y):
        """``y - step_size * grad``: the map whose fixed points are the stationary points of E."""
        return jax.tree_util.tree_map(lambda a, g: a - self.step_size * g, y, grad)


def _check_common(name: str, max_steps: int, tol: float) -> None:
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"{name}(max_steps={max_steps!r}): max_steps must be a positive int.")
    if not tol >= 0:
        raise ValueError(f"{name}(tol={tol!r}): tol must be a non-negative float.")


@pytree_dataclass
class GradientDescent(Iteration):
    """Plain gradient descent, paper eq. 4: ``y_{t+1} = y_t - alpha * grad_y E(y_t)``.

    Args:
      step_size: ``alpha`` (a float or a traced scalar, learnable under unrolled differentiation).
      max_steps: number of steps (unrolled) or the cap on steps (tolerance-based solves).
      tol: stop when every example has ``||grad E|| <= tol``; also the bar for ``converged``.
    """

    step_size: ArrayLike = 0.1
    max_steps: int = static_field(default=100)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("GradientDescent", self.max_steps, self.tol)

    def init(self, value_and_grad, y0, args):
        return ()

    def step(self, value_and_grad, y, state, args):
        energy, grad, gnorm = value_and_grad(y, args)
        return self.gradient_step(grad, y), state, energy, gnorm


@pytree_dataclass
class Nesterov(Iteration):
    """Gradient descent with Nesterov momentum, as in the paper (Appendix C.4, Listing 2).

    The gradient is taken at the look-ahead point::

        g_t     = grad_y E(y_t + mu * v_t)
        v_{t+1} = mu * v_t - alpha * g_t
        y_{t+1} = y_t + v_{t+1}

    with ``v_0 = 0``. Both ``alpha`` (``step_size``) and ``mu`` (``momentum``) are pytree leaves, so
    they receive gradients under unrolled differentiation and can be learned end to end.

    Args:
      step_size: ``alpha > 0``.
      momentum: ``mu`` in ``[0, 1)``; 0 gives plain gradient descent.
      max_steps: number of steps (unrolled) or the cap on steps (tolerance-based solves).
      tol: stop when every example has ``||grad E|| <= tol``; also the bar for ``converged``.

    Example:
      >>> import jax.numpy as jnp, solvers
      >>> sol = solvers.minimise(lambda y, a: jnp.sum((y - a) ** 2), jnp.zeros(3), jnp.arange(3.0),
      ...                        solver=solvers.Nesterov(step_size=0.2, momentum=0.5, max_steps=50))
      >>> bool(jnp.allclose(sol.value, jnp.arange(3.0), atol=1e-4))
      True
    """

    step_size: ArrayLike = 0.1
    momentum: ArrayLike = 0.5
    max_steps: int = static_field(default=100)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("Nesterov", self.max_steps, self.tol)

    def init(self, value_and_grad, y0, args):
        return jax.tree_util.tree_map(jnp.zeros_like, y0)

    def step(self, value_and_grad, y, velocity, args):
        mu, alpha = self.momentum, self.step_size
        look = jax.tree_util.tree_map(lambda a, v: a + mu * v, y, velocity)
        energy, grad, gnorm = value_and_grad(look, args)
        velocity = jax.tree_util.tree_map(lambda v, g: mu * v - alpha * g, velocity, grad)
        y = jax.tree_util.tree_map(jnp.add, y, velocity)
        return y, velocity, energy, gnorm


def _as_rows(tree, batched: bool):
    """Flattens a pytree to ``[B, n]`` rows (``B = 1`` when not batched) and returns the inverse."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    lead = leaves[0].shape[0] if batched else 1
    shapes = [x.shape for x in leaves]
    rows = jnp.concatenate([jnp.reshape(x, (lead, -1)) for x in leaves], axis=1)
    sizes = [int(np.prod(s[1:] if batched else s)) for s in shapes]
    splits = np.cumsum(sizes)[:-1].tolist()

    def unflatten(r):
        parts = jnp.split(r, splits, axis=1)
        return jax.tree_util.tree_unflatten(
            treedef, [jnp.reshape(a, s) for a, s in zip(parts, shapes, strict=True)]
        )

    return rows, unflatten


@pytree_dataclass
class Anderson(Iteration):
    """Anderson acceleration of ``T(y) = y - step_size * grad E(y)``, solved per example.

    Each example (a set, for aggregation) mixes its own last ``history_size`` iterates::

        f_i   = T(y_i) - y_i                                  (i over the history)
        gamma = argmin ||sum_i gamma_i f_i||^2 + ridge * ||gamma||^2  s.t.  sum_i gamma_i = 1
        y'    = sum_i gamma_i (y_i + beta * f_i)

    Unlike jaxopt's ``AndersonAcceleration`` (:class:`AndersonAcceleration`), which fits one set
    of mixing weights to the whole batch, the weights here are fitted for every example separately,
    so a batch of independent sets converges like each set alone. On a problem of ``n`` unknowns
    near a minimum (where ``T`` is nearly linear) it behaves like GMRES: with ``history_size >= n``
    it converges in about ``n`` steps. An example whose mixing is ill-posed or not finite takes the
    plain step ``T(y)`` instead. The per-step gradient norms recorded are exact and per example.
    Under unrolled differentiation the mixing weights are held constant (they sum to one, so the
    derivative flows through every ``T(y_i)``); implicit differentiation is the natural pairing.

    Args:
      step_size: ``eta`` of the map ``T`` (stable plain gradient step size).
      history_size: number of past iterates mixed.
      beta: damping of the mixing (1 = undamped).
      ridge: Tikhonov regularisation of the mixing problem, relative to the largest ``||f_i||^2``.
      max_steps: cap on iterations.
      tol: stop when every example has ``||grad E|| <= tol``; also the bar for ``converged``.

    Example:
      >>> import jax.numpy as jnp, solvers
      >>> a = jnp.array([[1.0, 2.0], [-3.0, 0.5]])                      # two independent problems
      >>> fn = lambda y, a: jnp.sum((y - a) ** 2 + 0.1 * y**4, axis=1)
      >>> sol = solvers.minimise(fn, jnp.zeros((2, 2)), a, batched=True,
      ...                        solver=solvers.Anderson(step_size=0.05, max_steps=100, tol=1e-5),
      ...                        adjoint=solvers.Implicit())             # stop at tol
      >>> bool(sol.converged.all()), int(sol.steps) < 30
      (True, True)
    """

    step_size: ArrayLike = 0.1
    history_size: int = static_field(default=5)
    beta: float = static_field(default=1.0)
    ridge: float = static_field(default=1e-8)
    max_steps: int = static_field(default=500)
    tol: float = static_field(default=1e-4)

    def __post_init__(self):
        _check_common("Anderson", self.max_steps, self.tol)
        if not isinstance(self.history_size, int) or self.history_size < 1:
            raise ValueError(
                f"Anderson(history_size={self.history_size!r}): history_size must be a positive "
                "int (5 to 20 is typical)."
            )

    def init(self, value_and_grad, y0, args):
        batched = jax.eval_shape(lambda y: value_and_grad(y, args)[0], y0).ndim > 0
        rows, _ = _as_rows(y0, batched)
        hist = jnp.zeros((self.history_size, *rows.shape), rows.dtype)
        return hist, hist, jnp.asarray(0, jnp.int32)

    def step(self, value_and_grad, y, state, args):
        xs, fs, k = state
        energy, grad, gnorm = value_and_grad(y, args)
        batched = jnp.ndim(energy) > 0
        x, unflatten = _as_rows(y, batched)
        g, _ = _as_rows(grad, batched)
        f = -self.step_size * g
        m = self.history_size
        slot = k % m
        xs = xs.at[slot].set(x)
        fs = fs.at[slot].set(f)
        valid = jnp.arange(m) < jnp.minimum(k + 1, m)
        both = valid[:, None] & valid[None, :]
        gram = jnp.einsum("ibn,jbn->bij", fs, fs)  # [B, m, m]
        scale = jnp.max(jnp.where(valid, jnp.diagonal(gram, axis1=1, axis2=2), 0.0), axis=1)
        eye = jnp.eye(m, dtype=gram.dtype)
        reg = self.ridge * jnp.where(scale > 0, scale, 1.0)[:, None, None]
        gram = jnp.where(both, gram, 0.0) + eye * jnp.where(valid, reg, 1.0)
        rhs = jnp.broadcast_to(valid.astype(gram.dtype), gram.shape[:2])
        w = jnp.linalg.solve(gram, rhs[..., None])[..., 0]  # [B, m]
        gamma = w / jnp.sum(w, axis=1, keepdims=True)
        # Where the mixing is ill-posed (e.g. every f_i = 0 at an exact solution) the weights fall
        # back to the current iterate alone: the plain step T(y). Keeping gamma finite also keeps
        # NaN out of the backward pass.
        current = jax.nn.one_hot(slot, m, dtype=gamma.dtype)
        fine = jnp.all(jnp.isfinite(gamma), axis=1, keepdims=True)
        gamma = jnp.where(fine, gamma, current)
        # The weights are constants when the steps are unrolled: they sum to one, so the derivative
        # still flows through every T(y_i), and a Gram matrix that degenerates as f -> 0 cannot
        # spoil it.
        gamma = jax.lax.stop_gradient(gamma)
        x_new = jnp.einsum("bi,ibn->bn", gamma, xs + self.beta * fs)
        return unflatten(x_new), (xs, fs, k + 1), energy, gnorm
