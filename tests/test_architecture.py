"""The layers stay apart: the core library imports no storage, stages, DAG engine, flows, tasks or
Prefect; the DAG engine imports no domain code; stages import no Prefect; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in a module, at module level or inside a function
    (relative imports resolve inside the module's own package and are skipped)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _violations(package: str, forbidden: set[str]) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}/"
    return [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in files for line, name in _imports(f)
            if name in forbidden]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("dexlite_core", {"storage", "stages", "dag", "flows", "tasks", "prefect", "prefect_dask"}),
    ("dag", {"dexlite_core", "stages", "flows", "tasks", "prefect", "prefect_dask"}),
    ("stages", {"flows", "tasks", "prefect", "prefect_dask"}),
    ("storage", {"stages", "dag", "flows", "tasks", "prefect"}),
])
def test_layers_do_not_import_upwards(package: str, forbidden: set[str]) -> None:
    assert _violations(package, forbidden) == []


def test_the_import_check_sees_function_level_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from storage.parquet import read_grasps\n    import prefect.flows\n")
    assert [name for _, name in _imports(f)] == ["os", "storage", "prefect"]


@pytest.mark.parametrize("package", ["stages", "dag", "flows"])
def test_no_module_over_500_lines(package: str) -> None:
    long = {str(f.relative_to(ROOT)): n for f in (ROOT / package).rglob("*.py")
            if (n := len(f.read_text().splitlines())) > 500}
    assert long == {}


def test_every_stage_is_its_own_module() -> None:
    from stages.table import STAGES

    for name, spec in STAGES.items():
        fns = spec.functions()
        assert {fn.__module__ for fn in fns} == {f"stages.{name}"}, name
