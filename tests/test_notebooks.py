"""Executes every notebook under ``examples/notebooks`` top to bottom and fails on any cell error.

Slow (a minute or more each on 2 CPU cores), so marked ``slow``: CI runs it with ``pytest -m slow``.
Needs the ``notebooks`` extra (``pip install -e ".[notebooks]"``); skips with a reason without it.
The notebooks generate their own data, so no data directory is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # the slowest cell (timing sweep, training) takes ~1.5 min on 2 shared cores

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
except ImportError:  # pragma: no cover - depends on the environment
    nbformat = None


def test_notebooks_are_found():
    assert [p.name for p in NOTEBOOKS] == [
        "01_aggregation_as_energy_minimisation.ipynb",
        "02_explicit_vs_implicit.ipynb",
        "03_ea_as_gnn_readout.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch):
    if nbformat is None:
        pytest.skip('nbclient/nbformat are not installed; pip install -e ".[notebooks]"')
    # The kernel inherits this environment: reuse the test suite's compile cache (tests/conftest.py)
    # so that repeated runs skip most of XLA's compilation.
    cache = os.environ.get("EQAGG_TEST_JAX_CACHE", str(Path.home() / ".cache" / "eqagg-jax-tests"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    nb = nbformat.read(path, as_version=4)
    # Kernel "python3" is ipykernel's; jupyter_client launches its `python` as sys.executable, so the
    # kernel runs in this interpreter's environment. A last cell checks that. cwd = repo root, so
    # `import eqagg` and `import examples` resolve to this checkout.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    kernel_prefix = nb.cells[-1].outputs[0]["text"].strip()
    assert kernel_prefix == sys.prefix, f"the kernel ran in {kernel_prefix}, not in {sys.prefix}"
