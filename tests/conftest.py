"""Shared fixtures: the bundled Rego policies and the embedding model (loaded once), and
databases: a SQLite file, and PostgreSQL on 127.0.0.1 when it is reachable (each test in a
schema of its own, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.governance.policies import read_policy_modules
from bot.native import load_torch_first
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


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One folder of ONNX exports for the run: a test that builds the bot on the default
    (onnx-int8) backend exports the model once, not once per data folder."""
    with pytest.MonkeyPatch.context() as patch:
        if "NPO_EMBEDDING_CACHE" not in os.environ:
            patch.setenv("NPO_EMBEDDING_CACHE", str(tmp_path_factory.mktemp("onnx-exports")))
        yield


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole run (offline)."""
    return SentenceTransformerEmbedder()


CORPUS = ROOT.parent / "shared" / "corpora" / "runbooks-v1"
PLAYBOOKS = ROOT / "playbooks"


PG_URL = os.environ.get(
    "NPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reason() -> str | None:
    try:
        probe = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with probe.connect() as conn:
            conn.execute(text("select 1"))
        probe.dispose()
    except Exception as exc:  # any failure to connect means: skip with the reason
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {first_line}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/npo.db"
        return
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
