"""The built wheel holds every file the code opens at run time (pip and Docker users run the wheel).

The wheel is built from a copy of what the Dockerfile copies (pyproject.toml, README.md, LICENSE,
shared/, services/), then checked three ways, none of them a hand list:
1. every file under shared/ and services/ except bytecode is in the wheel;
2. every `Path(__file__)`-relative path and every `importlib.resources.files("pkg")` path spelled
   in the code names a file or folder the wheel holds (so no run-time open reaches outside it);
3. run from the unpacked wheel (not the checkout), the code's own loaders succeed: every venue's
   shipped market list, every trainer config, the migrations, the replay sample.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services")
BYTECODE = {".pyc", ".pyo"}


def _source_files() -> Iterator[PurePosixPath]:
    """Every file under the packages but what pyproject's exclude-package-data leaves out on purpose
    (bytecode, editor backups, dotfiles)."""
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if not path.is_file() or "__pycache__" in rel.parts or path.suffix in BYTECODE:
                continue
            if path.name.startswith(".") or path.name.endswith("~"):
                continue
            yield PurePosixPath(rel.as_posix())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel once, from a copy of the sources (a build in the checkout leaves build/ behind,
    whose stale files would end up in later wheels)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for top in PACKAGES:
        # __pycache__ is copied on purpose: the wheel must leave it out.
        shutil.copytree(ROOT / top, src / top)
    (src / "services" / "__pycache__").mkdir(exist_ok=True)
    (src / "services" / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"\0")
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("tradewind-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_files(wheel: Path) -> set[PurePosixPath]:
    with zipfile.ZipFile(wheel) as zf:
        return {PurePosixPath(n) for n in zf.namelist() if not n.endswith("/")}


def test_wheel_holds_every_source_file(wheel_files: set[PurePosixPath]) -> None:
    source = set(_source_files())
    data = {p for p in source if p.suffix != ".py"}
    assert data, "no data files found under shared/ and services/: the walk is broken"
    missing = sorted(str(p) for p in source - wheel_files)
    assert not missing, f"files under shared/ and services/ missing from the wheel: {missing}"
    bytecode = sorted(str(p) for p in wheel_files if p.suffix in BYTECODE or "__pycache__" in p.parts)
    assert not bytecode, f"bytecode in the wheel: {bytecode}"
    assert any(p.parts[-2:] == ("licenses", "LICENSE") for p in wheel_files), "LICENSE missing from the wheel"


def _literal_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _PathRefs(ast.NodeVisitor):
    """Paths the code builds from `Path(__file__)` or `resources.files("pkg")` with literal parts."""

    def __init__(self, module: PurePosixPath) -> None:
        self.module = module
        self.found: list[tuple[int, PurePosixPath]] = []
        self._inner: set[int] = set()

    def _eval(self, node: ast.AST) -> PurePosixPath | None:
        # Path(__file__) / resources.files("a.b")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name == "Path" and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
                return self.module if node.args[0].id == "__file__" else None
            if name == "files" and len(node.args) == 1 and (pkg := _literal_str(node.args[0])) is not None:
                return PurePosixPath(*pkg.split("."))
            # <path>.joinpath("a", "b"): follow the literal parts only
            if isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath":
                base = self._eval(node.func.value)
                if base is None:
                    return None
                for arg in node.args:
                    part = _literal_str(arg)
                    if part is None:
                        break
                    base = base / part
                return base
            if isinstance(node.func, ast.Attribute) and node.func.attr == "resolve":
                return self._eval(node.func.value)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self._eval(node.value)
            return None if base is None else base.parent
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            base = self._eval(node.value.value)
            index = node.slice
            if base is None or not (isinstance(index, ast.Constant) and isinstance(index.value, int)):
                return None
            return base.parents[index.value]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self._eval(node.left)
            part = _literal_str(node.right)
            if base is None:
                return None
            return base if part is None else base / part
        return None

    def generic_visit(self, node: ast.AST) -> None:
        if id(node) not in self._inner:
            path = self._eval(node)
            if path is not None and path != self.module:
                self.found.append((getattr(node, "lineno", 0), path))
                for child in ast.walk(node):  # report the longest expression only
                    self._inner.add(id(child))
        super().generic_visit(node)


def _path_refs() -> Iterator[tuple[str, PurePosixPath]]:
    for rel in _source_files():
        if rel.suffix != ".py":
            continue
        visitor = _PathRefs(rel)
        visitor.visit(ast.parse((ROOT / rel).read_text(), str(rel)))
        for line, path in visitor.found:
            yield f"{rel}:{line}", path


def test_paths_spelled_in_the_code_are_in_the_wheel(wheel_files: set[PurePosixPath]) -> None:
    dirs = {parent for f in wheel_files for parent in f.parents}
    refs = list(_path_refs())
    # The scan must see the opens known today, or it is not scanning anything.
    seen = {str(p) for _, p in refs}
    assert {"services/trainer/configs", "services/ingest/sample", "shared/storage/migrations"} <= seen, seen
    outside = [f"{where}: {path}" for where, path in refs if path not in wheel_files and path not in dirs]
    assert not outside, f"paths the code opens that the wheel does not hold: {outside}"


# Run inside the unpacked wheel: each loader the services call at run time.
LOADERS = r"""
import json, sys
from pathlib import Path
import services, shared
from services.ingest.samples import SAMPLE
from services.ingest.venues import NAMES, get
from services.trainer.training import ALGOS, load_config
from importlib import resources

markets = {name: len(get(name).shipped_markets()) for name in NAMES}
configs = {algo: sorted(load_config(algo)) for algo in ALGOS}
migrations = sorted(p.name for p in resources.files("shared.storage").joinpath("migrations").iterdir())
sample = sorted(str(p.relative_to(SAMPLE)) for p in Path(SAMPLE).rglob("*.gz"))
json.dump({"roots": [services.__path__[0], shared.__path__[0]], "markets": markets, "configs": configs,
           "migrations": migrations, "sample": sample}, sys.stdout)
"""


def test_loaders_run_from_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # ahead of the checkout's editable install
    done = subprocess.run(
        [sys.executable, "-c", LOADERS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert all(Path(r).is_relative_to(site) for r in found["roots"]), found["roots"]
    # Bybit ships no list (symbols are split on their quote coin); every other venue's list has markets.
    empty = sorted(name for name, n in found["markets"].items() if n == 0 and name != "bybit")
    assert not empty, f"venues whose shipped market list is empty: {empty}"
    assert set(found["configs"]) == {"dqn", "ppo", "appo"}
    assert all("training" in sections for sections in found["configs"].values()), found["configs"]
    source_migrations = sorted(p.name for p in (ROOT / "shared/storage/migrations").glob("*.sql"))
    assert found["migrations"] == source_migrations
    source_sample = sorted(
        str(p.relative_to(ROOT / "services/ingest/sample")) for p in (ROOT / "services/ingest/sample").rglob("*.gz")
    )
    assert found["sample"] == source_sample and "coinbase/cryptofeed-2021-04-17/COINBASE.ws.28.0.gz" in source_sample
