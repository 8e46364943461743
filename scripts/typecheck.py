"""Run mypy (strict) over the package as it is imported: ``evalhouse.*``.

The top-level folders are mapped into ``evalhouse.*`` by setuptools (``package-dir`` in
pyproject.toml), which mypy cannot follow. This builds a tree of symlinks in
``build/typecheck`` with the import layout, from that same table, and checks it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def build_tree() -> None:
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        target = TREE.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in [*sorted((ROOT / folder).glob("*.py")), ROOT / folder / "py.typed"]:
            if source.exists():
                (target / source.name).symlink_to(source)


def main() -> int:
    build_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    return subprocess.call([*command, "-p", "evalhouse"], cwd=TREE)


if __name__ == "__main__":
    raise SystemExit(main())
