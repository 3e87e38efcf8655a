"""The playbook format: one test per validation error, and the bundled library."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.playbook import PlaybookError, Status, lint_folder, parse_playbook
from tests.conftest import PLAYBOOKS

VALID = """---
id: link-test
title: A test playbook
action: drain_link
applies_to:
  components: [link]
  fault_types: [flapping]
risk: medium
blast_radius: 1
status: vetted
authors: [alice]
reviewers: [bob]
reviewed_at: 2026-11-01
version: 2
---

## Symptoms
Flaps.

## Diagnosis
Counters.

## Steps
1. Drain.

## Rollback
Undrain.
"""


def _with(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


def test_a_valid_playbook_parses() -> None:
    pb = parse_playbook(VALID, "x.md")
    assert (pb.id, pb.meta.status, pb.meta.version) == ("link-test", Status.VETTED, 2)
    assert pb.section("steps") == "1. Drain."
    assert len(pb.content_hash) == 64


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (VALID.replace("---\n", "", 1), "front matter", "missing"),
        (_with("risk: medium", "risk: [medium"), "line 9", "invalid YAML"),
        ("---\n- just\n- a list\n---\n", "front matter", "mapping"),
        (_with("id: link-test", "id: Link Test!"), "id", "lowercase"),
        (_with("title: A test playbook\n", ""), "title", "Field required"),
        (_with("action: drain_link", "action: Drain Link"), "action", "pattern"),
        (_with("risk: medium", "risk: extreme"), "risk", "'low', 'medium' or 'high'"),
        (_with("blast_radius: 1", "blast_radius: -2"), "blast_radius", "greater than or equal"),
        (
            _with("status: vetted", "status: approved"),
            "status",
            "'draft', 'vetted' or 'deprecated'",
        ),
        (_with("authors: [alice]", "authors: []"), "authors", "at least 1"),
        (_with("reviewers: [bob]", "reviewers: [alice]"), "reviewers", "not an author"),
        (_with("reviewed_at: 2026-11-01\n", ""), "reviewed_at", "date of its review"),
        (_with("version: 2", "version: 2\nowner: carol"), "owner", "Extra inputs"),
        (_with("components: [link]", "components: link"), "applies_to.components", "list"),
        (_with("## Rollback\nUndrain.\n", ""), "body", "## Rollback"),
    ],
)
def test_each_error_names_the_file_and_field(text: str, field: str, message: str) -> None:
    with pytest.raises(PlaybookError) as info:
        parse_playbook(text, "playbooks/x.md")
    assert info.value.path == "playbooks/x.md"
    assert info.value.field == field
    assert message in info.value.message
    assert str(info.value).startswith(f"playbooks/x.md: {field}: ")


def test_drafts_need_no_reviewer_and_no_sections() -> None:
    text = _with("status: vetted", "status: draft").replace("reviewers: [bob]", "reviewers: []")
    text = text[: text.index("## Symptoms")]
    assert parse_playbook(text, "d.md").meta.status is Status.DRAFT


def test_lint_reports_every_bad_file_and_duplicate_ids(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(VALID)
    (tmp_path / "b.md").write_text(VALID)  # same id
    (tmp_path / "c.md").write_text(_with("risk: medium", "risk: extreme"))
    (tmp_path / "README.md").write_text("# not a playbook\n")
    report = lint_folder(tmp_path)
    assert [p.id for p in report.playbooks] == ["link-test"]
    assert sorted((Path(e.path).name, e.field) for e in report.errors) == [
        ("b.md", "id"),
        ("c.md", "risk"),
    ]
    assert not report.ok


def test_non_utf8_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_bytes(b"---\nid: \xff\xfe\n---\n")
    report = lint_folder(tmp_path)
    assert report.errors[0].field == "file"


def test_the_bundled_library_is_valid_and_vetted() -> None:
    report = lint_folder(PLAYBOOKS)
    assert report.ok, [str(e) for e in report.errors]
    vetted = [p for p in report.playbooks if p.meta.status is Status.VETTED]
    assert len(vetted) >= 30
    for pb in vetted:
        assert set(pb.meta.reviewers) - set(pb.meta.authors)
        assert all(pb.section(s) for s in ("symptoms", "diagnosis", "steps", "rollback")), pb.id


def test_every_bundled_action_is_known_to_the_policies(rego_engine: object) -> None:
    """A playbook's action must be classified (read-only or a change) by actions.rego."""
    from core.policy import Action
    from core.scenario import Scenario

    engine = rego_engine
    scenario = Scenario("link", "down", redundancy=0, maintenance_window=False, severity="low")
    for pb in lint_folder(PLAYBOOKS).playbooks:
        verdict = engine.evaluate(scenario, Action(pb.meta.action))  # type: ignore[attr-defined]
        read_only = pb.meta.action in {"collect_diagnostics", "escalate"}
        assert verdict.allowed == read_only, pb.id
