"""The set model for Omniglot unique-class counting (paper section 5.2).

Every set of images goes through the same pipeline; only the aggregator differs::

    image [28, 28, 1] --conv ResNet--> [4 * 4 * C] --Dense--> x_i [D]   (each image on its own)
    {x_1, ..., x_16}  --aggregator---> y [D']                        (sum / attention / EA)
    y                 --MLP---------->  logits [10]                  (softmax over k = 1..10)

The encoder is a small ResNet as in the paper: three residual blocks of 3x3 convolutions that each
halve the resolution (28 -> 14 -> 7 -> 4); its output is flattened (not averaged: where the strokes
are is what tells characters apart) and mapped linearly to the embedding. There is no stem
convolution: on a CPU a full-resolution convolution from one input channel cost more than the three
blocks together. Normalisation is GroupNorm, so an image's embedding depends on that image alone (no
batch statistics, no mutable state): the model's output for a set is a function of that set only,
and permuting the set leaves the logits unchanged.

The aggregators are the public ones of :mod:`eqagg`:

* ``"sum"``: :class:`eqagg.SumAggregation`, so the model is a Deep Sets network (paper eq. 1).
* ``"attention"``: :class:`eqagg.AttentionPooling`, multi-head attention with a learned query
  (4 heads in the paper).
* ``"ea"``: :class:`eqagg.EquilibriumAggregation` (eq. 3) with 10 inner Nesterov steps, unrolled.
  It sows the auxiliary loss of eq. 5 into the ``"diagnostics"`` collection
  (:data:`eqagg.DIAGNOSTICS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

import eqagg

AGGREGATORS = ("sum", "attention", "ea")
"""The aggregators compared in the paper's Omniglot experiment, in the order of its table."""


def _norm() -> nn.GroupNorm:
    """Normalises each image's feature map over height, width and channels (GroupNorm, one group).

    Per image, so no batch statistics; one group rather than several because the grouped reshape
    costs about 30 % more time per step on a CPU with these small feature maps.
    """
    return nn.GroupNorm(num_groups=1)


class ResidualBlock(nn.Module):
    """A pre-activation residual block (He et al. 2016, v2) that downsamples by ``strides``.

    ``out = conv3x3(relu(gn(conv3x3_s(relu(gn(x)))))) + shortcut(x)``, with a strided 1x1 projection
    as the shortcut when the shape changes.

    Attributes:
      features: output channels.
      strides: stride of the first convolution (and of the shortcut).
      preact: start with GroupNorm and ReLU (False for the block that reads the raw image).
    """

    features: int
    strides: int = 2
    preact: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.relu(_norm()(x)) if self.preact else x
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), self.strides, name="shortcut")(h)
        h = nn.Conv(self.features, (3, 3), self.strides, padding="SAME", use_bias=False)(h)
        h = nn.relu(_norm()(h))
        h = nn.Conv(self.features, (3, 3), padding="SAME", kernel_init=nn.initializers.zeros)(h)
        return shortcut + h


class ImageEncoder(nn.Module):
    """A small convolutional ResNet: ``len(widths)`` stride-2 residual blocks, then flattening.

    The first block reads the raw image (no pre-activation); the others are pre-activation blocks.

    Attributes:
      widths: channels of the residual blocks.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> encoder = ImageEncoder(widths=(8, 16, 32))
      >>> x = jnp.zeros((5, 28, 28, 1))
      >>> encoder.init_with_output(jax.random.key(0), x)[0].shape  # 28 -> 14 -> 7 -> 4
      (5, 512)
    """

    widths: Sequence[int] = (8, 16, 32)

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Maps images ``[..., H, W, C]`` to flattened features ``[..., H' * W' * widths[-1]]``."""
        batch_shape = images.shape[:-3]
        h = images.reshape((-1,) + images.shape[-3:])
        for i, width in enumerate(self.widths):
            h = ResidualBlock(width, strides=2, preact=i > 0, name=f"block{i}")(h)
        h = nn.relu(_norm()(h))
        return h.reshape(batch_shape + (-1,))  # Flattened, as in the paper: keeps where ink is.


class SetCounter(nn.Module):
    """Predicts how many distinct characters a set of images shows: encoder, aggregator, MLP.

    Attributes:
      aggregator: ``"sum"``, ``"attention"`` or ``"ea"``.
      encoder_widths: channels of the encoder's residual blocks.
      embedding_features: size ``D`` of the per-image embedding fed to the aggregator (and of the
        aggregate, for attention and EA).
      num_heads: attention heads of ``"attention"``.
      ea_steps: inner Nesterov steps of ``"ea"`` (10 in the paper's Omniglot experiment).
      ea_hidden: hidden widths of EA's ResNet potential (Appendix C.1).
      mlp_features: hidden widths of the MLP after the aggregator.
      num_classes: outputs: one logit per count ``k = 1..num_classes`` (class index ``k - 1``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = SetCounter("sum", encoder_widths=(4, 4, 4), embedding_features=8)
      >>> images = jnp.zeros((2, 16, 28, 28, 1))
      >>> model.init_with_output(jax.random.key(0), images)[0].shape
      (2, 10)
    """

    aggregator: str
    encoder_widths: Sequence[int] = (8, 16, 32)
    embedding_features: int = 64
    num_heads: int = 4
    ea_steps: int = 10
    ea_hidden: Sequence[int] = (64, 64)
    mlp_features: Sequence[int] = (64,)
    num_classes: int = 10

    def _aggregator(self) -> nn.Module:
        """The configured aggregator (built inside ``__call__``'s compact scope)."""
        if self.aggregator == "sum":
            return eqagg.SumAggregation(name="sum")
        if self.aggregator == "attention":
            return eqagg.AttentionPooling(
                out_features=self.embedding_features, num_heads=self.num_heads, name="attention"
            )
        return eqagg.EquilibriumAggregation(
            features=self.embedding_features,
            hidden=tuple(self.ea_hidden),
            steps=self.ea_steps,
            method="unrolled",
            name="ea",
        )

    @nn.compact
    def __call__(self, images: Array, mask: Array | None = None) -> Array:
        """Returns count logits ``[B, num_classes]`` for sets ``images [B, N, 28, 28, 1]``.

        Args:
          images: a batch of sets of images.
          mask: optional boolean ``[B, N]``, True for real images (padded sets).

        Raises:
          ValueError: when ``aggregator`` is unknown or ``images`` is not ``[B, N, H, W, C]``.
        """
        if self.aggregator not in AGGREGATORS:
            raise ValueError(
                f"SetCounter.aggregator={self.aggregator!r} is not supported; choose one of "
                f"{AGGREGATORS}."
            )
        images = jnp.asarray(images)
        if images.ndim != 5:
            raise ValueError(
                f"SetCounter expects images [batch, set, height, width, channels], got shape "
                f"{images.shape}; add the channel axis with images[..., None]."
            )
        features = ImageEncoder(tuple(self.encoder_widths), name="encoder")(images)
        x = nn.Dense(self.embedding_features, name="embed")(features)
        y = self._aggregator()(x, mask)
        for i, width in enumerate(self.mlp_features):
            y = nn.relu(nn.Dense(width, name=f"mlp{i}")(y))
        return nn.Dense(self.num_classes, name="logits")(y)
