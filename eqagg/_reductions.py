"""Reductions over each set of a :class:`~eqagg._layouts.Sets`, written once for every layout.

Every function takes per-element ``values`` with the element axes of ``sets.x`` in front (``[S, N,
...]`` for the padded layouts, ``[T, ...]`` for segments) and returns one row per set ``[S, ...]``.

Guarantees (relied on by the aggregator modules and their tests):

- excluded elements (weight 0: masked out, or a segment id outside ``[0, num_segments)``) never
  reach a real set's result or its gradient, even when their values are NaN or Inf;
- an empty set gives 0 (never NaN, -inf or a division by zero), with zero, finite gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from ._layouts import Sets

STD_EPS = 1e-5  # as PNA (Corso et al. 2020) and PyG: keeps the gradient of sqrt finite at var = 0


def _real(sets: Sets, values: Array) -> Array:
    """Boolean ``weights > 0`` broadcastable against ``values``."""
    w = sets.weights
    return (w > 0).reshape(w.shape + (1,) * (values.ndim - w.ndim))


def _rows(per_set: Array, like: Array) -> Array:
    """``[S]`` per-set values reshaped to broadcast against per-set rows shaped like ``like``."""
    return per_set.reshape(per_set.shape + (1,) * (like.ndim - per_set.ndim))


def to_elements(sets: Sets, per_set: Array) -> Array:
    """Broadcasts per-set rows ``[S, ...]`` to the elements (``[S, 1, ...]`` or ``[T, ...]``).

    Padded layouts get a size-1 set axis (broadcasts against ``[S, N, ...]`` without copying);
    elements of an excluded segment id read an arbitrary set, to be removed by the weights.
    """
    if sets.layout == "segments":
        return per_set[jnp.clip(sets.segment_ids, 0, sets.num_sets - 1)]
    return per_set[:, None]


def from_sets(sets: Sets, per_set: Array) -> Array:
    """Per-set rows ``[S, ...]`` in the caller's layout: drops the set axis for a single set."""
    return per_set[0] if sets.layout == "single" else per_set


def set_sum(sets: Sets, values: Array | None = None) -> Array:
    """``sum_i w_i v_i`` over each set -> ``[S, ...]`` (``values`` defaults to ``sets.x``)."""
    v = sets.x if values is None else values
    w = sets.weights.reshape(sets.weights.shape + (1,) * (v.ndim - sets.weights.ndim))
    wv = jnp.where(w > 0, w * v, 0)  # where, not a product: 0 * NaN is NaN
    if sets.layout == "segments":
        return jax.ops.segment_sum(wv, sets.segment_ids, num_segments=sets.num_sets)
    return jnp.sum(wv, axis=1)


def set_mean(sets: Sets, values: Array | None = None) -> Array:
    """``sum_i v_i / n`` over each set -> ``[S, ...]``; 0 for an empty set."""
    total = set_sum(sets, values)
    return total / _rows(jnp.maximum(sets.counts, 1), total)


def _extreme(sets: Sets, values: Array | None, largest: bool) -> Array:
    v = sets.x if values is None else values
    fill = -jnp.inf if largest else jnp.inf
    v = jnp.where(_real(sets, v), v, fill)
    if sets.layout == "segments":
        reduce = jax.ops.segment_max if largest else jax.ops.segment_min
        out = reduce(v, sets.segment_ids, num_segments=sets.num_sets)
    else:
        out = (jnp.max if largest else jnp.min)(v, axis=1, initial=fill)
    return jnp.where(_rows(sets.counts > 0, out), out, 0)


def set_max(sets: Sets, values: Array | None = None) -> Array:
    """``max_i v_i`` over the real elements of each set -> ``[S, ...]``; 0 for an empty set."""
    return _extreme(sets, values, largest=True)


def set_min(sets: Sets, values: Array | None = None) -> Array:
    """``min_i v_i`` over the real elements of each set -> ``[S, ...]``; 0 for an empty set."""
    return _extreme(sets, values, largest=False)


def set_std(sets: Sets, values: Array | None = None, eps: float = STD_EPS) -> Array:
    """``sqrt(mean_i (v_i - mean v)^2 + eps)`` over each set -> ``[S, ...]``; 0 for an empty set.

    The variance is computed from centred values (no cancellation in ``E[v^2] - E[v]^2``).
    """
    v = sets.x if values is None else values
    centred = v - to_elements(sets, set_mean(sets, v))
    var = set_mean(sets, jnp.square(centred))
    return jnp.where(_rows(sets.counts > 0, var), jnp.sqrt(var + eps), 0)


def set_softmax(sets: Sets, logits: Array) -> Array:
    """Per-element weights ``exp(l_i) / sum_j exp(l_j)`` within each set (same shape as ``logits``).

    Excluded elements get weight 0; every element of an empty set too.
    """
    real = _real(sets, logits)
    shift = jax.lax.stop_gradient(set_max(sets, logits))  # softmax is shift-invariant
    z = jnp.where(real, logits - to_elements(sets, shift), 0)
    e = jnp.where(real, jnp.exp(z), 0)
    den = set_sum(sets, e)
    return e / to_elements(sets, jnp.where(den > 0, den, 1))


def set_softmax_sum(sets: Sets, logits: Array, values: Array) -> Array:
    """``sum_i softmax(l)_i v_i`` over each set -> ``[S, ...]``; 0 for an empty set.

    ``logits`` has the leading axes of ``values`` (e.g. ``[T, heads]`` with values ``[T, heads,
    k]``); missing trailing axes broadcast.
    """
    p = set_softmax(sets, logits)
    return set_sum(sets, p.reshape(p.shape + (1,) * (values.ndim - p.ndim)) * values)


REDUCTIONS = {
    "sum": set_sum,
    "mean": set_mean,
    "max": set_max,
    "min": set_min,
    "std": set_std,
}
