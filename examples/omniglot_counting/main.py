"""Omniglot unique-class counting (paper section 5.2): flags only; the work is in ``train.py``.

Example:
  python -m examples.omniglot_counting.main --workdir=/tmp/omniglot --config=default
  python -m examples.omniglot_counting.main --workdir=/tmp/omniglot_ea --aggregators=ea
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
from collections.abc import Sequence

CONFIGS = ("default", "test", "full")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="output folder (resumes if it has runs)")
    parser.add_argument("--config", choices=CONFIGS, default="default", help="configs/<name>.py")
    parser.add_argument(
        "--data_dir", default=None, help="folder holding omniglot/ (default $EQAGG_DATA_DIR)"
    )
    parser.add_argument(
        "--aggregators",
        default=None,
        help="comma-separated subset of sum,attention,ea (default: the config's)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("examples").setLevel(logging.INFO)  # Ours; orbax's INFO lines stay hidden.
    config = importlib.import_module(f"examples.omniglot_counting.configs.{args.config}")
    config = config.get_config()
    overrides = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.aggregators is not None:
        overrides["aggregators"] = tuple(
            a.strip() for a in args.aggregators.split(",") if a.strip()
        )
    config = dataclasses.replace(config, **overrides)

    from examples.omniglot_counting import train  # Imports JAX: after parsing, so --help is fast.

    train.train_and_evaluate(config, args.workdir)


if __name__ == "__main__":
    main()
