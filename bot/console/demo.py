"""A console walk-through of the NPO loop on a few scripted incidents.

The incidents, the retrieved candidates and the operator's reactions are scripted; the
scores, thresholds, policy verdicts, learning and retraining are the real core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bot.reporting.render import render_decision
from core.feedback import FeedbackKind
from core.npo import NPO, Match, NPOConfig
from core.policy import Action, SafetyPolicyEngine
from core.scenario import Scenario


@dataclass(frozen=True, slots=True)
class ScriptedIncident:
    scenario: Scenario
    matches: tuple[Match, ...]
    reactions: dict[str, FeedbackKind]  # playbook id → what the operator does if shown it


def _incidents() -> list[ScriptedIncident]:
    leaf = "leaf-12:eth1/3"
    crc = Scenario(
        component="link",
        fault_type="crc_errors",
        severity="high",
        redundancy=2,
        utilisation=0.4,
        maintenance_window=True,
        hour_of_day=2,
        device=leaf,
        text="CRC errors rising on leaf-12 eth1/3 towards spine-2",
    )
    bgp = Scenario(
        component="switch",
        fault_type="bgp_down",
        severity="critical",
        redundancy=0,
        utilisation=0.8,
        maintenance_window=False,
        hour_of_day=15,
        device="spine-2",
        text="BGP sessions to spine-2 down, traffic on one remaining path",
    )
    disk = Scenario(
        component="server",
        fault_type="disk_failure",
        severity="medium",
        redundancy=2,
        utilisation=0.3,
        maintenance_window=False,
        hour_of_day=11,
        device="db-7",
        text="SMART failure predicted on db-7 /dev/sdb",
    )
    return [
        ScriptedIncident(
            crc,
            (
                Match(
                    "link-optic",
                    "Replace a degraded optic",
                    Action("replace_optic", leaf, 1, "low"),
                    0.82,
                ),
                Match(
                    "link-drain",
                    "Drain a flapping or erroring link",
                    Action("drain_link", leaf, 1, "medium"),
                    0.74,
                ),
                Match(
                    "diagnostics",
                    "Collect diagnostics",
                    Action("collect_diagnostics", leaf, 0, "low"),
                    0.55,
                ),
            ),
            {"link-optic": FeedbackKind.LIKE, "link-drain": FeedbackKind.OVERRIDE},
        ),
        ScriptedIncident(
            bgp,
            (
                Match(
                    "switch-drain",
                    "Drain a switch",
                    Action("drain_device", "spine-2", 6, "high"),
                    0.77,
                ),
                Match(
                    "bgp-reset",
                    "Soft-reset BGP sessions",
                    Action("bgp_soft_reset", "spine-2", 2, "medium"),
                    0.71,
                ),
                Match(
                    "diagnostics",
                    "Collect diagnostics",
                    Action("collect_diagnostics", "spine-2", 0, "low"),
                    0.52,
                ),
            ),
            {"bgp-reset": FeedbackKind.LIKE, "diagnostics": FeedbackKind.NEUTRAL},
        ),
        ScriptedIncident(
            disk,
            (
                Match(
                    "server-disk",
                    "Replace a failing disk",
                    Action("replace_disk", "db-7", 1, "medium"),
                    0.8,
                ),
                Match(
                    "diagnostics",
                    "Collect diagnostics",
                    Action("collect_diagnostics", "db-7", 0, "low"),
                    0.6,
                ),
            ),
            {"diagnostics": FeedbackKind.LIKE},
        ),
    ]


def run_demo(
    spe: SafetyPolicyEngine,
    config: NPOConfig,
    seed: int,
    rounds: int = 3,
    echo: Callable[[str], None] = print,
) -> NPO:
    npo = NPO(spe, config, np.random.default_rng(seed))
    script = _incidents()
    for round_no in range(1, rounds + 1):
        echo(f"\n=========== round {round_no} of {rounds} ===========")
        for incident in script:
            decision = npo.decide(incident.scenario, incident.matches)
            echo(render_decision(decision))
            focus = decision.chosen or (decision.candidates[0] if decision.candidates else None)
            kind = FeedbackKind.SKIPPED
            target = None
            if focus is not None and focus.playbook_id in incident.reactions:
                target, kind = focus.playbook_id, incident.reactions[focus.playbook_id]
            loss = npo.feedback(decision, target, kind)
            line = f"   operator: {kind}"
            if target is not None:
                cand = next(c for c in decision.candidates if c.playbook_id == target)
                score = npo.scores.score((target, incident.scenario.context_key), cand.model_prior)
                line += f" on {target}; its score is now {score:.2f}"
            echo(f"{line} → loss {loss:.2f}")
        report = npo.tick()
        echo(f"\n   meta-monitor: {report.decision.action} — {report.decision.reason}")
        if report.retrain is not None:
            echo(
                f"   retrain: {'accepted' if report.retrain.accepted else 'rejected'} — "
                f"{report.retrain.reason}"
            )
    echo(
        "\nthreshold arms (posterior mean): "
        + ", ".join(
            f"τ={a:.1f}: {m:.2f}"
            for a, m in zip(npo.bandit.arms, npo.bandit.posterior_means(), strict=True)
        )
    )
    return npo
