"""Importing external runbooks and the retrieval evaluation command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.cli.commands import main
from retrieval.evaluate import PairsError, read_pairs
from retrieval.importer import import_runbooks
from retrieval.playbook import Status, lint_folder
from tests.conftest import CORPUS, PLAYBOOKS

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "runbooks").is_dir(),
    reason="the shared runbooks-v1 corpus is not beside the checkout",
)


@needs_corpus
def test_import_keeps_source_and_licence_and_makes_drafts(tmp_path: Path) -> None:
    source = CORPUS / "runbooks" / "cnpg"
    dest = tmp_path / "imported"
    report = import_runbooks(source, dest)
    assert len(report.written) == len(list(source.glob("*.md"))) > 10
    lint = lint_folder(dest)
    assert lint.ok
    pb = next(p for p in lint.playbooks if p.id == "ext-cnpgclusterhacritical")
    assert pb.meta.status is Status.DRAFT
    assert pb.meta.license == "Apache-2.0"
    assert pb.meta.source is not None
    assert pb.meta.source.startswith("cloudnative-pg/charts@")
    assert "CNPGClusterHACritical" in pb.body
    again = import_runbooks(source, dest)
    assert (again.written, again.unchanged) == ([], len(report.written))


def test_import_as_vetted_needs_a_reviewer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "DiskFull.md").write_text("# DiskFull\n\nFree space.\n")
    code = main(
        ["playbooks", "import", str(src), "--dest", str(tmp_path / "out"), "--status", "vetted"]
    )
    assert code == 2
    assert "--reviewer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="body: missing section"):
        import_runbooks(src, tmp_path / "out", Status.VETTED, reviewers=["bob"])
    assert not (tmp_path / "out").exists()  # nothing written when one file fails
    code = main(
        ["playbooks", "import", str(src), "--dest", str(tmp_path / "out"), "--license", "MIT"]
    )
    assert code == 0
    written = lint_folder(tmp_path / "out").playbooks
    assert [(p.id, p.meta.license, p.meta.source) for p in written] == [
        ("ext-diskfull", "MIT", "DiskFull.md")
    ]


def test_playbooks_lint_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbooks", "lint", str(PLAYBOOKS)]) == 0
    assert "34 valid (34 vetted), 0 invalid" in capsys.readouterr().out
    bad = tmp_path / "pb"
    shutil.copytree(PLAYBOOKS / "services", bad)
    (bad / "oops.md").write_text("---\nid: oops\ntitle: Oops\n---\n")
    assert main(["playbooks", "lint", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "oops.md: action: Field required" in captured.err
    assert "1 invalid" in captured.out


PAIRS = [
    {
        "query": "leaf-12 eth1/3 CRC errors keep going up",
        "runbook": "network/link-crc-errors-replace-optic.md",
    },
    {
        "query": "bgp neighbour on spine-2 stuck in Active",
        "runbook": "network/bgp-session-down-soft-reset.md",
    },
    {
        "query": "/var/log filled the disk on web-3",
        "runbook": "server/disk-full-cleanup.md",
        "extra": 1,
    },
    {
        "query": "cert on the api gateway expires friday",
        "runbook": "x.md",
        "relevant": ["services/certificate-expiry-renew.md"],
    },
    {"id": "na-1", "query": "kafka topic payments has under-replicated partitions", "relevant": []},
]


def test_eval_retrieval_prints_exactly_the_documented_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    corpus = tmp_path / "corpus"
    shutil.copytree(PLAYBOOKS, corpus, ignore=shutil.ignore_patterns("policies"))
    code = main(["eval", "retrieval", "--corpus", str(corpus), "--pairs", str(pairs), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["queries", "methods", "no_answer", "answerable_at_threshold", "timing"]
    assert doc["queries"] == 4  # the no-answer line is scored apart
    assert doc["no_answer"]["queries"] == 1
    assert doc["no_answer"]["confidently_wrong"] in (0.0, 1.0)
    assert len(doc["no_answer"]["examples"]) == doc["no_answer"]["confidently_wrong"]
    assert list(doc["methods"]) == ["hybrid", "dense", "bm25"]
    for metrics in doc["methods"].values():
        assert list(metrics) == ["recall@1", "recall@3", "recall@5", "mrr"]
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert doc["methods"]["hybrid"]["recall@3"] == 1.0
    assert set(doc["timing"]) == {"index_s", "query_ms_p50", "dense_query_ms_p50"}

    code = main(["eval", "retrieval", "--corpus", str(corpus), "--pairs", str(pairs), "--misses"])
    table = capsys.readouterr().out
    assert code == 0
    assert "recall@1" in table
    assert "hybrid" in table
    assert "bm25" in table
    assert "no-answer queries: 1;" in table
    assert "hybrid misses at rank 1" in table


def test_read_pairs_keeps_no_answer_lines_and_filters_by_split(tmp_path: Path) -> None:
    pairs = tmp_path / "q.jsonl"
    rows = [
        {"id": "a", "query": "x", "relevant": ["a.md"], "split": "dev"},
        {"id": "b", "query": "y", "relevant": [], "split": "dev"},
        {"id": "c", "query": "z", "relevant": ["c.md"], "split": "test"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dev = read_pairs(pairs, "dev")
    assert [(p.id, sorted(p.relevant)) for p in dev] == [("a", ["a.md"]), ("b", [])]
    assert [p.id for p in read_pairs(pairs)] == ["a", "b", "c"]
    with pytest.raises(PairsError, match="no pairs in split 'other'"):
        read_pairs(pairs, "other")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "pairs.jsonl:2: not JSON"),
        ('{"runbook": "a.md"}', "pairs.jsonl:2: needs a string field 'query'"),
        ('{"query": "x"}', "pairs.jsonl:2: needs 'runbook'"),
        ('{"query": "x", "relevant": "a.md"}', "pairs.jsonl:2: 'relevant' must be a list"),
    ],
)
def test_bad_pairs_lines_are_reported_with_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(PAIRS[0]) + "\n" + line + "\n")
    with pytest.raises(PairsError, match=message):
        read_pairs(pairs)


def test_eval_rejects_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["eval", "retrieval", "--corpus", str(tmp_path / "no"), "--pairs", str(tmp_path / "p")]
    )
    assert code == 2
    assert "folder not found" in capsys.readouterr().err
    code = main(["eval", "retrieval", "--corpus", str(tmp_path), "--pairs", str(tmp_path / "p")])
    assert code == 2
    assert "No such file" in capsys.readouterr().err


def test_ingest_and_search_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path / "var"))
    folder = tmp_path / "pb"
    shutil.copytree(PLAYBOOKS / "network", folder)
    assert main(["playbooks", "ingest", str(folder)]) == 0
    assert "16 added, 0 updated, 0 removed, 0 unchanged" in capsys.readouterr().out
    assert main(["playbooks", "ingest", str(folder)]) == 0
    assert (
        "0 added, 0 updated, 0 removed, 16 unchanged (0 chunks written" in capsys.readouterr().out
    )
    assert (tmp_path / "var" / "chroma").is_dir()
    calibration = tmp_path / "var" / "retrieval-calibration.json"
    fitted = calibration.read_text()  # fitted at the first ingest, for these 16 playbooks
    assert main(["playbooks", "ingest", str(folder)]) == 0
    assert calibration.read_text() == fitted  # unchanged playbooks: no refit
    capsys.readouterr()
    assert (
        main(["search", "optic RX power is low on spine-1 Ethernet4/1", "--json", "--k", "2"]) == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["playbook"] == "optic-low-rx-power"
    (folder / "bad.md").write_text("no front matter\n")
    assert main(["playbooks", "ingest", str(folder)]) == 1
    assert "bad.md: front matter: missing" in capsys.readouterr().err
