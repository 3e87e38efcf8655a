"""Reading the SPE's Rego policies from disk (the core only sees their text)."""

from __future__ import annotations

from pathlib import Path

from core.policy import PolicyError


def read_policy_modules(directory: Path) -> dict[str, str]:
    """All ``*.rego`` files under ``directory``, keyed by their path (used in errors)."""
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy folder not found (set NPO_POLICIES_DIR)")
    modules = {str(p): p.read_text(encoding="utf-8") for p in sorted(directory.rglob("*.rego"))}
    if not modules:
        raise PolicyError(f"{directory}: no .rego files found")
    return modules
