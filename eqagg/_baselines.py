"""Baseline aggregators: fixed poolings, softmax aggregation and Deep Sets (paper eq. 1).

All follow the call convention of :class:`~eqagg._set_module.SetAggregator`:
``module(x, mask=None, *, segment_ids=None, num_segments=None)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from ._layouts import Sets
from ._reductions import REDUCTIONS, set_max, set_mean, set_softmax_sum, set_sum
from ._set_module import SetAggregator, check_choice

Activation = Callable[[Array], Array]


class SumAggregation(SetAggregator):
    """Sum pooling: ``y = sum_i x_i``. Parameter-free; the output has the input's width ``d``.

    Example:
      >>> import jax.numpy as jnp, eqagg
      >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
      >>> eqagg.SumAggregation().apply({}, x)
      Array([ 9., 12.], dtype=float32)
    """

    def aggregate(self, sets: Sets) -> Array:
        return set_sum(sets)


class MeanAggregation(SetAggregator):
    """Mean pooling: ``y = (1/n) sum_i x_i`` (0 for an empty set). Parameter-free; width ``d``.

    Example:
      >>> import jax.numpy as jnp, eqagg
      >>> x = jnp.array([[[1.0], [3.0]], [[5.0], [0.0]]])  # two sets, the second has one element
      >>> eqagg.MeanAggregation().apply({}, x, jnp.array([[True, True], [True, False]]))
      Array([[2.],
             [5.]], dtype=float32)
    """

    def aggregate(self, sets: Sets) -> Array:
        return set_mean(sets)


class MaxAggregation(SetAggregator):
    """Max pooling per channel: ``y_c = max_i x_ic`` (0 for an empty set). Parameter-free.

    Example:
      >>> import jax.numpy as jnp, eqagg
      >>> x = jnp.array([[1.0, 6.0], [3.0, 4.0], [5.0, 2.0]])
      >>> eqagg.MaxAggregation().apply({}, x, segment_ids=jnp.array([0, 0, 1]), num_segments=2)
      Array([[3., 6.],
             [5., 2.]], dtype=float32)
    """

    def aggregate(self, sets: Sets) -> Array:
        return set_max(sets)


class SoftmaxAggregation(SetAggregator):
    """Softmax aggregation per channel: ``y_c = sum_i softmax_i(t x_ic) x_ic``.

    As PyG's ``SoftmaxAggregation(learn=True)``. ``t`` multiplies the inputs (an inverse
    temperature): ``t -> inf`` approaches max pooling, ``t = 0`` is the mean and ``t -> -inf`` the
    min. Output width ``d``.

    Attributes:
      initial_temperature: the value of ``t`` (its initial value when learned).
      learn_temperature: whether ``t`` is a parameter (``"temperature"``).
      per_channel: one ``t`` per input channel ``[d]`` instead of one shared scalar.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> agg = eqagg.SoftmaxAggregation(initial_temperature=0.0)
      >>> x = jnp.array([[1.0], [2.0], [6.0]])
      >>> variables = agg.init(jax.random.key(0), x)
      >>> agg.apply(variables, x)  # t = 0: the mean
      Array([3.], dtype=float32)
    """

    initial_temperature: float = 1.0
    learn_temperature: bool = True
    per_channel: bool = False

    @nn.compact
    def aggregate(self, sets: Sets) -> Array:
        shape = (sets.x.shape[-1],) if self.per_channel else ()
        if self.learn_temperature:
            init = nn.initializers.constant(self.initial_temperature)
            t = self.param("temperature", init, shape)
        else:
            t = jnp.full(shape, self.initial_temperature)
        return set_softmax_sum(sets, t * sets.x, sets.x)


def mlp(x: Array, features: Sequence[int], activation: Activation, name: str) -> Array:
    """Dense layers ``features`` with ``activation`` between them (none after the last).

    Call inside an ``@nn.compact`` method; the layers are named ``{name}_0``, ``{name}_1``, ...
    """
    for i, width in enumerate(features):
        if i:
            x = activation(x)
        x = nn.Dense(width, name=f"{name}_{i}")(x)
    return x


class DeepSets(SetAggregator):
    """Deep Sets (paper eq. 1): ``y = rho(sum_i phi(x_i))``, with MLPs ``phi`` and ``rho``.

    Attributes:
      phi_features: widths of the element MLP ``phi``; the last is the embedding width.
      rho_features: widths of the set MLP ``rho``; the last is the output width. Empty: the
        output is the pooled embedding.
      activation: applied between layers of each MLP (not after the last layer of either).
      pooling: ``"sum"`` (eq. 1), ``"mean"`` or ``"max"``.

    Example:
      >>> import jax, jax.numpy as jnp, eqagg
      >>> model = eqagg.DeepSets(phi_features=[64, 64, 16], rho_features=[64, 16])
      >>> x = jnp.zeros((8, 100, 1))  # 8 sets of 100 scalars
      >>> variables = model.init(jax.random.key(0), x)
      >>> model.apply(variables, x).shape
      (8, 16)
    """

    phi_features: Sequence[int]
    rho_features: Sequence[int] = ()
    activation: Activation = nn.relu
    pooling: str = "sum"

    @nn.compact
    def aggregate(self, sets: Sets) -> Array:
        check_choice("DeepSets", "pooling", self.pooling, ("sum", "mean", "max"))
        h = mlp(sets.x, self.phi_features, self.activation, "phi")
        pooled = REDUCTIONS[self.pooling](sets, h)
        return mlp(pooled, self.rho_features, self.activation, "rho")
