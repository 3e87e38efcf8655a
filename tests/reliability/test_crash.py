"""kill -9 in the middle of a feedback burst: every acknowledged feedback survives, and
re-sending the whole burst after the restart doubles nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlmodel import Session, func, select

from bot.db.engine import make_engine
from bot.db.models import Feedback

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from bot.db.engine import make_engine
    from bot.db.migrate import upgrade
    from bot.service import FeedbackInput, IncidentInput, NPOService
    from core.feedback import FeedbackKind
    from core.npo import NPOConfig
    from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

    url, events = sys.argv[1], int(sys.argv[2])
    upgrade(url)
    service = NPOService(make_engine(url), FakeRetriever([FakeHit("pb", 0.8)]), ScriptedSPE(),
                         NPOConfig(), np.random.default_rng(0))
    recs = [service.recommend(IncidentInput(f"link {i}", "crash", source_event_id=f"inc-{i}"))
            .recommendation_id for i in range(events)]
    for i, rec in enumerate(recs):
        service.record_feedback(FeedbackInput(rec, f"U{i}", FeedbackKind.LIKE, f"fb-{i}"))
        print(f"ack fb-{i}", flush=True)  # printed only after the commit
    """
)


def _run(url: str, events: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(events)], stdout=subprocess.PIPE, text=True, env=env
    )


def test_kill_9_loses_no_acknowledged_feedback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    events = 400
    proc = _run(url, events)
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(acked) < 60 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ack "):
            acked.append(line.split()[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(acked) >= 60

    engine = make_engine(url)
    with Session(engine) as s:
        stored = set(s.exec(select(Feedback.source_event_id)).all())
    assert set(acked) <= stored  # nothing acknowledged was lost

    rerun = _run(url, events)  # a restart re-sends the whole burst
    assert rerun.wait(timeout=300) == 0
    with Session(engine) as s:
        assert int(s.exec(select(func.count()).select_from(Feedback)).one()) == events
    engine.dispose()
