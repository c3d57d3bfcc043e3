"""Median estimation (paper section 5.1): flags only; the work is in ``train.py``.

Example:
  python -m examples.median.main --workdir /tmp/median                  # configs/default.py
  python -m examples.median.main --workdir /tmp/median_full --config full
  python -m examples.median.main --workdir /tmp/m --config path/to/my_config.py \\
      --config.embedding_sizes=8,16 --config.num_train_steps=1000

``--config`` takes a name in ``configs/`` or the path of a file with a ``get_config()``; each
``--config.<field>=<value>`` then overrides one field (comma-separated values for sequences).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONFIGS = ("default", "test", "full")
_PREFIX = "--config."


def load_config(name_or_path: str) -> Any:
    """``configs/<name>.py``'s ``get_config()``, or that of the Python file at a path."""
    if name_or_path in CONFIGS:
        module = importlib.import_module(f"examples.median.configs.{name_or_path}")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise SystemExit(
                f"--config={name_or_path!r} is neither one of {CONFIGS} nor a Python file."
            )
        spec = importlib.util.spec_from_file_location(f"median_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.get_config()


def _parse_value(text: str, current: Any) -> Any:
    """Parses an override like the field's current value (a sequence, a float, a bool, ...)."""

    def scalar(s: str, like: Any) -> Any:
        if isinstance(like, str) or like is None and not s[:1].isdigit():
            return s
        if isinstance(like, bool):
            if s.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"expected true/false, got {s!r}")
            return s.lower() in ("true", "1")
        value = ast.literal_eval(s)
        return float(value) if isinstance(like, float) else value

    if isinstance(current, (tuple, list)):
        like = current[0] if current else ""
        return tuple(scalar(s.strip(), like) for s in text.strip("()[]").split(",") if s.strip())
    return scalar(text, current)


def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Applies ``--config.<field>=<value>`` flags to a dataclass config."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for flag in overrides:
        if not flag.startswith(_PREFIX) or "=" not in flag:
            raise SystemExit(f"unrecognised argument {flag!r}; overrides look like --config.seed=1")
        name, text = flag[len(_PREFIX) :].split("=", 1)
        if name not in fields:
            raise SystemExit(
                f"{flag!r}: the config has no field {name!r}; it has {sorted(fields)}."
            )
        try:
            changes[name] = _parse_value(text, getattr(config, name))
        except (ValueError, SyntaxError) as err:
            raise SystemExit(f"{flag!r}: cannot parse {text!r} ({err}).") from None
    return dataclasses.replace(config, **changes)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Override any config field with --config.<field>=<value>.",
    )
    parser.add_argument("--workdir", required=True, help="output folder (resumes if it has runs)")
    parser.add_argument(
        "--config", default="default", help=f"one of {CONFIGS} or a path to a config file"
    )
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("examples").setLevel(logging.INFO)  # Ours; orbax's INFO lines stay hidden.
    config = apply_overrides(load_config(args.config), overrides)

    from examples.median import train  # Imports JAX: after parsing, so --help is fast.

    train.train_and_evaluate(config, args.workdir)


if __name__ == "__main__":
    main()
