"""Norms of pytrees, globally or per example along a leading batch axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def dot(u, v, batched: bool) -> Array:
    """``<u, v>`` of two pytrees of the same structure; with ``batched`` one value per example."""
    pairs = zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v), strict=True)
    if batched:
        return sum(jnp.sum(jnp.reshape(a * b, (a.shape[0], -1)), axis=1) for a, b in pairs)
    return sum(jnp.sum(a * b) for a, b in pairs)


def sq_norm(tree, batched: bool) -> Array:
    """Squared l2 norm of a pytree; with ``batched`` one value per leading-axis example."""
    return dot(tree, tree, batched)


def norm(tree, batched: bool) -> Array:
    """l2 norm of a pytree (per example with ``batched``).

    The square root is guarded so that its gradient at zero is zero rather than NaN (the residual
    of an empty set is exactly zero and is differentiated by the auxiliary loss); NaN stays NaN.
    """
    s = sq_norm(tree, batched)
    safe = jnp.where(s > 0, s, 1.0)
    return jnp.where(s > 0, jnp.sqrt(safe), s)


def global_norm(tree) -> Array:
    """l2 norm of a whole pytree (a scalar)."""
    return norm(tree, batched=False)
