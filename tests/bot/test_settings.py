from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from core.npo import ThresholdMode


def test_defaults_build_a_valid_core_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    config = Settings().npo_config()
    assert config.bandit.arms == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert config.scoring.prior_strength == 0.5
    assert config.skip_loss == 0.1
    assert config.utility.override_cost == 3.0
    assert config.bandit.start == pytest.approx(3.0 / 4.5)  # τ* = C/(1 + C + M)


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("NPO_PRIOR_STRENGTH=2\nNPO_OVERRIDE_COST=4\nNPO_ARMS=0.6,0.8\n")
    monkeypatch.setenv("NPO_THRESHOLD_MODE", "fixed")
    monkeypatch.setenv("NPO_FIXED_THRESHOLD", "0.8")
    monkeypatch.setenv("NPO_COUNTERFACTUAL", "true")
    settings = Settings()
    config = settings.npo_config()
    assert config.scoring.prior_strength == 2.0
    assert config.utility.override_cost == 4.0
    assert config.bandit.arms == (0.6, 0.8)
    assert config.bandit.counterfactual
    assert config.threshold_mode is ThresholdMode.FIXED
    assert config.fixed_threshold == 0.8


def test_inconsistent_settings_fail_with_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NPO_FIXED_THRESHOLD", "0.75")
    with pytest.raises(ValueError, match="fixed_threshold"):
        Settings().npo_config()
