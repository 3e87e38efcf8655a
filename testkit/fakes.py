"""Small fakes we own (instead of mocks of our own code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.service import NPOService
from bot.service.unit_of_work import utcnow
from core.npo import NPOConfig
from core.policy import Action, PolicyVerdict, RuleHit, Verdict
from core.scenario import Scenario


class ScriptedSPE:
    """Returns a fixed verdict per action name; allows anything else. Counts calls."""

    def __init__(self, verdicts: dict[str, Verdict] | None = None) -> None:
        self.verdicts = verdicts or {}
        self.calls = 0

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        self.calls += 1
        verdict = self.verdicts.get(action.name, Verdict.ALLOW)
        if verdict is Verdict.ALLOW:
            return PolicyVerdict(Verdict.ALLOW, (), ("scripted",))
        return PolicyVerdict(
            verdict, (RuleHit("scripted", verdict, f"{action.name} scripted"),), ("scripted",)
        )


class FakeHit:
    def __init__(self, doc_id: str, similarity: float, action: str = "drain_link", **meta: object):
        self.doc_id = doc_id
        self.title = doc_id.replace("-", " ").title()
        self.similarity = similarity
        self.metadata: dict[str, object] = {
            "action": action,
            "risk": "low",
            "blast_radius": 1,
            "status": "vetted",
            **meta,
        }


class FakeRetriever:
    """Returns the same ranked hits for every query; records the queries."""

    def __init__(self, hits: list[FakeHit]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    def search(self, query: str, k: int = 5) -> list[FakeHit]:
        self.queries.append(query)
        return self.hits[:k]


def row_counts(engine: Engine) -> dict[str, int]:
    """Every table's row count: "nothing changed" is this, before and after."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in SQLModel.metadata.sorted_tables
        }


def scripted_service(
    engine: Engine,
    hit: FakeHit,
    clock: Callable[[], dt.datetime] = utcnow,
) -> NPOService:
    """The real service over ``engine`` with one scripted hit and an SPE that allows it:
    for benchmarks and tests of storage, where retrieval and policy are not the subject."""
    rng = np.random.default_rng(0)
    return NPOService(engine, FakeRetriever([hit]), ScriptedSPE(), NPOConfig(), rng, clock=clock)
