"""The call convention shared by every aggregator module, and its jraph form.

Every aggregator is called as ``module(x, mask=None, *, segment_ids=None, num_segments=None)`` on
one of the three layouts of :mod:`eqagg._layouts` and returns one row per set in the same layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
from jax import Array
from jax.typing import ArrayLike

from ._layouts import Sets, make_sets
from ._reductions import from_sets


class SetAggregator(nn.Module):
    """Base of the aggregator modules: checks the layout, then calls ``aggregate`` on :class:`Sets`.

    Subclasses implement ``aggregate(self, sets) -> [S, D]`` (decorated with ``@nn.compact`` when
    they have parameters) using the reductions of :mod:`eqagg._reductions`.
    """

    def __call__(
        self,
        x: ArrayLike,
        mask: ArrayLike | None = None,
        *,
        segment_ids: ArrayLike | None = None,
        num_segments: int | None = None,
    ) -> Array:
        """Aggregates each set of ``x`` into one vector.

        Args:
          x: one set ``[N, d]``, a padded batch ``[B, N, d]``, or the stacked elements ``[T, d]``
            of ragged sets (with ``segment_ids``).
          mask: optional boolean ``[N]`` / ``[B, N]``, True for real elements (padded layouts only).
            Masked elements never affect the result or its gradients, even if they hold NaN.
          segment_ids: int ``[T]``, the set of each row (the jraph convention: the node's graph for
            a global readout, ``receivers`` to aggregate incoming edge messages per node). Ids
            must lie in ``[0, num_segments)``: outside jit an id out of range raises; under jit it
            cannot be checked and the row is dropped. For EA, keep padding nodes out of the real
            sets' segments (a single large padding set slows or destabilises the inner solve):
            see ``examples/molecules/models.py``.
          num_segments: the number of sets, a static Python int (with ``segment_ids``).

        Returns:
          ``[D]`` for one set, ``[B, D]`` for a padded batch, ``[num_segments, D]`` for ragged sets.
          Empty sets give a finite output.

        Raises:
          ValueError, TypeError: when the arguments fit none of the layouts; the message names the
            argument and how to fix it.
        """
        sets = make_sets(x, mask=mask, segment_ids=segment_ids, num_segments=num_segments)
        return from_sets(sets, self.aggregate(sets))

    def aggregate(self, sets: Sets) -> Array:
        """Aggregates each set of ``sets`` -> ``[S, D]``."""
        raise NotImplementedError


def check_choice(owner: str, field: str, value: Any, allowed: Sequence[str]) -> None:
    """Raises a ``ValueError`` naming ``owner.field`` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(
            f"{owner}.{field}={value!r} is not supported; choose one of {tuple(allowed)}."
        )


def as_segment_fn(
    module: nn.Module, variables: Any
) -> Callable[[ArrayLike, ArrayLike, int], Array]:
    """An aggregator with its variables as a jraph aggregation function.

    The result has jraph's signature ``fn(data, segment_ids, num_segments) -> [num_segments, D]``,
    so it can be passed as ``aggregate_nodes_for_globals_fn`` (a global readout) or
    ``aggregate_edges_for_nodes_fn`` (local aggregation of messages at their receivers) of
    ``jraph.GraphNetwork``. Inside a Flax model, call the submodule directly instead:
    ``module(nodes, segment_ids=node_graph, num_segments=n_graph)``.

    Args:
      module: an aggregator following the :class:`SetAggregator` call convention.
      variables: its variables (from ``module.init``). Build the function inside the loss to
        differentiate with respect to them.

    Returns:
      ``fn(data [T, d], segment_ids [T], num_segments: int) -> [num_segments, D]``.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> readout = eqagg.MeanAggregation()
      >>> fn = eqagg.as_segment_fn(readout, {})
      >>> fn(jnp.array([[1.0], [3.0], [5.0]]), jnp.array([0, 0, 1]), 3)
      Array([[2.],
             [5.],
             [0.]], dtype=float32)
    """

    def fn(data: ArrayLike, segment_ids: ArrayLike, num_segments: int) -> Array:
        return module.apply(variables, data, segment_ids=segment_ids, num_segments=num_segments)

    return fn
