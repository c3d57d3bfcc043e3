"""Atomic, resumable checkpoints of a run (a thin layer over ``orbax.checkpoint``).

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a process
killed while saving leaves the previous checkpoint as the latest one; :meth:`Checkpointer.latest_step`
never sees a partial save.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
PyTree = Any


class Checkpointer:
    """Saves and restores named pytrees (e.g. ``state=...``) under ``workdir/checkpoints/<step>``.

    Saves run in the background; :meth:`close` (or leaving the ``with`` block) waits for them.

    Args:
      workdir: the run's directory.
      max_to_keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3) -> None:
        directory = Path(workdir).absolute() / CHECKPOINT_DIR
        # cleanup_tmp_directories: remove the unfinished folders of saves cut short by a kill.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        """Returns the step of the newest complete checkpoint, or ``None`` if there is none."""
        return self._manager.latest_step()

    def save(self, step: int, items: Mapping[str, PyTree]) -> None:
        """Starts saving ``items`` as the checkpoint of ``step`` (skipped if it already exists)."""
        if step in self._manager.all_steps():
            return
        args = ocp.args.Composite(**{k: ocp.args.StandardSave(v) for k, v in items.items()})
        self._manager.save(step, args=args)

    def restore(self, step: int, targets: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Restores the items named in ``targets`` from the checkpoint of ``step``.

        Args:
          step: a step listed by the manager, e.g. :meth:`latest_step`.
          targets: name -> a pytree of arrays (or ``jax.ShapeDtypeStruct`` s) giving the structure,
            dtypes and shardings to restore into.

        Returns:
          name -> restored pytree, placed with the targets' shardings.
        """
        abstract = {k: jax.tree.map(ocp.utils.to_shape_dtype_struct, v) for k, v in targets.items()}
        args = ocp.args.Composite(**{k: ocp.args.StandardRestore(v) for k, v in abstract.items()})
        restored = self._manager.restore(step, args=args)
        return {k: restored[k] for k in targets}

    def wait(self) -> None:
        """Blocks until background saves have finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for background saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
