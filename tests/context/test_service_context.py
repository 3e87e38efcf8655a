"""Context that says a drain is safe lets the policies allow it; without it, they ask."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from bot.context.facts import IncidentRef, Observed
from bot.context.gather import ContextGatherer
from bot.context.labels import LabelsProvider
from bot.extraction.rules import Vocabulary
from bot.service import IncidentInput, NPOService
from core.decision import Outcome
from core.npo import NPOConfig, ThresholdMode
from core.policy import Verdict
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

NOW = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)
VOCABULARY = Vocabulary.from_folders([Path(__file__).resolve().parents[2] / "playbooks"])


class _Topology:
    """Stands in for Prometheus: redundancy 2 for leaf-07, seen 40 s ago."""

    name = "prometheus"

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        if incident.device != "leaf-07" or incident.component != "link":
            return {}
        return {"redundancy": Observed(2, "prometheus", incident.now - dt.timedelta(seconds=40))}


class _Window:
    name = "calendar"

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        return {"maintenance_window": Observed(True, "calendar", incident.now)}


def _service(engine: Engine, spe: RegoPolicyEngine, context: ContextGatherer | None) -> NPOService:
    return NPOService(
        engine,
        FakeRetriever([FakeHit("link-flap-drain", 0.9, "drain_link")]),
        spe,
        NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5),
        np.random.default_rng(0),
        clock=lambda: NOW,
        vocabulary=VOCABULARY,
        context=context,
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_free_text_without_context_asks_instead_of_guessing(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    rec = _service(engine, rego_engine, None).recommend(
        IncidentInput("leaf-07 xe-1/0/3 flapping", "console")
    )
    d = rec.decision
    assert d.scenario.redundancy is None and d.scenario.maintenance_window is None
    assert d.explanation.compliance.verdict is Verdict.NEEDS_APPROVAL
    assert "redundancy unknown" in d.explanation.compliance.summary
    facts = {f.label: f.value for f in d.explanation.facts}
    assert facts["redundancy"] == "unknown" and facts["maintenance window"] == "unknown"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_key_value_context_reaches_allow(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    text = "leaf-07 xe-1/0/3 flapping redundancy=2 maintenance_window=yes"
    d = _service(engine, rego_engine, None).recommend(IncidentInput(text, "console")).decision
    assert d.outcome is Outcome.RECOMMEND
    assert d.chosen is not None and d.chosen.action.name == "drain_link"
    facts = {f.label: f.value for f in d.explanation.facts}
    assert facts["redundancy"] == "2 — message"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_prometheus_and_calendar_context_reach_allow_with_sources(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    context = ContextGatherer([LabelsProvider(), _Topology(), _Window()])
    rec = _service(engine, rego_engine, context).recommend(
        IncidentInput("leaf-07 xe-1/0/3 flapping", "console")
    )
    d = rec.decision
    assert d.outcome is Outcome.RECOMMEND
    facts = {f.label: f.value for f in d.explanation.facts}
    assert facts["redundancy"] == "2 — prometheus, 40 s ago"
    assert facts["maintenance window"] == "yes — calendar, 0 s ago"
    # The stored decision keeps the provenance.
    again = _service(engine, rego_engine, context).recommend(
        IncidentInput("leaf-07 xe-1/0/3 flapping", "console")
    )
    assert again.decision.scenario.source_of("redundancy") is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_alert_labels_are_facts(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    incident = IncidentInput(
        "[FIRING] LinkFlapping: leaf-07 xe-1/0/3",
        "alertmanager",
        hints={"redundancy": 2, "severity": "critical", "device": "leaf-07"},
    )
    d = _service(engine, rego_engine, None).recommend(incident).decision
    assert d.scenario.redundancy == 2 and d.scenario.severity == "critical"
    assert d.scenario.source_of("redundancy") is not None
    assert d.scenario.source_of("redundancy").source == "alert label"  # type: ignore[union-attr]
    assert d.outcome is Outcome.RECOMMEND  # critical: the window does not hold a drain
