"""Where the examples find their data: a flag, else ``$EQAGG_DATA_DIR``, else ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EQAGG_DATA_DIR"
CACHE_ENV_VAR = "EQAGG_CACHE_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT = _REPO_ROOT.parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, *, subdir: str | None = None) -> Path:
    """Returns the data directory (optionally a sub-directory of it) and checks that it exists.

    Args:
      data_dir: an explicit path (e.g. from a ``--data_dir`` flag). When ``None``, ``$EQAGG_DATA_DIR`` is
        used, else ``../shared/data`` beside the repository when it exists.
      subdir: a dataset folder inside the data directory, e.g. ``"omniglot"``.

    Raises:
      FileNotFoundError: naming the directory looked for and how to provide it.
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or (_DEFAULT if _DEFAULT.exists() else None)
    if data_dir is None:
        raise FileNotFoundError(
            f"No data directory: pass --data_dir or set {ENV_VAR} to the folder that holds "
            f"'omniglot/' and 'moleculenet/' (looked for the default {_DEFAULT})."
        )
    path = Path(data_dir).expanduser()
    if subdir is not None:
        path = path / subdir
    if not path.is_dir():
        raise FileNotFoundError(
            f"Data directory {str(path)!r} does not exist: set {ENV_VAR} (or --data_dir) to a folder "
            f"that contains {subdir + '/' if subdir else 'the dataset folders'}."
        )
    return path


def resolve_cache_dir(name: str) -> Path:
    """Returns (and creates) a cache folder for derived files: ``$EQAGG_CACHE_DIR/<name>``.

    Defaults to ``~/.cache/eqagg/<name>`` so the repository and the read-only data stay untouched.
    """
    root = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "eqagg"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path
