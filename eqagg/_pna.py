"""Principal Neighbourhood Aggregation (Corso et al. 2020) as a set aggregator, and the degree
statistic it needs from the training data."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from ._layouts import Sets
from ._reductions import REDUCTIONS
from ._set_module import SetAggregator, check_choice

AGGREGATORS = ("sum", "mean", "max", "min", "std")
SCALERS = ("identity", "amplification", "attenuation")


def pna_degree_statistics(
    set_sizes: ArrayLike | None = None, *, histogram: ArrayLike | None = None
) -> float:
    """``delta = mean log(n + 1)`` over the training sets: the ``avg_log_degree`` of :class:`PNA`.

    Compute it once on the training data: the sizes of the sets (e.g. ``graph.n_node`` over the
    training graphs for a global readout, or node in-degrees for local aggregation).

    Args:
      set_sizes: the size of each training set, ``[num_sets]``.
      histogram: alternatively, ``histogram[n]`` = the number of training sets of size ``n`` (the
        ``deg`` tensor of PyG's ``PNAConv``).

    Returns:
      ``delta`` as a Python float.

    Raises:
      ValueError: if neither or both arguments are given, sizes are negative, or every set is empty
        (``delta = 0`` would make the amplification scaler divide by zero).

    Example:
      >>> import eqagg
      >>> round(eqagg.pna_degree_statistics([0, 1, 3]), 6)  # (log 1 + log 2 + log 4) / 3 = log 2
      0.693147
      >>> round(eqagg.pna_degree_statistics(histogram=[1, 1, 0, 1]), 6)
      0.693147
    """
    if (set_sizes is None) == (histogram is None):
        raise ValueError("pass exactly one of set_sizes and histogram to pna_degree_statistics.")
    if histogram is not None:
        counts = np.asarray(histogram, dtype=np.float64).reshape(-1)
        sizes = np.arange(counts.size, dtype=np.float64)
        name, values = "histogram", counts
    else:
        sizes = np.asarray(set_sizes, dtype=np.float64).reshape(-1)
        counts = np.ones_like(sizes)
        name, values = "set_sizes", sizes
    if np.any(values < 0) or counts.sum() <= 0:
        raise ValueError(
            f"{name} must be non-negative and describe at least one set; got {values}."
        )
    delta = float(np.sum(counts * np.log1p(sizes)) / counts.sum())
    if delta <= 0:
        raise ValueError(
            f"every set in {name} is empty, so delta = mean log(n + 1) = 0 and PNA's amplification "
            "would divide by zero; compute the statistic on data with non-empty sets."
        )
    return delta


def _scale(scaler: str, log_n: Array, delta: float) -> Array:
    if scaler == "amplification":
        return log_n / delta
    if scaler == "attenuation":
        return delta / log_n
    return jnp.ones_like(log_n)


class PNA(SetAggregator):
    """Principal Neighbourhood Aggregation (Corso et al. 2020) over each set.

    ``y = W [s(n) a(X) for s in scalers for a in aggregators] + b``, with aggregators ``a`` from
    {sum, mean, max, min, std} (per channel) and scalers ``s(n)``: identity ``1``, amplification
    ``log(n + 1) / delta``, attenuation ``delta / log(n + 1)``, where ``n`` is the set size clamped
    to at least 1 (as PyG, so an empty set never divides by zero; its aggregates are 0 anyway) and
    ``delta`` = :func:`pna_degree_statistics` of the training sets.

    Attributes:
      avg_log_degree: ``delta`` from :func:`pna_degree_statistics` on the training data (> 0).
      out_features: output width ``D``.
      aggregators: names from ``AGGREGATORS``.
      scalers: names from ``SCALERS``.
      std_eps: added to the variance inside the square root of ``std`` (finite gradients).

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> delta = eqagg.pna_degree_statistics([100] * 8)  # training sets of 100 elements
      >>> pna = eqagg.PNA(avg_log_degree=delta, out_features=16)
      >>> x = jnp.zeros((8, 100, 1))
      >>> variables = pna.init(jax.random.key(0), x)
      >>> pna.apply(variables, x).shape
      (8, 16)
    """

    avg_log_degree: float
    out_features: int
    aggregators: Sequence[str] = ("mean", "max", "min", "std")
    scalers: Sequence[str] = ("identity", "amplification", "attenuation")
    std_eps: float = 1e-5

    def _check(self) -> None:
        if not self.aggregators or not self.scalers:
            raise ValueError("PNA.aggregators and PNA.scalers must each name at least one.")
        for a in self.aggregators:
            check_choice("PNA", "aggregators", a, AGGREGATORS)
        for s in self.scalers:
            check_choice("PNA", "scalers", s, SCALERS)
        if not self.avg_log_degree > 0:
            raise ValueError(
                f"PNA.avg_log_degree must be > 0; got {self.avg_log_degree}. Compute it with "
                "pna_degree_statistics(training_set_sizes)."
            )

    def _aggregate(self, sets: Sets, name: str) -> Array:
        if name == "std":
            return REDUCTIONS[name](sets, sets.x, eps=self.std_eps)
        return REDUCTIONS[name](sets, sets.x)

    @nn.compact
    def aggregate(self, sets: Sets) -> Array:
        self._check()
        features = jnp.concatenate([self._aggregate(sets, a) for a in self.aggregators], axis=-1)
        log_n = jnp.log1p(jnp.maximum(sets.counts, 1))[:, None].astype(features.dtype)
        scaled = [_scale(s, log_n, self.avg_log_degree) * features for s in self.scalers]
        return nn.Dense(self.out_features, name="out")(jnp.concatenate(scaled, axis=-1))
