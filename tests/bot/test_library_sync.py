"""Two replicas on one database, each with its own submissions folder: a playbook approved
on one reaches the other at its next library sync, exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.engine import make_engine, transaction
from bot.db.models import PlaybookSubmission
from bot.governance.library_sync import LibrarySync
from bot.governance.submissions import Decision, Draft, Governance
from retrieval.playbook import Status, lint_folder

NOW = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)

DRAFT = Draft(
    id="pdu-breaker-trip",
    title="PDU breaker tripped: move load and reset",
    action="reset_breaker",
    risk="medium",
    blast_radius=2,
    symptoms="Rack loses one power feed.",
    diagnosis="Check the PDU's breaker state.",
    steps="1. Confirm the servers run on the other feed.\n2. Reset the breaker.",
    rollback="Open the breaker again.",
    components=["power", "pdu"],
    fault_types=["breaker_trip"],
)


@dataclass
class Replica:
    """What one process holds: its own engine, folder, governance and sync."""

    engine: Engine
    folder: Path
    reloads: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sync = LibrarySync(self.engine, self.folder, lambda: self.reloads.append(1))
        self.governance = Governance(self.engine, self.folder, set(), self.sync.run, lambda: NOW)

    def file(self, playbook_id: str) -> bytes:
        return (self.folder / f"{playbook_id}.md").read_bytes()


@pytest.fixture
def replicas(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    other = make_engine(db_url)
    yield Replica(engine, tmp_path / "a"), Replica(other, tmp_path / "b")
    other.dispose()


def _approve(replica: Replica) -> str:
    sub = replica.governance.submit(DRAFT, "U1")
    assert replica.governance.decide(sub.id, "U2", approve=True) is Decision.APPROVED
    return sub.id


def test_an_approval_reaches_the_other_replica_once(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    sub_id = _approve(a)
    stored = a.governance.get(sub_id)
    assert stored is not None and "status: vetted" in stored.text  # the row is the truth
    assert a.reloads == [1]  # the approving replica synced right away
    assert b.reloads == [] and not b.folder.exists()

    assert b.sync.run() == [DRAFT.id]
    assert b.file(DRAFT.id) == a.file(DRAFT.id) == stored.text.encode()
    [pb] = lint_folder(b.folder).playbooks
    assert (pb.id, pb.meta.status, pb.meta.reviewers) == (DRAFT.id, Status.VETTED, ["U2"])
    assert b.reloads == [1]

    assert b.sync.run() == [] and a.sync.run() == []  # nothing changed: no reload
    assert (a.reloads, b.reloads) == ([1], [1])
    assert sorted(p.name for p in b.folder.iterdir()) == [f"{DRAFT.id}.md"]  # no temp left


def test_a_changed_approved_text_is_rewritten(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    sub_id = _approve(a)
    b.sync.run()
    with transaction(a.engine) as session:
        sub = session.get(PlaybookSubmission, sub_id)
        assert sub is not None
        sub.text = sub.text.replace("Reset the breaker.", "Reset the breaker once.")
        session.add(sub)
    assert b.sync.run() == [DRAFT.id]
    assert b"Reset the breaker once." in b.file(DRAFT.id)
    assert b.reloads == [1, 1]
    assert a.sync.run() == [DRAFT.id] and a.file(DRAFT.id) == b.file(DRAFT.id)


def test_an_invalid_row_never_reaches_the_folder(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    with transaction(a.engine) as session:
        session.add(
            PlaybookSubmission(
                playbook_id="broken", author="U1", text="no front matter", status="approved"
            )
        )
    assert b.sync.run() == [] and b.reloads == []
    assert not (b.folder / "broken.md").exists()


def test_an_id_approved_elsewhere_cannot_be_submitted_again(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    _approve(a)  # b's folder has not synced yet: the database still knows
    with pytest.raises(ValueError, match="exists"):
        b.governance.submit(DRAFT, "U3")
    with Session(b.engine) as session:
        assert len(session.exec(select(PlaybookSubmission)).all()) == 1


def test_every_replica_schedules_the_sync_every_30_seconds(
    replicas: tuple[Replica, Replica],
) -> None:
    import numpy as np

    from bot.monitoring.scheduler import build_scheduler
    from bot.monitoring.ticker import MonitorTicker
    from bot.service import NPOService
    from core.npo import NPOConfig
    from tests.fakes import FakeRetriever, ScriptedSPE

    a, _ = replicas
    service = NPOService(
        a.engine, FakeRetriever([]), ScriptedSPE(), NPOConfig(), np.random.default_rng(0)
    )
    ticker = MonitorTicker(a.engine, NPOConfig(), lambda: NOW, dt.timedelta(minutes=15))
    scheduler = build_scheduler(
        ticker, service, lambda: NOW, dt.timedelta(days=1), library_sync=a.sync.run
    )
    job = scheduler.get_job("library_sync")
    assert job is not None and job.func == a.sync.run
    assert job.trigger.interval == dt.timedelta(seconds=30)
