"""Malformed playbook files never crash lint or ingest, always name the file, and change
nothing in the store."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.playbook import PlaybookError, lint_folder, parse_playbook

GOOD = (
    Path(__file__).resolve().parents[2] / "playbooks" / "network" / "link-flap-drain.md"
).read_text()

front_matter_values = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.lists(st.text(max_size=8), max_size=3),
    st.none(),
)
fields = st.sampled_from(
    [
        "id",
        "title",
        "action",
        "risk",
        "blast_radius",
        "status",
        "authors",
        "reviewers",
        "reviewed_at",
        "version",
        "applies_to",
        "parameters",
        "preconditions",
        "surprise",
    ]
)


def _mutate(field: str, value: object) -> str:
    lines = GOOD.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"{field}:"):
            lines[i] = f"{field}: {value!r}"
            return "\n".join(lines)
    return GOOD.replace("---\n", f"---\n{field}: {value!r}\n", 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=400),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.tuples(fields, front_matter_values).map(lambda fv: _mutate(*fv)),
    )
)
def test_parse_either_succeeds_or_names_a_field(text: str) -> None:
    error: PlaybookError | None = None
    try:
        parse_playbook(text, "fuzz.md")
    except PlaybookError as exc:
        error = exc
    if error is not None:
        assert error.path == "fuzz.md"
        assert error.field and error.message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_lint_reports_bad_bytes_without_crashing(data: bytes) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "ok.md").write_text(GOOD)
        (folder / "bad.md").write_bytes(data)
        report = lint_folder(folder)
        assert [p.id for p in report.playbooks] == ["link-flap-drain"]
        assert all(Path(e.path).name in {"bad.md", "ok.md"} for e in report.errors)
    finally:
        shutil.rmtree(folder)
