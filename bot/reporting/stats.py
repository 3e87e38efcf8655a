"""Alignment stats for people: per playbook, threshold arms, the monitor's decisions and
fidelity, retrains, and where written policy and practice disagree."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import (
    BanditArm,
    Feedback,
    ModelVersion,
    MonitorDecisionRow,
    MonitorStateRow,
    Recommendation,
)
from core.monitor import meta_agreement


@dataclass(frozen=True, slots=True)
class PlaybookStats:
    playbook_id: str
    decisions: int
    likes: int
    overrides: int
    neutral: int
    skipped: int
    mean_loss: float

    @property
    def override_rate(self) -> float:
        judged = self.likes + self.overrides + self.neutral
        return self.overrides / judged if judged else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "playbook": self.playbook_id,
            "decisions": self.decisions,
            "likes": self.likes,
            "overrides": self.overrides,
            "neutral": self.neutral,
            "skipped": self.skipped,
            "mean_loss": round(self.mean_loss, 6),
            "override_rate": round(self.override_rate, 6),
        }


def playbook_stats(engine: Engine, playbook_id: str | None = None) -> list[PlaybookStats]:
    query = (
        select(Feedback.playbook_id, Feedback.kind, func.count(), func.avg(Feedback.loss))
        .where(col(Feedback.withdrawn).is_(False), Feedback.playbook_id != "")
        .group_by(Feedback.playbook_id, Feedback.kind)
    )
    if playbook_id:
        query = query.where(Feedback.playbook_id == playbook_id)
    with Session(engine) as session:
        rows = session.exec(query).all()
    table: dict[str, dict[str, tuple[int, float]]] = {}
    for pb, kind, count, mean in rows:
        table.setdefault(pb, {})[kind] = (int(count), float(mean or 0.0))
    out = []
    for pb, kinds in sorted(table.items()):
        n = sum(c for c, _ in kinds.values())
        loss = sum(c * m for c, m in kinds.values()) / n if n else 0.0
        counts = {k: c for k, (c, _) in kinds.items()}
        out.append(
            PlaybookStats(
                pb,
                n,
                counts.get("like", 0),
                counts.get("override", 0),
                counts.get("neutral", 0),
                counts.get("skipped", 0),
                loss,
            )
        )
    return out


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def alignment_report(
    engine: Engine, now: dt.datetime, playbook_id: str | None = None
) -> dict[str, Any]:
    """Everything people ask about alignment, as JSON-able data (``npo stats --json``)."""
    with Session(engine) as session:
        feedback = session.exec(select(Feedback).where(col(Feedback.withdrawn).is_(False))).all()
        recs = session.exec(select(Recommendation)).all()
        arms = session.exec(select(BanditArm).order_by(col(BanditArm.arm_index))).all()
        decisions = session.exec(
            select(MonitorDecisionRow).order_by(
                col(MonitorDecisionRow.created_at).desc(), col(MonitorDecisionRow.id).desc()
            )
        ).all()
        versions = session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at))).all()
        state_row = session.get(MonitorStateRow, 1)
    paused = set(json.loads(state_row.state_json).get("paused", [])) if state_row else set()
    week_ago = now - dt.timedelta(days=7)
    by_pb: dict[str, list[Feedback]] = {}
    for fb in feedback:
        if fb.playbook_id:
            by_pb.setdefault(fb.playbook_id, []).append(fb)
    top_of: dict[str, list[str]] = {}
    for rec in recs:
        top = json.loads(rec.decision_json)["candidates"][:1]
        if top:
            top_of.setdefault(top[0]["playbook_id"], []).append(rec.spe_verdict)
    accepted = [v for v in versions if v.accepted]
    last_retrain = _aware(accepted[-1].created_at).isoformat() if accepted else None
    rows = []
    for pb in sorted(set(by_pb) | set(top_of)):
        if playbook_id and pb != playbook_id:
            continue
        votes = by_pb.get(pb, [])
        recent = [v for v in votes if _aware(v.created_at) >= week_ago]
        kinds = [v.kind for v in votes]
        judged = sum(k in ("like", "override", "neutral") for k in kinds)
        verdicts = top_of.get(pb, [])
        rows.append(
            {
                "playbook": pb,
                "decisions": len(votes),
                "likes": kinds.count("like"),
                "overrides": kinds.count("override"),
                "neutral": kinds.count("neutral"),
                "skipped": kinds.count("skipped"),
                "mean_loss": round(sum(v.loss for v in votes) / len(votes), 6) if votes else None,
                "mean_loss_7d": round(sum(v.loss for v in recent) / len(recent), 6)
                if recent
                else None,
                "override_rate": round(kinds.count("override") / judged, 6) if judged else 0.0,
                "spe_rejection_rate": round(sum(v != "allow" for v in verdicts) / len(verdicts), 6)
                if verdicts
                else 0.0,
                "last_retrain": last_retrain,
                "paused": pb in paused,
            }
        )
    judged_ticks = [d for d in decisions if d.ideal_action is not None]
    meta = meta_agreement(
        [d.action == "retrain" for d in judged_ticks],
        [d.ideal_action == "retrain" for d in judged_ticks],
    )
    return {
        "playbooks": rows,
        "arms": [
            {
                "threshold": a.threshold,
                "alpha": a.alpha,
                "beta": a.beta,
                "mean": round(a.alpha / (a.alpha + a.beta), 6),
            }
            for a in arms
        ],
        "monitor": {
            "fidelity": round(meta.fidelity, 6) if judged_ticks else None,
            "base_rate": round(meta.base_rate, 6) if judged_ticks else None,  # of M* = retrain
            "kappa": round(meta.kappa, 6) if judged_ticks else None,
            "ticks": len(decisions),
            "recent": [
                {
                    "at": _aware(d.created_at).isoformat(),
                    "action": d.action,
                    "reason": d.reason,
                    "playbook": d.playbook_id,
                    "ideal": d.ideal_action,
                }
                for d in decisions[:10]
            ],
        },
        "retrains": {"accepted": len(accepted), "rejected": sum(not v.accepted for v in versions)},
    }


_FEATURES = ("hour", "maintenance_window", "redundancy", "severity", "component")


def divergence_report(engine: Engine) -> dict[str, Any]:
    """Policy–practice divergence: recommendations the SPE allowed that operators overrode,
    by playbook and by context feature, against every allowed recommendation judged."""
    with Session(engine) as session:
        rows = session.exec(
            select(Feedback, Recommendation)
            .join(Recommendation, col(Recommendation.id) == col(Feedback.recommendation_id))
            .where(
                col(Feedback.withdrawn).is_(False),
                Recommendation.spe_verdict == "allow",
                Recommendation.outcome == "recommend",
                col(Feedback.kind).in_(["like", "override", "neutral"]),
            )
        ).all()
    by_pb: dict[str, list[int]] = {}
    by_feature: dict[str, list[int]] = {}
    for fb, _rec in rows:
        overridden = int(fb.kind == "override")
        by_pb.setdefault(fb.playbook_id, [0, 0])
        by_pb[fb.playbook_id][0] += 1
        by_pb[fb.playbook_id][1] += overridden
        context = json.loads(fb.context_json)
        for feature in _FEATURES:
            if feature in context:
                key = f"{feature}={context[feature]}"
                by_feature.setdefault(key, [0, 0])
                by_feature[key][0] += 1
                by_feature[key][1] += overridden

    def table(counts: dict[str, list[int]]) -> list[dict[str, Any]]:
        out = [
            {"group": k, "allowed_judged": n, "overridden": o, "override_rate": round(o / n, 6)}
            for k, (n, o) in counts.items()
        ]
        return sorted(out, key=lambda r: (-r["override_rate"], -r["allowed_judged"], r["group"]))

    return {"by_playbook": table(by_pb), "by_feature": table(by_feature)}


def format_report(report: dict[str, Any]) -> str:
    """A readable rendering of ``alignment_report`` (and of a divergence section)."""
    lines: list[str] = []
    if "playbooks" in report:
        lines.append(
            f"{'playbook':36s} {'n':>4s} {'like':>5s} {'ovr':>4s} {'neu':>4s} {'skip':>5s} "
            f"{'loss':>6s} {'7d':>6s} {'ovr%':>5s} {'spe%':>5s} paused"
        )
        for r in report["playbooks"]:
            loss = "—" if r["mean_loss"] is None else f"{r['mean_loss']:.3f}"
            week = "—" if r["mean_loss_7d"] is None else f"{r['mean_loss_7d']:.3f}"
            lines.append(
                f"{r['playbook']:36s} {r['decisions']:4d} {r['likes']:5d} {r['overrides']:4d} "
                f"{r['neutral']:4d} {r['skipped']:5d} {loss:>6s} {week:>6s} "
                f"{r['override_rate']:5.0%} {r['spe_rejection_rate']:5.0%} "
                f"{'yes' if r['paused'] else ''}"
            )
        arms = ", ".join(f"τ={a['threshold']:.1f}: {a['mean']:.2f}" for a in report["arms"])
        lines.append(f"\nthreshold arms (posterior mean): {arms or '—'}")
        mon = report["monitor"]
        fid = "—"
        if mon["fidelity"] is not None:
            fid = (
                f"{mon['fidelity']:.2f} (base rate of retrain {mon['base_rate']:.2f}, "
                f"Cohen's κ {mon['kappa']:.2f})"
            )
        lines.append(f"monitor: {mon['ticks']} ticks, meta-alignment fidelity {fid}")
        for d in mon["recent"][:5]:
            lines.append(f"  {d['at'][:16]} {d['action']}: {d['reason']}")
        r = report["retrains"]
        lines.append(f"retrains: {r['accepted']} accepted, {r['rejected']} rejected")
    if "divergence" in report:
        lines.append("\npolicy–practice divergence (allowed by the SPE, overridden by operators):")
        for section in ("by_playbook", "by_feature"):
            for row in report["divergence"][section][:10]:
                lines.append(
                    f"  {row['group']:40s} {row['overridden']:4d}/{row['allowed_judged']:<4d} "
                    f"{row['override_rate']:.0%}"
                )
    return "\n".join(lines)
