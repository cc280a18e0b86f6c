"""The package's layers point down and its subpackages meet only through public names.

`space` (no flax, no `nn`) -> `nn`, `optimizers`, `train`, `problems` -> `run` (STYLE.md,
Layout). Root modules whose names start with `_` (`jaxnas/_shapes.py`) are shared by every
layer; a subpackage's own `_private` modules are its own business.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxnas"
LAYER = {"space": 0, "metrics": 0, "constraints": 0, "nn": 1, "optimizers": 1, "train": 1, "problems": 1, "run": 2}


def _imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """`(line, module, imported names)` of every `jaxnas` import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ()) for a in node.names if a.name.startswith("jaxnas")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "jaxnas":
            # `from jaxnas import optimizers`: a subpackage (or a public name, from the top)
            out += [(node.lineno, f"jaxnas.{a.name}" if a.name in LAYER else "jaxnas",
                     () if a.name in LAYER else (a.name,)) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("jaxnas."):
            out.append((node.lineno, node.module, tuple(a.name for a in node.names)))
    return out


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _private_target(module: str, names: tuple[str, ...]) -> str | None:
    """The private part an import reaches: a `_module` below a subpackage, or a `_name`."""
    parts = module.split(".")
    if len(parts) >= 3 and any(p.startswith("_") for p in parts[2:]):
        return module
    if len(parts) == 2 and parts[1] in LAYER:
        hidden = [n for n in names if n.startswith("_")]
        return f"{module}.{hidden[0]}" if hidden else None
    return None


def test_no_subpackage_imports_another_ones_private_names():
    offences = []
    for path in _modules(PACKAGE):
        own = path.relative_to(PACKAGE).parts[0] if path.parent != PACKAGE else None
        for line, module, names in _imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else None
            private = _private_target(module, names)
            if private and target != own:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {private}")
    assert not offences, "\n".join(offences)


def test_layers_point_down():
    offences = []
    for name, layer in LAYER.items():
        for path in _modules(PACKAGE / name):
            for line, module, _ in _imports(path):
                parts = module.split(".")
                if module == "jaxnas" or len(parts) < 2:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports the top package")
                    continue
                target = parts[1]
                if target in LAYER and target != name and LAYER[target] >= layer:
                    offences.append(f"{path.relative_to(ROOT)}:{line} ({name}, layer {layer}) "
                                    f"imports {module} (layer {LAYER[target]})")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "examples"])
def test_tests_benchmarks_and_examples_use_public_names(folder):
    pattern = re.compile(r"\b(?:jaxnas|jn)(?:\.[A-Za-z]\w*)*\._(?!_)\w*")
    offences = []
    for path in _modules(ROOT / folder):
        if path.name == "test_layers.py":
            continue
        for line, module, names in _imports(path):
            if any(p.startswith("_") for p in module.split(".")[1:]) or \
                    any(n.startswith("_") and not n.startswith("__") for n in names):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module} {names}")
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        offences += [f"{path.relative_to(ROOT)}: {m}" for m in pattern.findall(code)]
    assert not offences, "\n".join(offences)
