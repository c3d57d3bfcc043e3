"""Norms of pytrees, globally or per example along a leading batch axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def sq_norm(tree, batched: bool) -> Array:
    """Squared l2 norm of a pytree; with ``batched`` one value per leading-axis example."""
    leaves = jax.tree_util.tree_leaves(tree)
    if batched:
        return sum(jnp.sum(jnp.reshape(jnp.square(x), (x.shape[0], -1)), axis=1) for x in leaves)
    return sum(jnp.sum(jnp.square(x)) for x in leaves)


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
