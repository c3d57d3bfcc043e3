"""Attention-based poolings: learned-query multi-head attention (the paper's MHA baseline) and the
Set Transformer's pooling by multi-head attention (PMA, Lee et al. 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from ._layouts import Sets
from ._reductions import set_softmax_sum
from ._set_module import SetAggregator

Activation = Callable[[Array], Array]


def _head_width(owner: str, field: str, total: int, num_heads: int) -> int:
    if num_heads < 1 or total % num_heads:
        raise ValueError(
            f"{owner}.{field}={total} must be a positive multiple of num_heads={num_heads} (each "
            f"head gets {field} // num_heads features); change {field} or num_heads."
        )
    return total // num_heads


def multihead_pool(sets: Sets, queries: Array, keys: Array, values: Array) -> Array:
    """Per-head softmax attention of fixed queries over each set.

    Args:
      sets: the sets (only their weights and layout are used).
      queries: ``[Q, H, dk]`` (the same queries for every set).
      keys: ``[..., H, dk]`` per element (``[S, N, H, dk]`` or ``[T, H, dk]``).
      values: ``[..., H, dv]`` per element.

    Returns:
      ``[S, Q, H, dv]``: ``sum_i softmax_i(q . k_i / sqrt(dk)) v_i`` per query and head.
    """
    logits = jnp.einsum("...hd,qhd->...qh", keys, queries) / math.sqrt(keys.shape[-1])
    return set_softmax_sum(sets, logits, values[..., None, :, :])


class AttentionPooling(SetAggregator):
    """Multi-head attention pooling with a learned query (the paper's MHA baseline, 4 heads).

    Per head ``h``: ``o_h = sum_i softmax_i(q_h . k_ih / sqrt(d_k)) v_ih`` with ``k_ih = W^K_h x_i``
    and ``v_ih = W^V_h x_i`` (with biases); then ``y = W^O [o_1; ...; o_H] + b^O``. An empty set
    gives ``y = b^O``.

    Attributes:
      out_features: output width ``D``.
      num_heads: number of heads ``H``.
      qk_features: query/key width summed over heads (default ``out_features``); a multiple of
        ``num_heads``.
      v_features: value width summed over heads (default ``out_features``); a multiple of
        ``num_heads``.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> pool = eqagg.AttentionPooling(out_features=16, num_heads=4)
      >>> x = jnp.zeros((8, 100, 1))
      >>> variables = pool.init(jax.random.key(0), x)
      >>> pool.apply(variables, x).shape
      (8, 16)
    """

    out_features: int
    num_heads: int = 4
    qk_features: int | None = None
    v_features: int | None = None

    def _total(self, field: str) -> tuple[str, int]:
        value = getattr(self, field)
        return (field, value) if value is not None else ("out_features", self.out_features)

    @nn.compact
    def aggregate(self, sets: Sets) -> Array:
        name, h = "AttentionPooling", self.num_heads
        dk = _head_width(name, *self._total("qk_features"), h)
        dv = _head_width(name, *self._total("v_features"), h)
        query = self.param("query", nn.initializers.normal(1.0), (1, h, dk))
        keys = nn.DenseGeneral((h, dk), name="key")(sets.x)
        values = nn.DenseGeneral((h, dv), name="value")(sets.x)
        heads = multihead_pool(sets, query, keys, values)[:, 0]  # [S, H, dv]
        return nn.DenseGeneral(self.out_features, axis=(-2, -1), name="out")(heads)


class PMA(SetAggregator):
    """Set Transformer pooling (Lee et al. 2019): ``PMA_k(X) = MAB(S, rFF(X))``.

    ``MAB(S, Z) = LN(H + rFF(H))`` with ``H = LN(S + Multihead(S, Z, Z))``; ``S`` are ``k`` learned
    seed vectors, ``rFF`` a row-wise dense layer with ``activation``, ``LN`` layer normalisation,
    ``Multihead`` the attention of the seeds over the set (per-head softmax of
    ``q . k_i / sqrt(d_head)``, heads concatenated, then an output projection).

    Attributes:
      features: the model width (a multiple of ``num_heads``) and the width per seed.
      num_heads: attention heads.
      num_seeds: ``k``; the output is ``[..., features]`` for one seed, else the seeds' outputs
        flattened, ``[..., num_seeds * features]``.
      layer_norm: whether to apply the two layer normalisations.
      activation: of the row-wise feed-forward layers.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> pool = eqagg.PMA(features=16, num_heads=4, num_seeds=2)
      >>> x = jnp.zeros((8, 100, 1))
      >>> variables = pool.init(jax.random.key(0), x)
      >>> pool.apply(variables, x).shape
      (8, 32)
    """

    features: int
    num_heads: int = 4
    num_seeds: int = 1
    layer_norm: bool = True
    activation: Activation = nn.relu

    @nn.compact
    def aggregate(self, sets: Sets) -> Array:
        h, k = self.num_heads, self.num_seeds
        dh = _head_width("PMA", "features", self.features, h)
        if k < 1:
            raise ValueError(f"PMA.num_seeds must be >= 1; got {k}.")
        z = self.activation(nn.Dense(self.features, name="rff_in")(sets.x))
        seeds = self.param("seeds", nn.initializers.xavier_uniform(), (k, self.features))
        q = nn.DenseGeneral((h, dh), name="query")(seeds)
        keys = nn.DenseGeneral((h, dh), name="key")(z)
        values = nn.DenseGeneral((h, dh), name="value")(z)
        heads = multihead_pool(sets, q, keys, values)  # [S, k, H, dh]
        attended = nn.DenseGeneral(self.features, axis=(-2, -1), name="out")(heads)
        norm = (lambda y, name: nn.LayerNorm(name=name)(y)) if self.layer_norm else (lambda y, _: y)
        hidden = norm(seeds + attended, "norm_0")
        hidden = hidden + self.activation(nn.Dense(self.features, name="rff_out")(hidden))
        out = norm(hidden, "norm_1")  # [S, k, features]
        return out.reshape(out.shape[0], k * self.features)
