"""The three input layouts of a batch of sets, checked and brought to one internal form.

- one set: ``x [N, d]`` (optional ``mask [N]``);
- a padded batch: ``x [B, N, d]`` with an optional boolean ``mask [B, N]``;
- ragged sets (the jraph convention): ``x [T, d]`` with ``segment_ids [T]`` and ``num_segments``.

Padded inputs stay padded (the aggregate is broadcast over the set axis, no gather); ragged inputs
use a gather and ``segment_sum``. Excluded elements (masked out, or, under jit, with a segment id
outside ``[0, num_segments)``) are replaced by zeros before any potential is evaluated, so NaN
padding cannot leak into values or gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from solvers._pytree import pytree_dataclass, static_field

LAYOUTS = ("single", "padded", "segments")


@pytree_dataclass
class Sets:
    """A batch of sets in internal form.

    Attributes:
      x: ``[S, N, d]`` (padded layouts) or ``[T, d]`` (segments).
      weights: ``[S, N]`` or ``[T]``; 1 for real elements, 0 for excluded ones.
      segment_ids: ``[T]`` for the segment layout, else None.
      counts: ``[S]`` number of real elements per set.
      finite: ``[S]`` whether every real element of the set is finite (no NaN/Inf).
      layout: one of ``LAYOUTS``.
      num_sets: ``S``.
    """

    x: Array
    weights: Array
    segment_ids: Any
    counts: Array
    finite: Array
    layout: str = static_field()
    num_sets: int = static_field()

    def per_set_sum(self, per_element: Array) -> Array:
        """Sums ``weights * per_element`` within each set -> ``[S]``."""
        if self.layout == "segments":
            return jax.ops.segment_sum(
                self.weights * per_element, self.segment_ids, num_segments=self.num_sets
            )
        return jnp.sum(self.weights * per_element, axis=1)

    def map_elements(self, fn, y: Array, params: Any) -> Array:
        """Evaluates ``fn(x_i, y_{set(i)}, params)`` for every element (``[S, N]`` or ``[T]``)."""
        if self.layout == "segments":
            ids = jnp.clip(self.segment_ids, 0, self.num_sets - 1)
            return jax.vmap(fn, in_axes=(0, 0, None))(self.x, y[ids], params)
        inner = jax.vmap(fn, in_axes=(0, None, None))
        return jax.vmap(inner, in_axes=(0, 0, None))(self.x, y, params)


def _is_concrete(a: Any) -> bool:
    return not isinstance(a, jax.core.Tracer)


def _check_float(x: Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"inputs must be floating point; got dtype {x.dtype}. Convert with "
            "inputs.astype(jnp.float32)."
        )


def _check_mask(mask: Any, expected: tuple[int, ...]) -> Array:
    mask = jnp.asarray(mask)
    if mask.shape != expected:
        raise ValueError(
            f"mask has shape {mask.shape} but inputs need a mask of shape {expected} (one entry per "
            "element: True = real, False = padding)."
        )
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be boolean (True = real element); got dtype {mask.dtype}.")
    return mask


def make_sets(
    inputs: Any,
    *,
    mask: Any = None,
    segment_ids: Any = None,
    num_segments: int | None = None,
) -> Sets:
    """Checks the arguments of one of the three layouts and returns :class:`Sets`.

    Raises:
      ValueError / TypeError: naming the argument that is wrong and how to fix it.
    """
    x = jnp.asarray(inputs)
    _check_float(x)
    if segment_ids is not None:
        return _segments(x, mask, segment_ids, num_segments)
    if num_segments is not None:
        raise ValueError(
            "num_segments was given without segment_ids: pass segment_ids [T] with it (ragged "
            "layout), or drop num_segments for [N, d] / [B, N, d] inputs."
        )
    if x.ndim == 2:
        layout, x = "single", x[None]
        mask = None if mask is None else _check_mask(mask, x.shape[1:2])[None]
    elif x.ndim == 3:
        layout = "padded"
        mask = None if mask is None else _check_mask(mask, x.shape[:2])
    else:
        raise ValueError(
            f"inputs has shape {x.shape} (rank {x.ndim}); expected one set [N, d], a padded batch "
            "[B, N, d] (with an optional mask [B, N]), or ragged [T, d] with segment_ids. For a set "
            "of scalars use inputs[..., None]."
        )
    weights = jnp.ones(x.shape[:2], x.dtype) if mask is None else mask.astype(x.dtype)
    if mask is not None:
        x = jnp.where(mask[..., None], x, 0)
    finite = jnp.all(jnp.isfinite(x), axis=(1, 2))
    return Sets(x, weights, None, jnp.sum(weights, axis=1), finite, layout, x.shape[0])


def _segments(x: Array, mask: Any, segment_ids: Any, num_segments: int | None) -> Sets:
    if mask is not None:
        raise ValueError(
            "mask and segment_ids were both given: in the ragged layout, exclude an element by "
            "routing it to a padding segment (as jraph.pad_with_graphs does) and ignoring that "
            "segment's output, or by leaving it out of inputs."
        )
    if num_segments is None or not isinstance(num_segments, (int, np.integer)):
        raise ValueError(
            f"num_segments must be a Python int with segment_ids (static, for jit); got "
            f"{num_segments!r}. Pass num_segments=graph.n_node.shape[0] for a jraph batch."
        )
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1; got {num_segments}.")
    if x.ndim != 2:
        raise ValueError(
            f"with segment_ids, inputs must be [T, d] (all elements of all sets stacked); got "
            f"shape {x.shape}."
        )
    ids = jnp.asarray(segment_ids)
    if ids.shape != (x.shape[0],):
        raise ValueError(
            f"segment_ids has shape {ids.shape} but inputs has {x.shape[0]} elements: give one "
            f"segment id per row of inputs, shape ({x.shape[0]},)."
        )
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"segment_ids must be integers; got dtype {ids.dtype}.")
    if _is_concrete(ids) and ids.size:
        lo, hi = int(jnp.min(ids)), int(jnp.max(ids))
        if lo < 0 or hi >= num_segments:
            raise ValueError(
                f"segment_ids range over [{lo}, {hi}] but num_segments={num_segments}: ids must lie "
                f"in [0, {num_segments - 1}]. Raise num_segments, or route padding elements to a "
                "padding segment (as jraph.pad_with_graphs does)."
            )
    valid = (ids >= 0) & (ids < num_segments)
    weights = valid.astype(x.dtype)
    x = jnp.where(valid[:, None], x, 0)
    counts = jax.ops.segment_sum(weights, ids, num_segments=num_segments)
    bad = jnp.any(~jnp.isfinite(x), axis=1).astype(jnp.int32)
    finite = jax.ops.segment_sum(bad, ids, num_segments=num_segments) == 0
    return Sets(x, weights, ids, counts, finite, "segments", int(num_segments))
