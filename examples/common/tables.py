"""Markdown results tables for the examples' READMEs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    float_format: str = "{:.4g}",
) -> str:
    """Formats rows as a GitHub markdown table.

    Args:
      rows: one mapping per row, column name -> value. A missing value is left blank.
      columns: the columns, in order; defaults to the keys of all rows in first-seen order.
      float_format: ``str.format`` pattern for float values.

    Returns:
      The table, ending with a newline.

    Raises:
      ValueError: if there are no columns (no ``rows`` and no ``columns``).

    Example:
      >>> print(markdown_table([{"model": "eqagg", "acc": 0.91234}]), end="")
      | model | acc |
      | --- | --- |
      | eqagg | 0.9123 |
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        raise ValueError(
            "markdown_table got no rows and no columns; pass columns=[...] explicitly."
        )
    lines = [_line(columns), _line(["---"] * len(columns))]
    lines += [_line([_cell(row.get(c, ""), float_format) for c in columns]) for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown_table(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    float_format: str = "{:.4g}",
) -> Path:
    """Writes :func:`markdown_table` to ``path`` (creating parent folders) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(rows, columns, float_format=float_format))
    return path


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: Any, float_format: str) -> str:
    text = float_format.format(value) if isinstance(value, (float, np.floating)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
