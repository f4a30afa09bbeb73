"""Everything that reads or writes the CIR goes through ``central._sql`` (issue 15): no
other module of the services, the command line or the benchmarks opens SQLite itself,
so none of them can be right on the embedded CIR and wrong on PostgreSQL.  The edge's
own files (its spool and its state log) are not the CIR and stay on SQLite."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = {"sqlite3", "sqlite_utils"}
ALLOWED = {"central/_sql.py"}


def imports(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_sql_module_imports_sqlite() -> None:
    found = {
        str(p.relative_to(ROOT)): sorted(imports(p) & FORBIDDEN)
        for pkg in ("central", "nii", "bench")
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if str(p.relative_to(ROOT)) not in ALLOWED
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_the_guard_sees_an_import() -> None:
    assert imports(ROOT / "central" / "_sql.py") >= {"sqlite3"}
