"""Data parallelism with ``jax.sharding``: a 1-D device mesh, batches split along their first axis.

Parameters and optimiser state are replicated on every device (``P()``); each batch is split along
its leading axis over the ``"data"`` mesh axis (``P("data")``). Under ``jit`` XLA then inserts the
all-reduce of the gradients (and of flax ``BatchNorm`` statistics) itself, so a loss written for one
device runs unchanged on many.

Multi-host (several processes, e.g. a TPU pod slice or several GPU machines):

1. call ``jax.distributed.initialize()`` first, before any other JAX call;
2. build the mesh over all devices of all hosts, ``make_data_mesh()`` (``jax.devices()``);
3. let each process produce only its own part of the global batch (``global_batch /
   jax.process_count()`` examples, e.g. by offsetting the data by ``jax.process_index()``);
   :func:`shard_batch` assembles the global array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
PyTree = Any


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Returns a 1-D mesh with axis ``"data"`` over ``devices`` (default: all, of all hosts).

    Example:
      >>> make_data_mesh().axis_names
      ('data',)
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_data_mesh got an empty devices list; pass at least one device.")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Returns the sharding that keeps a full copy on every device of ``mesh`` (params, opt state)."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Returns the sharding that splits the leading (batch) axis over the ``"data"`` axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated_sharding(mesh))


def check_batch(batch: PyTree, num_devices: int) -> int:
    """Checks that a batch can be split evenly over ``num_devices`` and returns its batch size.

    Args:
      batch: a pytree of arrays that share their leading (batch) axis.
      num_devices: how many devices the batch is split over.

    Returns:
      The size of the leading axis.

    Raises:
      ValueError: if a leaf is a scalar, the leaves disagree on the batch size, or the batch size is
        not a multiple of ``num_devices``; the message says how to fix it.

    Example:
      >>> check_batch({"x": np.zeros((8, 3)), "y": np.zeros(8)}, num_devices=2)
      8
    """
    leaves = jax.tree_util.tree_leaves_with_path(batch)
    if not leaves:
        raise ValueError("batch_fn returned an empty batch; return a pytree of arrays.")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"batch leaf {jax.tree_util.keystr(path)!r} is a scalar; every leaf of the batch "
                "needs a leading batch axis (put per-batch constants in the loss, not the batch)."
            )
        sizes[jax.tree_util.keystr(path)] = shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch leaves disagree on the leading (batch) axis size: {sizes}.")
    size = next(iter(sizes.values()))
    if size % num_devices:
        raise ValueError(
            f"batch size {size} (leading axis of the batch returned by batch_fn) is not divisible "
            f"by the {num_devices} devices it is split over; set batch_size to a multiple of "
            f"{num_devices}, or pass fewer devices (mesh=make_data_mesh(jax.devices()[:k]))."
        )
    return size


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Turns this process's part of a batch into global arrays split over the ``"data"`` axis.

    On one host the local part is the whole batch. On several hosts each process passes its own
    ``global_batch / jax.process_count()`` examples (see the module docstring).

    Args:
      batch: a pytree of host (numpy) or device arrays with a shared leading batch axis.
      mesh: the data mesh from :func:`make_data_mesh`.

    Returns:
      The batch as ``jax.Array`` s with sharding ``NamedSharding(mesh, P("data"))``.

    Raises:
      ValueError: if the batch size is not divisible by the number of devices (see
        :func:`check_batch`).
    """
    local_devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    check_batch(batch, len(local_devices))
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
