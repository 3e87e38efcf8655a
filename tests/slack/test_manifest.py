"""The app manifest asks for what the listeners use, and no more."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_matches_the_listeners() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "reaction_added", "reaction_removed", "message.channels"} <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "reactions:read"} <= scopes
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/npo"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_grafana_dashboard_queries_metrics_we_export() -> None:
    import json

    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in (
        "npo_alignment_loss",
        "npo_override_rate",
        "npo_decisions",
        "npo_feedback",
        "npo_spe_verdicts",
        "npo_retrains",
        "npo_http_request_seconds",
    ):
        assert name in exprs, name
