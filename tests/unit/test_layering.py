"""Imports point one way: entry points → runtime → services → stages → schema → core.

The package is read as source (``ast``), not imported, so every import counts: module-level ones,
those inside functions and those under ``TYPE_CHECKING`` (a type is a dependency too). Layers,
top to bottom (a module may import its own layer and the ones below it, never one above):

    entry     odock.cli, odock.web, odock.app      (thin adapters: HTTP, the command line)
    runtime   odock.runtime, odock.pipeline.order   (wires one process's resources and the stages together)
    admin     odock.admin                           (the control-plane facade and one-shot admin work)
    services  odock.<feature>.control / .service / .<name>_service / .queries, usage analytics
              and invoices            (per-feature services the facade and routes call; read sides)
    stages    odock.<feature>.stage                 (the request path's steps; odock.pipeline runs them)
    schema    odock.db.schema, odock.db.migrate     (the whole schema: imports every feature's tables)
    core      everything else                       (tables, stores, caches, the pipeline, settings…)

Within the core, feature packages (``odock.keys``, ``odock.budgets``, … and top-level modules
such as ``odock.billing``) must not import each other in a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"

# A module belongs to the first layer one of whose patterns matches its dotted name: ``*`` stands
# for one name or the rest of one, a trailing ``.**`` for the package and everything in it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("odock.cli.**", "odock.web.**", "odock.app")),
    ("runtime", ("odock.runtime", "odock.pipeline.order")),
    ("admin", ("odock.admin.**",)),
    (
        "services",
        (
            "odock.*.control",
            "odock.*.service",
            "odock.*.*_service",
            "odock.*.queries",
            "odock.usage.analytics",
            "odock.usage.invoices",
        ),
    ),
    ("stages", ("odock.*.stage",)),
    ("schema", ("odock.db.schema", "odock.db.migrate", "odock.db.migrations.**")),
)
ORDER = ("entry", "runtime", "admin", "services", "stages", "schema", "core")

# ----------------------------------------------------------------------------------------------
# KNOWN EXCEPTIONS: reversals other engineers are removing in parallel under issue #17. Each
# entry is (importer, imported, reason); the lead removes an entry when its fix is merged.
# Nothing else may be added here: fix the import instead.
KNOWN_REVERSALS: tuple[tuple[str, str, str], ...] = ()
# Import cycles between core feature packages that remain (each listed as the sorted package set).
KNOWN_CYCLES: tuple[tuple[frozenset[str], str], ...] = ()
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import of an ``odock`` module by another, with where it is written."""

    importer: str
    imported: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in ``path`` under the source ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules(root: Path) -> dict[str, Path]:
    """Every module of the ``odock`` package under ``root`` (frozen Alembic revisions aside)."""
    return {
        module_name(path, root): path
        for path in sorted((root / "odock").rglob("*.py"))
        if "versions" not in path.relative_to(root).parts
    }


def imports_of(name: str, path: Path, known: Iterable[str]) -> Iterator[Import]:
    """The ``odock`` modules that ``name`` imports (``from a import b`` names ``a.b`` when b is a module)."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            targets = submodules or [base]
        else:
            continue
        for target in targets:
            if target == "odock" or target.startswith("odock."):
                yield Import(name, target, node.lineno)


def all_imports(root: Path) -> list[Import]:
    """Every import between ``odock`` modules under ``root``."""
    modules = source_modules(root)
    return [found for name, path in modules.items() for found in imports_of(name, path, modules)]


def _pattern(text: str) -> re.Pattern[str]:
    parts = [re.escape(part).replace(r"\*", r"[^.]+") for part in text.removesuffix(".**").split(".")]
    return re.compile(r"\.".join(parts) + (r"(\..+)?" if text.endswith(".**") else ""))


PATTERNS = tuple((layer, tuple(_pattern(p) for p in patterns)) for layer, patterns in LAYERS)


def layer_of(module: str) -> str:
    """The layer ``module`` belongs to (see the module docstring)."""
    for layer, patterns in PATTERNS:
        if any(pattern.fullmatch(module) for pattern in patterns):
            return layer
    return "core"


def reversals(imports: Iterable[Import]) -> list[Import]:
    """The imports of a module in a higher layer than the importer's."""
    return [
        found
        for found in imports
        if ORDER.index(layer_of(found.imported)) < ORDER.index(layer_of(found.importer))
    ]


def feature_of(module: str) -> str:
    """The core unit ``module`` belongs to: ``odock.<package>`` or a top-level module."""
    return ".".join(module.split(".")[:2])


def core_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    """Feature → the other features its core modules import."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        if layer_of(found.importer) != "core" or layer_of(found.imported) != "core":
            continue
        source, target = feature_of(found.importer), feature_of(found.imported)
        if source != target and target != "odock":
            graph.setdefault(source, set()).add(target)
            graph.setdefault(target, set())
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected groups of more than one feature (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(found: Import) -> str:
    """``found`` as a line of a failure message."""
    return (
        f"{found.importer} ({layer_of(found.importer)}) imports {found.imported} "
        f"({layer_of(found.imported)}) at line {found.line}"
    )


def test_imports_point_down_the_layers() -> None:
    """No module imports one of a higher layer, apart from the listed reversals being fixed."""
    allowed = {(importer, imported) for importer, imported, _reason in KNOWN_REVERSALS}
    found = [f for f in reversals(all_imports(SOURCE)) if (f.importer, f.imported) not in allowed]
    assert not found, "imports pointing up the layers:\n" + "\n".join(map(describe, found))


def test_known_reversals_still_exist() -> None:
    """Every listed exception is still a real reversal, so the list shrinks as fixes land."""
    present = {(f.importer, f.imported) for f in reversals(all_imports(SOURCE))}
    stale = [(a, b) for a, b, _reason in KNOWN_REVERSALS if (a, b) not in present]
    assert not stale, f"fixed reversals still listed in KNOWN_REVERSALS: {stale}"


def test_core_features_do_not_import_each_other_in_a_cycle() -> None:
    """The core's feature packages form no import cycle, apart from the listed ones."""
    known = {group for group, _reason in KNOWN_CYCLES}
    found = [sorted(group) for group in cycles(core_graph(all_imports(SOURCE))) if group not in known]
    assert not found, f"import cycles between core feature packages: {found}"


def _plant(root: Path, modules: Mapping[str, str]) -> Path:
    for name, text in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_check_reports_a_planted_reversal(tmp_path: Path) -> None:
    """A core module importing the runtime, even lazily or for a type only, is reported as a reversal."""
    root = _plant(
        tmp_path,
        {
            "odock.runtime": "from odock.db import engine\n",
            "odock.db.engine": "def f():\n    from odock.audit.recorder import AuditedSession\n",
            "odock.audit.recorder": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from odock.runtime import Runtime\n",
        },
    )
    found = {(f.importer, f.imported) for f in reversals(all_imports(root))}
    assert found == {("odock.audit.recorder", "odock.runtime")}


def test_check_reports_a_planted_cycle(tmp_path: Path) -> None:
    """Two core packages importing each other (relative imports included) are reported as a cycle."""
    root = _plant(
        tmp_path,
        {
            "odock.usage.store": "from odock.budgets import ledger\n",
            "odock.budgets.stage": "",
            "odock.budgets.ledger": "from ..usage.store import x\n",
            "odock.errors": "",
        },
    )
    assert cycles(core_graph(all_imports(root))) == [frozenset({"odock.usage", "odock.budgets"})]
