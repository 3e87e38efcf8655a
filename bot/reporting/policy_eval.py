"""``npo eval policy``: what each fixed threshold and the live bandit would have earned,
estimated off-policy from the decision log, in operator terms: the utility of each decision
(``core.utility``: +1 a liked recommendation, −C an overridden one, −M an abstention whose
candidate the operator confirmed, 0 unanswered), with ``always_abstain`` beside them. A
reward of 1 − loss would let silence win: an unanswered abstention earned 0.9."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import BanditArm, Feedback, Recommendation
from bot.settings import Settings
from core.feedback import FeedbackKind
from core.ope import Estimate, LoggedDecision, evaluate_policy, thompson_propensities
from core.utility import UtilityConfig, utility


def _judgments(engine: Engine) -> dict[str, tuple[int, float, list[tuple[bool, FeedbackKind]]]]:
    """Per decision: its arm, propensity and live judgments (surfaced?, kind)."""
    with Session(engine) as session:
        rows = session.execute(
            sa.select(
                col(Recommendation.id),
                col(Recommendation.arm_index),
                col(Recommendation.propensity),
                col(Recommendation.outcome),
                col(Recommendation.playbook_id),
                col(Feedback.playbook_id),
                col(Feedback.kind),
            )
            .join(Feedback, col(Feedback.recommendation_id) == col(Recommendation.id))
            .where(col(Feedback.withdrawn).is_(False))
        ).all()
    per_decision: dict[str, tuple[int, float, list[tuple[bool, FeedbackKind]]]] = {}
    for rec_id, arm, propensity, outcome, chosen, judged, kind in rows:
        surfaced = outcome == "recommend" and judged == chosen
        per_decision.setdefault(rec_id, (arm, propensity, []))[2].append(
            (surfaced, FeedbackKind(kind))
        )
    return per_decision


def logged_decisions(engine: Engine, config: UtilityConfig | None = None) -> list[LoggedDecision]:
    """Each judged decision with its utility (the mean over its operators' live votes)."""
    cfg = config or UtilityConfig()
    return [
        LoggedDecision(arm, propensity, float(np.mean([utility(s, k, cfg) for s, k in votes])))
        for arm, propensity, votes in _judgments(engine).values()
    ]


def _always_abstain(engine: Engine, config: UtilityConfig) -> Estimate:
    """What never recommending would have earned on the logged incidents, assuming the
    operator would have confirmed from the candidate list every playbook they liked (the
    cost of silence at its fullest: −M per such incident, 0 otherwise)."""
    terms = np.array(
        [
            -config.miss_cost if any(k is FeedbackKind.LIKE for _, k in votes) else 0.0
            for _, _, votes in _judgments(engine).values()
        ]
    )
    mean = float(terms.mean()) if terms.size else 0.0
    half = 1.96 * float(terms.std(ddof=1)) / np.sqrt(terms.size) if terms.size > 1 else 0.0
    return Estimate(mean, mean - half, mean + half)


def policy_report(
    engine: Engine,
    rng: np.random.Generator,
    clip: float = 50.0,
    config: UtilityConfig | None = None,
) -> dict[str, Any]:
    cfg = config or UtilityConfig()
    logs = logged_decisions(engine, cfg)
    with Session(engine) as session:
        arms = session.exec(select(BanditArm).order_by(col(BanditArm.arm_index))).all()
    if not logs or not arms:
        return {"decisions": len(logs), "policies": {}}
    n = len(arms)
    policies: dict[str, list[float]] = {
        f"fixed:{a.threshold:.1f}": [1.0 if i == a.arm_index else 0.0 for i in range(n)]
        for a in arms
    }
    live = thompson_propensities([a.alpha for a in arms], [a.beta for a in arms], rng)
    policies["live_bandit"] = [float(x) for x in live]
    report: dict[str, dict[str, dict[str, float]]] = {
        name: {k: e.as_dict() for k, e in evaluate_policy(logs, target, clip).items()}
        for name, target in policies.items()
    }
    abstain = _always_abstain(engine, cfg).as_dict()
    report["always_abstain"] = {"ips": abstain, "snips": abstain, "dr": abstain}
    return {"decisions": len(logs), "clip": clip, "reward": "utility", "policies": report}


def cmd_eval_policy(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from bot.wiring import migrated_engine

    report = policy_report(
        migrated_engine(settings), np.random.default_rng(settings.seed), args.clip
    )
    if args.json:
        print(json.dumps(report))
        return 0
    if not report["policies"]:
        print("no judged decisions yet")
        return 0
    print(
        f"{report['decisions']} judged decisions; estimated utility per decision "
        "(+1 liked, −C overridden, −M missed), 95% CI"
    )
    for name, est in report["policies"].items():
        cells = "  ".join(
            f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in est.items()
        )
        print(f"{name:12s} {cells}")
    return 0
