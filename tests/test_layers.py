"""The layer rules of docs/design.md ("Where each concept lives"), checked on the source.

Every module under ``src/cvmkeeper`` is parsed (not imported) and each of its imports,
including those under ``TYPE_CHECKING`` and inside functions, is held to its layer's rule:
which cvmkeeper layers it may use, and which libraries outside the standard library. A new
import that breaks a rule fails here with the module and the line.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cvmkeeper"

#: layer -> the cvmkeeper layers it may import ("" is the package root: ``__version__``).
ALLOWED_LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "logs": frozenset({"textsafe", "log_context"}),
    "files": frozenset(),
    "textsafe": frozenset(),
    "log_context": frozenset(),
    "config": frozenset({"core", "textsafe"}),
    "cloud": frozenset({"core", "logs", "files", "textsafe"}),
    "alerting": frozenset({"", "core", "logs", "files"}),
    "emulator": frozenset({"core", "cloud"}),
    "executor": frozenset({"core", "config", "cloud", "alerting", "logs", "log_context", "files"}),
    "restore": frozenset({"core", "config", "cloud", "alerting", "executor", "logs", "files"}),
    "metrics": frozenset({"executor"}),
    "scheduler": frozenset(
        {
            "core",
            "config",
            "cloud",
            "alerting",
            "executor",
            "restore",
            "metrics",
            "logs",
            "log_context",
            "files",
        }
    ),
    "cli": frozenset(
        {
            "",
            "core",
            "config",
            "cloud",
            "alerting",
            "executor",
            "restore",
            "scheduler",
            "emulator",
            "logs",
            "textsafe",
        }
    ),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}

#: layer -> the libraries outside the standard library it may import.
ALLOWED_LIBRARIES: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "logs": frozenset(),
    "files": frozenset(),
    "textsafe": frozenset(),
    "log_context": frozenset(),
    "config": frozenset({"yaml"}),
    "cloud": frozenset({"tencentcloud", "tenacity"}),
    "alerting": frozenset({"sentry_sdk", "apprise"}),  # apprise: the optional extra
    "emulator": frozenset({"yaml"}),
    "executor": frozenset(),
    "restore": frozenset(),
    "metrics": frozenset(),  # prometheus_client is loaded by name, only when switched on
    "scheduler": frozenset({"apscheduler"}),
    "cli": frozenset({"click", "tencentcloud"}),
    "__main__": frozenset(),
    "__init__": frozenset(),
}


def layer_of(path: Path) -> str:
    """``core`` for ``src/cvmkeeper/core/x.py``, ``logs`` for ``src/cvmkeeper/logs.py``."""
    relative = path.relative_to(SRC)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            assert node.module is not None
            if node.module == "cvmkeeper":  # ``from cvmkeeper import files``: a module's layer
                for alias in node.names:
                    submodule = (SRC / f"{alias.name}.py").exists() or (SRC / alias.name).is_dir()
                    yield node.lineno, f"cvmkeeper.{alias.name}" if submodule else "cvmkeeper"
            else:
                yield node.lineno, node.module


MODULES = sorted(SRC.rglob("*.py"))


def test_every_layer_has_a_rule() -> None:
    assert {layer_of(path) for path in MODULES} == set(ALLOWED_LAYERS)


def violations(path: Path, layer: str) -> list[str]:
    """Each import of the file that its layer's rules do not allow."""
    broken = []
    for line, module in imports(path):
        top, _, rest = module.partition(".")
        if top == "cvmkeeper":
            used = rest.partition(".")[0]
            if used != layer and used not in ALLOWED_LAYERS[layer]:
                broken.append(f"{path.name}:{line}: {layer} imports {module}")
        elif (
            top not in sys.stdlib_module_names
            and top != "__future__"
            and top not in ALLOWED_LIBRARIES[layer]
        ):
            broken.append(f"{path.name}:{line}: {layer} imports the library {module}")
    return broken


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layer_rules(path: Path) -> None:
    broken = violations(path, layer_of(path))
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    ("layer", "source"),
    [
        ("core", "from apscheduler.triggers.cron import CronTrigger\n"),
        ("core", "from cvmkeeper.config import Setup\n"),
        ("cloud", "def f():\n    from cvmkeeper.emulator.core import ApiError\n"),
        (
            "alerting",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from cvmkeeper.executor.report import RunReport\n",
        ),
        ("emulator", "import cvmkeeper.executor\n"),
    ],
)
def test_the_check_refuses_the_imports_issue_20_removed(
    tmp_path: Path, layer: str, source: str
) -> None:
    bad = tmp_path / "module.py"
    bad.write_text(source, encoding="utf-8")
    assert len(violations(bad, layer)) == 1
