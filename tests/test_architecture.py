"""The rules of the house that a reviewer would otherwise check by eye."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "bot",
    "retrieval",
    "slack_bolt",
    "slack_sdk",
    "sqlmodel",
    "sqlalchemy",
    "chromadb",
    "langchain",
    "langchain_core",
    "sentence_transformers",
    "os",
    "pathlib",
    "io",
    "socket",
    "subprocess",
    "sqlite3",
    "requests",
    "httpx",
    "open",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            names.add("open")
    return names


@pytest.mark.parametrize("module", sorted((ROOT / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_is_pure(module: Path) -> None:
    assert not (_imports(module) & FORBIDDEN_IN_CORE)


def test_no_module_builds_settings_or_apps_at_import() -> None:
    for path in (ROOT / "bot").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                assert name not in {"Settings", "App", "create_app"}, (
                    f"{path.name}: {name}() at import"
                )
