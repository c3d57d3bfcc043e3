"""Counting the parameters of a model."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def count_params(tree: Any) -> int:
    """Returns the total number of scalars in the array leaves of a pytree.

    Args:
      tree: a pytree of arrays (``jax.Array``, ``np.ndarray`` or ``jax.ShapeDtypeStruct``), e.g. the
        ``params`` of a flax model.

    Example:
      >>> import numpy as np
      >>> count_params({"w": np.zeros((3, 4)), "b": np.zeros(4)})
      16
    """
    return sum(math.prod(_shape(leaf)) for leaf in jax.tree.leaves(tree))


def _shape(leaf: Any) -> tuple[int, ...]:
    shape = getattr(leaf, "shape", None)
    return tuple(shape) if shape is not None else np.shape(leaf)
