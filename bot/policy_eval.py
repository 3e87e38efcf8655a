"""``npo eval policy``: what each fixed threshold and the live bandit would have earned,
estimated off-policy from the decision log (reward = 1 − the decision's alignment loss)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import BanditArm, Feedback, Recommendation
from bot.settings import Settings
from core.ope import LoggedDecision, evaluate_policy, thompson_propensities


def logged_decisions(engine: Engine) -> list[LoggedDecision]:
    with Session(engine) as session:
        rows = session.exec(
            select(
                Recommendation.id,
                Recommendation.arm_index,
                Recommendation.propensity,
                Feedback.loss,
            )
            .join(Feedback, col(Feedback.recommendation_id) == col(Recommendation.id))
            .where(col(Feedback.withdrawn).is_(False))
        ).all()
    per_decision: dict[str, tuple[int, float, list[float]]] = {}
    for rec_id, arm, propensity, loss in rows:
        per_decision.setdefault(rec_id, (arm, propensity, []))[2].append(float(loss))
    return [
        LoggedDecision(arm, propensity, 1.0 - float(np.mean(losses)))
        for arm, propensity, losses in per_decision.values()
    ]


def policy_report(engine: Engine, rng: np.random.Generator, clip: float = 50.0) -> dict[str, Any]:
    logs = logged_decisions(engine)
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
    return {
        "decisions": len(logs),
        "clip": clip,
        "policies": {
            name: {k: e.as_dict() for k, e in evaluate_policy(logs, target, clip).items()}
            for name, target in policies.items()
        },
    }


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
    print(f"{report['decisions']} judged decisions; estimated mean reward (1 − loss), 95% CI")
    for name, est in report["policies"].items():
        cells = "  ".join(
            f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in est.items()
        )
        print(f"{name:12s} {cells}")
    return 0
