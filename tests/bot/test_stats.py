"""Stats for people: the JSON shape, policy–practice divergence and the chart."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.cli.commands import main
from bot.db.models import MonitorDecisionRow
from bot.monitoring.ticker import MonitorTicker
from bot.reporting.charts import write_chart
from bot.reporting.stats import alignment_report, divergence_report, format_report
from bot.service import FeedbackInput, IncidentInput, NPOService
from core.feedback import FeedbackKind
from core.monitor import MonitorConfig
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

NOW = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)


def _service(engine: Engine, spe: RegoPolicyEngine, config: NPOConfig) -> NPOService:
    hits = [FakeHit("link-optic", 0.85, "replace_optic"), FakeHit("link-drain", 0.6)]
    return NPOService(
        engine, FakeRetriever(hits), spe, config, np.random.default_rng(1), clock=lambda: NOW
    )


def _judge(service: NPOService, text: str, kind: FeedbackKind, n: int, tag: str) -> None:
    for i in range(n):
        rec = service.recommend(IncidentInput(text, "console"))
        service.record_feedback(
            FeedbackInput(rec.recommendation_id, f"{tag}{i}", kind, f"{tag}-{i}")
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_shape_and_divergence(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    config = NPOConfig(
        threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5, monitor=MonitorConfig(min_labels=2)
    )
    service = _service(engine, rego_engine, config)
    night = "CRC errors on leaf-1:eth1 redundancy=2 in maintenance window severity=high"
    _judge(service, night, FeedbackKind.LIKE, 3, "n")
    _judge(service, night + " again", FeedbackKind.OVERRIDE, 2, "o")
    MonitorTicker(engine, config, lambda: NOW, dt.timedelta(minutes=15)).tick()
    report = alignment_report(engine, NOW)
    assert set(report) == {"playbooks", "arms", "monitor", "retrains"}
    row = report["playbooks"][0]
    assert set(row) == {
        "playbook",
        "decisions",
        "likes",
        "overrides",
        "neutral",
        "skipped",
        "mean_loss",
        "mean_loss_7d",
        "override_rate",
        "spe_rejection_rate",
        "last_retrain",
        "paused",
    }
    assert (row["playbook"], row["likes"], row["overrides"]) == ("link-optic", 3, 2)
    assert row["override_rate"] == pytest.approx(0.4)
    assert len(report["arms"]) == 5 and report["monitor"]["ticks"] == 1
    assert report["monitor"]["recent"][0]["action"] in {"retrain", "hold"}
    mon = report["monitor"]
    assert {"fidelity", "base_rate", "kappa"} <= set(mon)
    assert mon["fidelity"] is mon["base_rate"] is mon["kappa"] is None  # no M* yet
    div = divergence_report(engine)
    assert div["by_playbook"] == [
        {"group": "link-optic", "allowed_judged": 5, "overridden": 2, "override_rate": 0.4}
    ]
    assert {
        "group": "severity=high",
        "allowed_judged": 5,
        "overridden": 2,
        "override_rate": 0.4,
    } in div["by_feature"]
    text = format_report({**report, "divergence": div})
    assert "link-optic" in text and "divergence" in text and "fidelity" in text


def test_stats_command_json_divergence_and_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    chart = tmp_path / "out" / "alignment.png"
    assert main(["stats", "--json", "--divergence", "--chart", str(chart)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"playbooks", "arms", "monitor", "retrains", "divergence"}
    assert chart.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_chart_with_data(engine: Engine, rego_engine: RegoPolicyEngine, tmp_path: Path) -> None:
    service = _service(engine, rego_engine, NPOConfig())
    _judge(service, "CRC errors on leaf-1", FeedbackKind.LIKE, 5, "c")
    write_chart(engine, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_fidelity_comes_with_its_base_rate_and_kappa(engine: Engine) -> None:
    """A monitor that always holds while M* asked for 1 retrain in 5 looks 80 % faithful;
    the report says so next to a κ of 0."""
    with Session(engine) as session:
        for ideal in ("retrain", "hold", "hold", "hold", "hold"):
            session.add(MonitorDecisionRow(action="hold", reason="r", ideal_action=ideal))
        session.add(MonitorDecisionRow(action="hold", reason="no M* yet", ideal_action=None))
        session.commit()
    mon = alignment_report(engine, NOW)["monitor"]
    assert (mon["ticks"], mon["fidelity"], mon["base_rate"], mon["kappa"]) == (6, 0.8, 0.2, 0.0)
    assert "base rate of retrain 0.20, Cohen's κ 0.00" in format_report(
        alignment_report(engine, NOW)
    )
