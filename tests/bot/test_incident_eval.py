"""The incident evaluation counts what an operator sees, and its file errors name the line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from bot.reporting.incident_eval import IncidentFileError, load_incidents, run_passes
from bot.service import NPOService
from core.npo import NPOConfig, ThresholdMode
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _file(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "incidents.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "x", "playbook": null}\n{"id": "b"}\n')
    with pytest.raises(IncidentFileError, match=r"bad.jsonl:2: KeyError"):
        load_incidents(path, "all")
    with pytest.raises(IncidentFileError, match="no such file"):
        load_incidents(tmp_path / "missing.jsonl", "all")


def test_passes_count_right_wrong_and_learn_from_the_rounds(engine: Engine, tmp_path: Path) -> None:
    """The top candidate is wrong for "b" and right for "a"; "c" has no playbook. At τ 0.5
    the bot recommends optic to all three: one right, two wrong. After one round the
    overrides stop optic for b and c, and b gets the drain its colleague confirmed."""
    rows: list[dict[str, object]] = [
        # Different severities: different scenarios, so what one teaches stays there.
        {"id": "a", "text": "leaf-1 severity=low", "playbook": "optic", "split": "dev"},
        {"id": "b", "text": "leaf-2 severity=high", "playbook": "drain", "split": "dev"},
        {"id": "c", "text": "printer severity=critical", "playbook": None, "split": "dev"},
    ]
    incidents = load_incidents(_file(tmp_path, rows), "dev")
    hits = [FakeHit("optic", 0.9, "replace_optic"), FakeHit("drain", 0.55, "drain_link")]
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5)
    svc = NPOService(
        engine, FakeRetriever(hits), ScriptedSPE(), cfg, np.random.default_rng(0), lambda: NOW
    )
    first, second = run_passes(svc, incidents, 2, {"hour_of_day": 12})
    assert (first.right, first.wrong, first.incidents) == (1, 2, 3)
    assert (second.right, second.wrong) == (2, 1)  # c: drain now clears τ, and is wrong
