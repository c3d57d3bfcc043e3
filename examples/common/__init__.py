"""Training plumbing shared by every example (one place, never copied per example).

See ``examples/common/README.md`` for how an example uses it. The names below are imported on first
use, so that ``examples.common.data_dir`` (used by the input pipelines) stays free of JAX, orbax and
TensorBoard imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Checkpointer": ".checkpointing",
    "TrainConfig": ".config",
    "TIMING_KEYS": ".metrics",
    "MetricsWriter": ".metrics",
    "read_metrics": ".metrics",
    "count_params": ".parameters",
    "DATA_AXIS": ".sharding",
    "batch_sharding": ".sharding",
    "check_batch": ".sharding",
    "make_data_mesh": ".sharding",
    "replicate": ".sharding",
    "replicated_sharding": ".sharding",
    "shard_batch": ".sharding",
    "markdown_table": ".tables",
    "write_markdown_table": ".tables",
    "TrainState": ".train_state",
    "FitResult": ".training",
    "fit": ".training",
    "make_train_step": ".training",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # For type checkers and IDEs; at run time __getattr__ imports on demand.
    from .checkpointing import Checkpointer as Checkpointer
    from .config import TrainConfig as TrainConfig
    from .metrics import TIMING_KEYS as TIMING_KEYS
    from .metrics import MetricsWriter as MetricsWriter
    from .metrics import read_metrics as read_metrics
    from .parameters import count_params as count_params
    from .sharding import DATA_AXIS as DATA_AXIS
    from .sharding import batch_sharding as batch_sharding
    from .sharding import check_batch as check_batch
    from .sharding import make_data_mesh as make_data_mesh
    from .sharding import replicate as replicate
    from .sharding import replicated_sharding as replicated_sharding
    from .sharding import shard_batch as shard_batch
    from .tables import markdown_table as markdown_table
    from .tables import write_markdown_table as write_markdown_table
    from .train_state import TrainState as TrainState
    from .training import FitResult as FitResult
    from .training import fit as fit
    from .training import make_train_step as make_train_step


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
