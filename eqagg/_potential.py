"""The paper's neural potential (Appendix C.1) as pure functions shared by the Linen and NNX modules.

A ResNet on ``concat(x, y)`` with LayerNorm and tanh and a sum-of-squares output::

    z_0 = [x, y]
    h_1 = tanh(LN(z_0 W_1 + b_1))                + z_0 R_1
    h_k = tanh(LN(h_{k-1} W_k + b_k))            + z_0 R_k        (k = 2..L)
    o   = h_L W_o + b_o                          + z_0 R_o
    F(x, y) = sum(o ** 2)

(the residual maps read the input, as in PyTorch Geometric's ``ResNetPotential``). Every term that
reads ``z_0`` splits into an ``x`` part and a ``y`` part; the ``x`` parts of the first layer and of all
residual maps are one matrix product computed once per element per call (:func:`project_elements`),
not once per inner step, and the ``y`` parts are one product per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

_LN_EPS = 1e-6


def _sizes(hidden: Sequence[int], out_features: int) -> list[int]:
    """Widths of the x-projection blocks: first layer, residual per hidden layer, residual of out."""
    return [hidden[0], *hidden, out_features]


def init_resnet_potential(
    key: Array,
    in_features: int,
    latent_features: int,
    hidden: Sequence[int],
    out_features: int,
    dtype=jnp.float32,
) -> dict[str, Array]:
    """Initial parameters: LeCun-normal kernels on each layer's fan-in, and biases uniform in
    ``+-1/sqrt(fan_in)`` (PyTorch's default). Nonzero biases matter here: with zero biases a scalar
    element ``x ~ 0`` gives a first pre-activation ``x W`` of almost zero variance, which LayerNorm
    then amplifies ~``1/sqrt(eps)``-fold, making the energy's curvature in ``y`` explode at ``y0 = 0``.
    """
    if not hidden:
        raise ValueError("hidden must list at least one layer width, e.g. (64, 64).")
    sizes = _sizes(hidden, out_features)
    fan_in = in_features + latent_features
    keys = iter(jax.random.split(key, 2 * len(hidden) + 6))
    init = jax.nn.initializers.lecun_normal()

    def bias(n: int, fan: int) -> Array:
        bound = 1.0 / np.sqrt(fan)
        return jax.random.uniform(next(keys), (n,), dtype, -bound, bound)

    params = {
        "x_kernel": init(next(keys), (in_features, sum(sizes)), dtype),
        "x_bias": bias(sum(sizes), fan_in),
        "y_kernel": init(next(keys), (latent_features, sum(sizes)), dtype)
        * jnp.sqrt(latent_features / fan_in).astype(dtype),
    }
    params["x_kernel"] = params["x_kernel"] * jnp.sqrt(in_features / fan_in).astype(dtype)
    for k in range(1, len(hidden)):
        params[f"w{k}"] = init(next(keys), (hidden[k - 1], hidden[k]), dtype)
        params[f"b{k}"] = bias(hidden[k], hidden[k - 1])
    for k in range(len(hidden)):
        params[f"ln{k}_scale"] = jnp.ones((hidden[k],), dtype)
        params[f"ln{k}_bias"] = jnp.zeros((hidden[k],), dtype)
    params["w_out"] = init(next(keys), (hidden[-1], out_features), dtype)
    params["b_out"] = bias(out_features, hidden[-1])
    return params


def project_elements(params: dict[str, Array], x: Array) -> Array:
    """The element-only part of every layer that reads ``[x, y]``: ``x @ W_x + b`` (once per call)."""
    return x @ params["x_kernel"] + params["x_bias"]


def _layer_norm(h: Array, scale: Array, bias: Array) -> Array:
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + _LN_EPS) * scale + bias


def resnet_potential(xw: Array, y: Array, params: dict[str, Array]) -> Array:
    """``F(x, y)`` from the projected element ``xw = project_elements(params, x)`` and ``y [D]``."""
    num_hidden = sum(1 for k in params if k.startswith("ln") and k.endswith("_scale"))
    hidden = [params[f"ln{k}_scale"].shape[0] for k in range(num_hidden)]
    out_features = params["b_out"].shape[0]
    z = xw + y @ params["y_kernel"]
    splits = np.cumsum(_sizes(hidden, out_features))[:-1].tolist()
    first, *res = jnp.split(z, splits)
    h = jnp.tanh(_layer_norm(first, params["ln0_scale"], params["ln0_bias"])) + res[0]
    for k in range(1, num_hidden):
        pre = h @ params[f"w{k}"] + params[f"b{k}"]
        h = jnp.tanh(_layer_norm(pre, params[f"ln{k}_scale"], params[f"ln{k}_bias"])) + res[k]
    out = h @ params["w_out"] + params["b_out"] + res[-1]
    return jnp.sum(jnp.square(out))
