"""The median regressors of paper section 5.1: one aggregator between the same input and output nets.

* ``"sum"`` (Deep Sets, eq. 1): a ResNet embeds each number into ``D`` features, summed over the set.
* ``"attention"``: the same ResNet embedding, then multi-head attention pooling with a learned query
  (4 heads, each with ``D``-dimensional keys and values, projected back to ``D``).
* ``"ea"``: Equilibrium Aggregation (eq. 3) of the raw numbers into ``D`` features: 5 unrolled inner
  Nesterov steps on a ResNet potential ``F(x_i, y)``; it encodes and aggregates at once, so it has
  no separate embedding network (as in the paper).
* ``"ea_implicit"``: the same energy, solved to a tolerance and differentiated implicitly.

All four feed the ``D``-dimensional aggregate to the same output ResNet, which predicts the median.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import eqagg

AGGREGATORS = ("sum", "attention", "ea", "ea_implicit")
EA_AGGREGATORS = ("ea", "ea_implicit")


class ResNetMLP(nn.Module):
    """A fully connected pre-activation ResNet: ``Dense(width)``, residual blocks, ``Dense(out)``.

    Each block is ``h + Dense(relu(LayerNorm(h)))``; the head is ``Dense(relu(LayerNorm(h)))``. The
    LayerNorms keep the output net well scaled whatever the aggregate's magnitude (a sum over 100
    elements, an attention average or an energy minimiser).

    Attributes:
      width: the hidden width.
      num_blocks: number of residual blocks.
      out_features: output width.
    """

    width: int
    num_blocks: int
    out_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, name="input")(x)
        for i in range(self.num_blocks):
            h = h + nn.Dense(self.width, name=f"block_{i}")(
                nn.relu(nn.LayerNorm(name=f"ln_{i}")(h))
            )
        return nn.Dense(self.out_features, name="head")(nn.relu(nn.LayerNorm(name="ln_head")(h)))


class MedianRegressor(nn.Module):
    """Predicts the median of each set: aggregator (see the module docstring), then output ResNet.

    Attributes:
      aggregator: one of :data:`AGGREGATORS`.
      embedding_size: ``D``, the width of the set embedding (the swept quantity).
      embed_width, embed_blocks: the element-embedding ResNet of ``"sum"`` and ``"attention"``.
      output_width, output_blocks: the output ResNet shared by all aggregators.
      num_heads: attention heads.
      potential_hidden: hidden widths of EA's ResNet potential (Appendix C.1).
      ea_steps: inner steps of ``"ea"`` (paper: 5).
      implicit_max_steps, implicit_tol: cap and tolerance of ``"ea_implicit"``'s inner solve.
      implicit_step_size, implicit_momentum: its fixed inner Nesterov step size and momentum (under
        implicit differentiation they get no gradient, so they are not learned).
      implicit_regularizer: initial ``lambda`` of its prior ``lambda ||y||^2`` (learned).
      implicit_ridge: ``ridge * I`` added to the Hessian in the backward linear solve.

    Call with ``x [B, N, 1]``; returns ``[B]``. EA variants sow their diagnostics (eq. 5 auxiliary
    loss, residual, converged fraction) into ``eqagg.DIAGNOSTICS``.
    """

    aggregator: str
    embedding_size: int
    embed_width: int = 64
    embed_blocks: int = 2
    output_width: int = 64
    output_blocks: int = 2
    num_heads: int = 4
    potential_hidden: Sequence[int] = (64, 64)
    ea_steps: int = 5
    implicit_max_steps: int = 100
    implicit_tol: float = 1e-3
    implicit_step_size: float = 0.01
    implicit_momentum: float = 0.5
    implicit_regularizer: float = 1.0
    implicit_ridge: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.aggregator not in AGGREGATORS:
            raise ValueError(
                f"aggregator={self.aggregator!r} is not known; use one of {AGGREGATORS}."
            )
        d = self.embedding_size
        if self.aggregator in ("sum", "attention"):
            h = ResNetMLP(self.embed_width, self.embed_blocks, d, name="embed")(x)
            if self.aggregator == "sum":
                pooled = eqagg.SumAggregation(name="pool")(h)
            else:
                pooled = eqagg.AttentionPooling(
                    out_features=d,
                    num_heads=self.num_heads,
                    qk_features=self.num_heads * d,
                    v_features=self.num_heads * d,
                    name="pool",
                )(h)
        elif self.aggregator == "ea":
            pooled = eqagg.EquilibriumAggregation(
                features=d,
                hidden=tuple(self.potential_hidden),
                steps=self.ea_steps,
                method="unrolled",
                name="pool",
            )(x)
        else:
            pooled = eqagg.EquilibriumAggregation(
                features=d,
                hidden=tuple(self.potential_hidden),
                max_steps=self.implicit_max_steps,
                method="implicit",
                step_size=self.implicit_step_size,
                momentum=self.implicit_momentum,
                regularizer=self.implicit_regularizer,
                learn_step_size=False,
                learn_momentum=False,
                options={"tol": self.implicit_tol, "ridge": self.implicit_ridge},
                name="pool",
            )(x)
        out = ResNetMLP(self.output_width, self.output_blocks, 1, name="output")(pooled)
        return out[..., 0]


def diagnostics(state: dict) -> dict[str, jax.Array]:
    """The EA diagnostics sown during one apply, as scalars (``{}`` for sum and attention).

    ``aux_loss`` (eq. 5), ``residual`` (mean final energy-gradient norm) and ``converged_fraction``.
    """
    found = state.get(eqagg.DIAGNOSTICS, {})
    if not found:
        return {}
    out = {"aux_loss": eqagg.collect_auxiliary_loss(found)}
    for name in ("residual", "converged_fraction"):
        leaves = [
            v
            for path, v in jax.tree_util.tree_leaves_with_path(found)
            if any(getattr(k, "key", None) == name for k in path)
        ]
        out[name] = jnp.mean(jnp.stack([jnp.mean(v) for v in leaves]))
    return out
