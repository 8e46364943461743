"""The architecture holds: each package's public names are exactly its ``__all__``, no package
imports another package's private module, and arrows run only downward (docs/architecture.md).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Import name → folder, from the package table setuptools installs from.
PACKAGES: dict[str, Path] = {
    name: ROOT / folder
    for name, folder in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ].items()
    if any((ROOT / folder).glob("*.py"))
}
# The lazy top-level package is checked name by name in test_sdk_public.py.
EAGER = sorted(set(PACKAGES) - {"evalhouse"})
# Which layer each package is in: a module may import its own layer's public names and
# anything below, never above. instrumentation stands apart: it reaches the server only
# through OTLP and the HTTP API, and nothing but the commands runs it.
LAYER = {
    "evalhouse": 0,
    "evalhouse.store": 0,
    "evalhouse.collector": 1,
    "evalhouse.datasets": 1,
    "evalhouse.evaluators": 1,
    "evalhouse.evaluators.scorers": 1,
    "evalhouse.evaluators.results": 1,
    "evalhouse.explorer": 1,
    "evalhouse.online": 1,
    "evalhouse.replay": 1,
    "evalhouse.surfaces": 2,
}


def _owner(module: str) -> str:
    """The package a module belongs to: the longest package name that prefixes it."""
    matches = [p for p in PACKAGES if module == p or module.startswith(p + ".")]
    return max(matches, key=len)


def _imports() -> list[tuple[str, str, int]]:
    """(importing package, imported module, line) for every evalhouse import in the sources.

    ``evalhouse/__init__.py`` is left out: it is the SDK's facade (``evalhouse.init()``...),
    importing ``evalhouse.instrumentation`` lazily on first use.
    """
    found = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            if path == ROOT / "evalhouse" / "__init__.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                for module in modules:
                    if module == "evalhouse" or module.startswith("evalhouse."):
                        found.append((package, module, node.lineno))
    return found


@pytest.mark.parametrize("name", EAGER)
def test_a_package_exports_exactly_its_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and attribute != "annotations"  # from __future__
        and not inspect.ismodule(value)
    }
    assert set(module.__all__) == public


def test_no_package_imports_another_package_s_private_module() -> None:
    offenders = []
    for package, module, line in _imports():
        target = _owner(module)
        rest = module[len(target) :].lstrip(".").split(".") if module != target else []
        private = any(part.startswith("_") for part in rest if part)
        # A subpackage may use its parent's internals (results reads the evaluator's trees).
        if private and target != package and not package.startswith(target + "."):
            offenders.append(f"{package} (line {line}) imports {module}")
    assert offenders == []


def test_arrows_run_only_downward() -> None:
    upward = []
    for package, module, line in _imports():
        target = _owner(module)
        if package.startswith("evalhouse.instrumentation"):
            # The SDK may use the light core only: never the store, the server or surfaces.
            if target != "evalhouse" and target != "evalhouse.instrumentation":
                upward.append(f"{package} (line {line}) imports {module}")
            continue
        if target == "evalhouse.instrumentation":
            # Only commands may run the SDK (``evalhouse eval`` runs eval files with it).
            if LAYER[_owner(package)] < LAYER["evalhouse.surfaces"]:
                upward.append(f"{package} (line {line}) imports the SDK: {module}")
            continue
        if LAYER[target] > LAYER[_owner(package)]:
            upward.append(f"{package} (line {line}) imports {module}")
    assert upward == []
