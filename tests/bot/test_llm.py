"""Optional LLM extraction and summaries with LangChain's own fake chat models."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeMessagesListChatModel,
)
from langchain_core.messages import AIMessage
from sqlalchemy.engine import Engine

from bot.extraction.llm import LLMAugmenter, template_summary
from bot.extraction.rules import Vocabulary
from bot.service import IncidentInput, NPOService
from core.npo import NPOConfig
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

VOCABULARY = Vocabulary.from_folders([Path(__file__).resolve().parents[2] / "playbooks"])


class ToolCallingFake(FakeMessagesListChatModel):
    """LangChain's list fake answers with the scripted tool calls; binding tools (what
    ``with_structured_output`` does) keeps the script."""

    delay: float = 0.0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return super()._generate(*args, **kwargs)


def _answer(**args: object) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": "IncidentClass", "args": dict(args), "id": "c1"}]
    )


def _augmenter(*answers: AIMessage, delay: float = 0.0, timeout: float = 5.0) -> LLMAugmenter:
    return LLMAugmenter(ToolCallingFake(responses=list(answers), delay=delay), VOCABULARY, timeout)


def test_structured_answers_inside_the_vocabulary_are_used() -> None:
    got = _augmenter(_answer(component="link", fault_type="link_flap")).classify("x")
    assert got == {"component": "link", "fault_type": "link_flap"}


def test_values_outside_the_vocabulary_are_dropped() -> None:
    assert _augmenter(_answer(component="pdu", fault_type="breaker_trip")).classify("x") == {}
    got = _augmenter(_answer(component="DROP TABLE", fault_type="disk_full")).classify("x")
    assert got == {"fault_type": "disk_full"}


def test_a_model_without_structured_output_falls_back() -> None:
    plain = LLMAugmenter(FakeListChatModel(responses=['{"component": "link"}']), VOCABULARY)
    assert plain.classify("x") == {}


def test_a_slow_model_is_ignored_after_its_timeout() -> None:
    slow = _augmenter(_answer(component="link", fault_type="link_flap"), delay=1.0, timeout=0.1)
    started = time.monotonic()
    assert slow.classify("x") == {}
    assert time.monotonic() - started < 0.8


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_llm_only_fills_what_extraction_left_unknown(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """It cannot set severity, redundancy or the window, and is not asked when the
    deterministic extractor found the class."""
    llm = _augmenter(_answer(component="server", fault_type="psu_failure", severity="low"))
    now = dt.datetime(2026, 11, 25, 14, tzinfo=dt.UTC)
    service = NPOService(
        engine,
        FakeRetriever([FakeHit("p", 0.1)]),
        rego_engine,
        NPOConfig(),
        np.random.default_rng(0),
        clock=lambda: now,
        classify=llm.classify,
        vocabulary=VOCABULARY,
    )
    rec = service.recommend(IncidentInput("zzz tripped in row 4, severity=critical", "console"))
    s = rec.decision.scenario
    assert (s.component, s.fault_type) == ("server", "psu_failure")
    assert (s.severity, s.redundancy, s.maintenance_window) == ("critical", None, None)
    assert s.source_of("fault_type") is not None and s.source_of("fault_type").source == "llm"  # type: ignore[union-attr]


def test_summary_falls_back_to_the_template(rego_engine: RegoPolicyEngine) -> None:
    from core.npo import NPO, Match
    from core.policy import Action
    from core.scenario import Scenario

    decision = NPO(rego_engine).decide(
        Scenario("link", "down", maintenance_window=True, redundancy=2),
        [Match("p", "Bounce the port", Action("shutdown_port"), 0.9)],
    )
    plain = FakeListChatModel(responses=["One calm sentence."])
    assert LLMAugmenter(plain).summarise(decision) == "One calm sentence."
    two = FakeListChatModel(responses=["two\nlines"])
    assert LLMAugmenter(two).summarise(decision) == template_summary(decision)
