"""Shared fixtures: the bundled Rego policies, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.policies import read_policy_modules
from core.rego import RegoPolicyEngine

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "playbooks" / "policies"


@pytest.fixture(scope="session")
def policy_modules() -> dict[str, str]:
    return read_policy_modules(POLICIES)


@pytest.fixture(scope="session")
def rego_engine(policy_modules: dict[str, str]) -> RegoPolicyEngine:
    return RegoPolicyEngine(policy_modules)
