"""Shared fixtures: the bundled Rego policies and the embedding model, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.native import load_torch_first
from bot.policies import read_policy_modules
from core.rego import RegoPolicyEngine
from retrieval.embeddings import SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    load_torch_first()  # before any test loads regopy: see bot/native.py


POLICIES = ROOT / "playbooks" / "policies"


@pytest.fixture(scope="session")
def policy_modules() -> dict[str, str]:
    return read_policy_modules(POLICIES)


@pytest.fixture(scope="session")
def rego_engine(policy_modules: dict[str, str]) -> RegoPolicyEngine:
    return RegoPolicyEngine(policy_modules)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole run (offline)."""
    return SentenceTransformerEmbedder()


CORPUS = ROOT.parent / "shared" / "corpora" / "runbooks-v1"
PLAYBOOKS = ROOT / "playbooks"
