"""The console adapter, driven through stdin like an operator would."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from bot.cli.commands import main
from bot.console.chat import run_console
from bot.service import NPOService
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever


def _service(engine: Engine, spe: RegoPolicyEngine) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-optic", 0.8, "replace_optic"), FakeHit("link-drain", 0.6)]
    )
    config = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)
    return NPOService(engine, retriever, spe, config, np.random.default_rng(0), clock=lambda: now)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_conversation(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    out: list[str] = []
    script = [
        "like",  # nothing to judge yet
        "CRC errors on leaf-1:eth1 in maintenance window redundancy=2",
        "like",
        "override optics were fine, it was the patch cord",  # replaces the like
        "stats",
        "verbosity brief",
        "leaf-1:eth1 CRC errors again, maintenance window, redundancy=2",
        "verbosity loud",
        "quit",
        "never read",
    ]
    service = _service(engine, rego_engine)
    assert run_console(service, script, out.append) == 0
    text = "\n".join(out)
    assert "no recommendation yet" in text
    assert text.count("── incident:") == 2
    assert "RECOMMEND" in text
    assert "stored: like on link-optic" in text
    assert "replaced: override on link-optic" in text
    assert any(o.startswith("playbook ") and "\nlink-optic " in o for o in out)
    assert "verbosity: brief" in text and "error: verbosity" in text
    second = [o for o in out if "── incident:" in o][-1]  # the brief rendering has no trace
    assert "trace:" not in second and "gauge" in second
    [row] = service.stats()
    assert (row.likes, row.overrides) == (0, 1)


def test_npo_chat_end_to_end_on_the_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real model, embedded Chroma, SQLite, Rego: ingest on first start, then talk."""
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NPO_SEED", "3")
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            "db-7 SMART predictive failure on /dev/sdb, redundancy=2\n"
            "like server-disk-failure-replace\n"
            "stats\n"
        ),
    )
    assert main(["chat"]) == 0
    captured = capsys.readouterr()
    assert "playbooks: 34 added" in captured.err
    assert "server-disk-failure-replace" in captured.out
    assert "stored: like on server-disk-failure-replace" in captured.out
    assert main(["stats", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["playbooks"]
    liked = next(r for r in rows if r["playbook"] == "server-disk-failure-replace")
    assert liked["likes"] == 1
    assert main(["db", "upgrade"]) == 0
    assert "database at revision 0" in capsys.readouterr().out  # at head, as migrated
