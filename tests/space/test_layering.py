"""The space layer stands alone: it imports neither flax nor `jaxnas.nn`.

`jaxnas/__init__.py` imports every subpackage (so that `import jaxnas` fills the space
layer's registry of blocks), so importing `jaxnas.space` through it brings `jaxnas.nn`
along. The subprocess below therefore registers a bare `jaxnas` package first and imports
the space layer on its own, as a program that depends only on it would see it.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import jaxnas as jn

SPACE = Path(jn.__file__).parent / "space"
FORBIDDEN = ("flax", "jaxnas.nn")


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_importing_the_space_layer_imports_neither_flax_nor_nn():
    code = (
        "import sys, types\n"
        "package = types.ModuleType('jaxnas')\n"
        f"package.__path__ = [{str(SPACE.parent)!r}]\n"
        "sys.modules['jaxnas'] = package\n"
        "import jaxnas.space\n"
        "spec = jaxnas.space.compile({'x': jaxnas.space.Float(0, 1)})\n"
        f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_no_space_module_imports_flax_or_nn_even_lazily():
    """Imports inside functions count too: they would close the circle at call time."""
    for path in sorted(SPACE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad = [n for n in names if _forbidden(n)]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"


def test_blocks_are_found_by_name_and_unknown_names_fail_when_written():
    assert jn.Operation("Sequential").operator is jn.nn.Sequential
    with pytest.raises(ValueError, match=r"'NoSuchBlock'.*known blocks: \[.*'Sequential'"):
        jn.Operation("NoSuchBlock")


def test_masked_width_is_one_public_object():
    import jaxnas.space

    assert "MaskedWidth" in jaxnas.space.__all__
    assert jn.nn.MaskedWidth is jaxnas.space.MaskedWidth
