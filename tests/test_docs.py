"""The README's code and every docstring example in solvers/ and eqagg/ run and say what they show."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]


@pytest.mark.parametrize("name", _modules("solvers") + _modules("eqagg"))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0


def test_readme_python_blocks_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    # The README promises converged solves and equal explicit/implicit gradients on its example.
    assert bool(namespace["r"].converged.all())
    g_u, g_i = namespace["g_unrolled"], namespace["g_implicit"]
    assert float(abs(g_u - g_i).max()) <= 1e-3 * float(abs(g_i).max()) + 1e-7
