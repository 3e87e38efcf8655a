"""The ``npo`` command, driven through its real entry point."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from bot.cli.commands import main
from core.simulator import VARIANTS
from tests.conftest import POLICIES


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "simulate",
        "--episodes",
        "40",
        "--seeds",
        "2",
        "--operator",
        "gap",
        "--json",
        "--workers",
        "1",
    )
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"episodes", "seeds", "operator", "variants"}
    assert (doc["episodes"], doc["seeds"], doc["operator"]) == (40, 2, "gap")
    assert list(doc["variants"]) == list(VARIANTS)
    assert {"always_abstain", "fixed_0.5", "fixed_0.9", "paper_rule"} <= set(doc["variants"])
    for row in doc["variants"].values():
        assert {
            "utility",
            "utility_ci",
            "help_rate",
            "override_rate",
            "retrains",
            "meta_fidelity",
            "meta_base_rate",
            "meta_kappa",
        } <= set(row)
        low, high = row["utility_ci"]
        assert low <= row["utility"] <= high


def test_simulate_writes_csv_summary_and_plots(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "sim"
    code, out, _ = _run(
        capsys,
        "simulate",
        "--episodes",
        "40",
        "--seeds",
        "2",
        "--variants",
        "full,static",
        "--tick-every",
        "10",
        "--out",
        str(out_dir),
        "--workers",
        "2",
    )
    assert code == 0
    assert "episodes/s" in out and "operator outcome" in out
    files = {p.name for p in out_dir.iterdir()}
    assert files == {
        "episodes.csv",
        "ticks.csv",
        "summary.json",
        "utility.png",
        "help_rate.png",
        "loss.png",
        "threshold.png",
        "meta_kappa.png",
    }
    rows = (out_dir / "episodes.csv").read_text().splitlines()
    assert rows[0] == "variant,seed,episode,utility,helped,overridden,loss,threshold"
    assert len(rows) == 1 + 2 * 2 * 40
    ticks = (out_dir / "ticks.csv").read_text().splitlines()
    assert ticks[0] == "variant,seed,episode,ideal,action,rule,learned"
    assert len(ticks) == 1 + 2 * 2 * 4
    assert (out_dir / "meta_kappa.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_simulate_with_the_rego_policies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "simulate",
        "--episodes",
        "20",
        "--seeds",
        "1",
        "--variants",
        "full",
        "--policies",
        str(POLICIES),
        "--json",
        "--workers",
        "1",
    )
    assert code == 0
    assert "full" in json.loads(out)["variants"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variants", "full,best"], "unknown best"),
        (["--episodes", "3"], "episodes"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_simulate_rejects_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, "simulate", *argv)
    assert code == 2
    assert message in err


def test_simulate_rejects_an_unknown_operator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--operator", "lenient"])
    assert exc.value.code == 2
    assert "outcome" in capsys.readouterr().err


def test_policies_check_reports_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "policies"
    shutil.copytree(POLICIES, good)
    code, out, _ = _run(capsys, "policies", "check", str(good))
    assert code == 0
    assert "4 policies load cleanly" in out
    (good / "zz_bad.rego").write_text("package npo.policies.bad\n\ndeny contains x if {\n")
    code, _, err = _run(capsys, "policies", "check", str(good))
    assert code == 1
    assert "zz_bad.rego:" in err


def test_policies_check_on_a_missing_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "policies", "check", str(tmp_path / "nope"))
    assert code == 1
    assert "policy folder not found" in err


def test_demo_walks_through_the_loop(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "demo", "--rounds", "2")
    assert code == 0
    assert out.count("── incident:") == 6
    assert "meta-monitor:" in out
    assert "threshold arms" in out
    assert "SPE deny" in out  # the BGP incident's drain is refused by min_redundancy


def test_run_without_slack_starts_the_console_adapter(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("help\nquit\n"))
    code, out, err = _run(capsys, "run")
    assert code == 0
    assert "console adapter" in err
    assert "like" in out and "override <reason>" in out  # the help text


def test_run_with_a_slack_token_needs_the_signing_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    code, _, err = _run(capsys, "run")
    assert code == 2 and "SLACK_SIGNING_SECRET" in err


def test_invalid_configuration_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPO_PRIOR_STRENGTH", "fast")
    code, _, err = _run(capsys, "demo")
    assert code == 2
    assert "prior_strength" in err


def test_pausing_an_unknown_playbook_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    code, _, err = _run(capsys, "playbook", "pause", "no-such-playbook")
    assert code == 1
    assert "no playbook 'no-such-playbook'" in err
    code, out, _ = _run(capsys, "playbook", "pause", "link-flap-drain", "--actor", "ops")
    assert (code, out.strip()) == (0, "link-flap-drain paused")


def test_changed_arms_are_refused_at_start_unless_migrated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import Settings
    from bot.wiring import check_arms, database_url, migrated_engine

    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    first = Settings()
    engine = migrated_engine(first)
    from bot.db.state import load_bandit

    with engine.begin() as conn:
        load_bandit(conn, first.npo_config().bandit)  # the arms a first vote stores
    engine.dispose()
    monkeypatch.setenv("NPO_ARMS", "0.6,0.7,0.8")
    changed = Settings()
    with pytest.raises(ValueError, match="NPO_ARMS_MIGRATION=map"):
        check_arms(changed, database_url(changed))
    monkeypatch.setenv("NPO_ARMS_MIGRATION", "map")
    check_arms(Settings(), database_url(changed))  # migrated and audited
    check_arms(changed, database_url(changed))  # now they match: nothing to do
