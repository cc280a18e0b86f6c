"""The space layer stands alone: it imports neither flax nor `jaxnas.nn`.

`jaxnas/__init__.py` loads its public names on first use, so a fresh interpreter that
imports `jaxnas.space` loads the space layer alone; using any public name of `jaxnas` loads
`jaxnas.nn` too, which registers its blocks (an unknown block fails where it is written).
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


def _fresh(code: str) -> str:
    """Runs `code` in a fresh interpreter (this checkout's jaxnas first); its stdout."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=SPACE.parents[1])
    return result.stdout.strip()


def test_importing_the_space_layer_imports_neither_flax_nor_nn():
    loaded = _fresh(
        "import sys\n"
        "import jaxnas.space\n"
        "spec = jaxnas.space.compile({'x': jaxnas.space.Float(0, 1), "
        "'n': jaxnas.space.Integer(1, 4)})\n"
        "import jax; spec.sample(jax.random.key(0))\n"
        f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN!r})))\n")
    assert loaded == "[]", loaded


def test_using_jaxnas_loads_the_blocks_in_a_fresh_process():
    out = _fresh(
        "import jaxnas as jn\n"
        "print(jn.Operation('Sequential').operator is jn.nn.Sequential)\n"
        "try:\n"
        "    jn.Operation('Sequentail')\n"
        "except ValueError as error:\n"
        "    print('refused:', error)\n")
    assert out.startswith("True\nrefused: Operation(operator='Sequentail')"), out


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
