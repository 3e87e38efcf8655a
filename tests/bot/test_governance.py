"""Pausing and resuming playbooks by hand, and exporting the audit log."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bot.cli.commands import main


def test_pause_resume_and_audit_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    assert (
        main(["playbook", "pause", "link-flap-drain", "--actor", "U1", "--reason", "bad week"]) == 0
    )
    assert capsys.readouterr().out.strip() == "link-flap-drain paused"
    assert main(["playbook", "pause", "link-flap-drain"]) == 0
    assert "already paused" in capsys.readouterr().out
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["playbooks"] == []  # no decisions yet
    assert main(["playbook", "resume", "link-flap-drain", "--actor", "U2"]) == 0
    capsys.readouterr()

    assert main(["audit", "export", "--since", "2000-01-01"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["actor"], e["action"], e["subject"]) for e in lines] == [
        ("U1", "playbook:pause", "link-flap-drain"),
        ("U2", "playbook:resume", "link-flap-drain"),
    ]
    assert lines[0]["detail"] == {"reason": "bad week"}
    assert "2 audit entries" in err

    assert main(["audit", "export", "--format", "csv", "--since", "2000-01-01"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["action"] for r in rows] == ["playbook:pause", "playbook:resume"]
    assert main(["audit", "export", "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "export", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err
