"""Optional LLM augmentation with a fake chat model from langchain-core."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from sqlalchemy.engine import Engine

from bot.llm import LLMAugmenter, template_summary
from bot.service import IncidentInput, NPOService
from core.npo import NPOConfig
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever


def _augmenter(*responses: str) -> LLMAugmenter:
    return LLMAugmenter(FakeListChatModel(responses=list(responses)))


def test_classification_is_validated() -> None:
    assert _augmenter('Sure! {"component": "pdu", "fault_type": "breaker_trip"}').classify("x") == {
        "component": "pdu",
        "fault_type": "breaker_trip",
    }
    assert _augmenter('{"component": "DROP TABLE", "fault_type": "x"}').classify("x") == {}
    assert _augmenter("no json here").classify("x") == {}
    assert _augmenter('{"component": "pdu"}').classify("x") == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_llm_can_only_fill_the_incident_class(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """Asked for more, it still cannot set severity, redundancy or the window."""
    answer = (
        '{"component": "pdu", "fault_type": "breaker_trip", "severity": "low", "redundancy": 9}'
    )
    llm = _augmenter(answer)
    now = dt.datetime(2026, 11, 25, 14, tzinfo=dt.UTC)
    service = NPOService(
        engine,
        FakeRetriever([FakeHit("p", 0.9)]),
        rego_engine,
        NPOConfig(),
        np.random.default_rng(0),
        clock=lambda: now,
        classify=llm.classify,
    )
    rec = service.recommend(IncidentInput("zzz tripped in row 4, severity=critical", "console"))
    s = rec.decision.scenario
    assert (s.component, s.fault_type) == ("pdu", "breaker_trip")
    assert (s.severity, s.redundancy) == ("critical", 1)


def test_summary_falls_back_to_the_template(rego_engine: RegoPolicyEngine) -> None:
    from core.npo import NPO, Match
    from core.policy import Action
    from core.scenario import Scenario

    decision = NPO(rego_engine).decide(
        Scenario("link", "down", maintenance_window=True, redundancy=2),
        [Match("p", "Bounce the port", Action("shutdown_port"), 0.9)],
    )
    assert _augmenter("One calm sentence.").summarise(decision) == "One calm sentence."
    assert _augmenter("two\nlines").summarise(decision) == template_summary(decision)
