"""Run by test_common_training.py in a subprocess that it kills with SIGKILL at some moment.

Usage: ``python common_training_killable.py WORKDIR CONFIG_JSON``. Trains the toy problem with a
batch function slowed down a little, so that the kill can land anywhere: in a step, a log, a save.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import common_training_toy as toy  # noqa: E402

from examples.common import fit  # noqa: E402


def slow_batch_fn(step: int):
    time.sleep(0.02)
    return toy.batch_fn(step)


def main(workdir: str, config: str) -> None:
    fit(
        init_fn=toy.init_fn,
        loss_fn=toy.loss_fn,
        optimizer=toy.OPTIMIZER,
        batch_fn=slow_batch_fn,
        eval_fn=toy.eval_fn,
        config=json.loads(config),
        workdir=workdir,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
