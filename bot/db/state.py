"""Shared rows every decision reads and every writer touches: the meta-monitor's state
document, the bandit arms, the live model and the audit log.

Plain Core statements on a connection, built once: these run in every vote's transaction,
where building ORM objects and statements cost more than the database round trips.
Session users pass ``session.connection()``; no ORM object of these tables is ever held,
so nothing can go stale behind them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from bot.db.engine import table_of
from bot.db.models import AuditEntry, BanditArm, LearningClock, ModelVersion, MonitorStateRow
from bot.db.prepared import Prepared
from core.bandit import BanditConfig, ThresholdBandit
from core.monitor import (
    JudgedTick,
    MetaMonitor,
    MonitorConfig,
    MonitorState,
    history_from_list,
    history_to_list,
)

_MONITOR = table_of(MonitorStateRow)
_ARMS = table_of(BanditArm)
_AUDIT = table_of(AuditEntry)
_MODELS = table_of(ModelVersion)
_CLOCK = table_of(LearningClock)

# Public, with LIVE_MODEL: a decision's snapshot reads both inside one statement.
READ_MONITOR = select(_MONITOR.c.state_json).where(_MONITOR.c.id == 1)
_WRITE_MONITOR = (
    update(_MONITOR)
    .where(_MONITOR.c.id == 1)
    .values(state_json=bindparam("state"), updated_at=bindparam("now"))
)
_HISTORY_ROW = 2  # the learned monitor's tick history: read by the tick only
_READ_HISTORY = select(_MONITOR.c.state_json).where(_MONITOR.c.id == _HISTORY_ROW)
_READ_ARMS = select(_ARMS.c.threshold, _ARMS.c.alpha, _ARMS.c.beta).order_by(_ARMS.c.arm_index)
_ARMS_SNAPSHOT = Prepared(_READ_ARMS, "read arms")  # every decision reads them
_WRITE_ARM = (
    update(_ARMS)
    .where(_ARMS.c.arm_index == bindparam("i"))
    .values(alpha=bindparam("a"), beta=bindparam("b"))
)

LIVE_MODEL = select(_MODELS.c.id).where(_MODELS.c.live.is_(True))  # see READ_MONITOR
_MODEL_WEIGHTS = select(_MODELS.c.weights_json).where(_MODELS.c.id == bindparam("id"))


_READ_CLOCK = select(_CLOCK.c.step, _CLOCK.c.bandit_steps).where(_CLOCK.c.id == 1)
_WRITE_CLOCK = (
    update(_CLOCK)
    .where(_CLOCK.c.id == 1)
    .values(step=bindparam("step"), bandit_steps=bindparam("bandit_steps"))
)


class ArmsChangedError(ValueError):
    """The configured threshold arms differ from the ones the stored posteriors belong to."""


def read_clock(conn: Connection) -> tuple[int, int]:
    """(learning step, bandit steps) as last committed; (0, 0) before the first vote."""
    row = conn.execute(_READ_CLOCK).first()
    return (int(row.step), int(row.bandit_steps)) if row else (0, 0)


def load_clock(conn: Connection) -> tuple[int, int]:
    """The clock for a writer of learning state: row-locked on PostgreSQL (every vote's
    transaction takes this lock first, which serialises learning updates; SQLite's
    BEGIN IMMEDIATE already does), created on first use."""
    locking = conn.dialect.name == "postgresql"
    row = conn.execute(_READ_CLOCK.with_for_update() if locking else _READ_CLOCK).first()
    if row is None:
        conn.execute(insert(_CLOCK), {"id": 1, "step": 0, "bandit_steps": 0})
        return 0, 0
    return int(row.step), int(row.bandit_steps)


def save_clock(conn: Connection, step: int, bandit_steps: int) -> None:
    conn.execute(_WRITE_CLOCK, {"step": step, "bandit_steps": bandit_steps})


def read_monitor(conn: Connection, config: MonitorConfig) -> MetaMonitor:
    """The monitor as last committed, for decisions and reports: never writes, so it is
    safe in a read-only transaction (a fresh monitor until a writer has stored one)."""
    return monitor_of(conn.execute(READ_MONITOR).scalar_one_or_none(), config)


def monitor_of(stored: str | None, config: MonitorConfig) -> MetaMonitor:
    """The monitor of a stored state document (a fresh one when nothing is stored)."""
    state = MonitorState.from_dict(json.loads(stored)) if stored else MonitorState()
    return MetaMonitor(config, state)


def load_monitor(conn: Connection, config: MonitorConfig) -> MetaMonitor:
    """The monitor for a writer that will save it: row-locked on PostgreSQL, which
    serialises every learning update behind it, and created on first use."""
    locking = conn.dialect.name == "postgresql"
    stored = conn.execute(
        READ_MONITOR.with_for_update() if locking else READ_MONITOR
    ).scalar_one_or_none()
    if stored is None:
        stored = json.dumps(MonitorState().to_dict())
        conn.execute(insert(_MONITOR), {"id": 1, "state_json": stored, "updated_at": _now()})
    return MetaMonitor(config, MonitorState.from_dict(json.loads(stored)))


def save_monitor(conn: Connection, monitor: MetaMonitor, now: dt.datetime) -> None:
    """Store the monitor (loaded earlier in the same transaction, so its row exists)."""
    conn.execute(_WRITE_MONITOR, {"state": json.dumps(monitor.state.to_dict()), "now": now})


def read_bandit(conn: Connection, config: BanditConfig) -> ThresholdBandit:
    """The arms' posteriors as last committed; never writes (fresh arms from (1, 1) until a
    writer has stored the configured ones)."""
    rows = _ARMS_SNAPSHOT.all(conn)
    if [threshold for threshold, _, _ in rows] != list(config.arms):
        return ThresholdBandit(config)
    return ThresholdBandit(config, [a for _, a, _ in rows], [b for _, _, b in rows])


def load_bandit(conn: Connection, config: BanditConfig, steps: int = 0) -> ThresholdBandit:
    """The arms for a writer that will save them: row-locked on PostgreSQL, created from
    (1, 1) on first use. Stored arms that differ from the configured ones are never reset
    silently (the learned posteriors would be lost): see ``migrate_arms``."""
    locking = conn.dialect.name == "postgresql"
    rows = conn.execute(_READ_ARMS.with_for_update() if locking else _READ_ARMS).all()
    if not rows:
        _write_fresh_arms(conn, config)
        return ThresholdBandit(config, steps=steps)
    stored = tuple(float(r.threshold) for r in rows)
    if stored != tuple(config.arms):
        raise ArmsChangedError(arms_changed_message(stored, config.arms))
    return ThresholdBandit(config, [r.alpha for r in rows], [r.beta for r in rows], steps)


def arms_changed_message(stored: tuple[float, ...], configured: tuple[float, ...]) -> str:
    return (
        f"NPO_ARMS changed from {_arms(stored)} to {_arms(configured)}, but the learned "
        "posteriors belong to the stored arms. Restore NPO_ARMS, or set "
        "NPO_ARMS_MIGRATION=map to carry each stored posterior to the nearest new arm, or "
        "NPO_ARMS_MIGRATION=reset to start the new arms from their prior (both audited)."
    )


def _arms(arms: tuple[float, ...]) -> str:
    return ",".join(f"{a:g}" for a in arms)


def _write_fresh_arms(conn: Connection, config: BanditConfig) -> None:
    """The arms at their prior (``BanditConfig.prior``)."""
    alpha, beta = config.prior()
    conn.execute(
        insert(_ARMS),
        [
            {"arm_index": i, "threshold": t, "alpha": a, "beta": b}
            for i, (t, a, b) in enumerate(zip(config.arms, alpha, beta, strict=True))
        ],
    )


def _nearest(rows: Sequence[Row[Any, Any, Any]], threshold: float) -> Row[Any, Any, Any]:
    return min(rows, key=lambda r: (abs(float(r.threshold) - threshold), float(r.threshold)))


def migrate_arms(
    conn: Connection, config: BanditConfig, migration: str, actor: str, now: dt.datetime
) -> str | None:
    """Make the stored arms match the configured ones, as ``migration`` says (``"map"``:
    each new arm takes the posterior of the nearest stored arm; ``"reset"``: from the
    prior; ``""``: refuse). Returns what was done, or None when nothing had to change."""
    locking = conn.dialect.name == "postgresql"
    rows = conn.execute(_READ_ARMS.with_for_update() if locking else _READ_ARMS).all()
    stored = tuple(float(r.threshold) for r in rows)
    if not rows or stored == tuple(config.arms):
        return None
    if migration not in ("map", "reset"):
        raise ArmsChangedError(arms_changed_message(stored, config.arms))
    conn.execute(delete(_ARMS))
    if migration == "reset":
        _write_fresh_arms(conn, config)
    else:
        nearest = [_nearest(rows, t) for t in config.arms]
        conn.execute(
            insert(_ARMS),
            [
                {"arm_index": i, "threshold": t, "alpha": r.alpha, "beta": r.beta}
                for i, (t, r) in enumerate(zip(config.arms, nearest, strict=True))
            ],
        )
    done = f"arms {_arms(stored)} → {_arms(config.arms)} ({migration})"
    audit(
        conn,
        actor,
        "bandit:arms",
        "arms",
        {"from": stored, "to": config.arms, "how": migration},
        now,
    )
    return done


def save_bandit(conn: Connection, bandit: ThresholdBandit) -> None:
    conn.execute(
        _WRITE_ARM,
        [
            {"i": i, "a": float(a), "b": float(b)}
            for i, (a, b) in enumerate(zip(bandit.alpha, bandit.beta, strict=True))
        ],
    )


def live_model(conn: Connection) -> int | None:
    """The id of the model that gives priors now, if a retrain has been accepted."""
    return conn.execute(LIVE_MODEL).scalars().first()


def model_weights(conn: Connection, model_id: int) -> str:
    return str(conn.execute(_MODEL_WEIGHTS, {"id": model_id}).scalar_one())


def audit_row(
    actor: str, action: str, subject: str, detail: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail_json": json.dumps(detail),
        "created_at": now,
    }


def audit(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    now: dt.datetime,
) -> None:
    conn.execute(insert(_AUDIT), audit_row(actor, action, subject, detail, now))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_monitor_history(conn: Connection) -> list[JudgedTick]:
    """The judged ticks the learned monitor is fitted on (none until a tick stored some).
    Kept in its own row so that the monitor document every recommendation reads stays small."""
    stored = conn.execute(_READ_HISTORY).scalar_one_or_none()
    return history_from_list(json.loads(stored)) if stored else []


def save_monitor_history(conn: Connection, history: Sequence[JudgedTick], now: dt.datetime) -> None:
    """Store the history (in the tick's transaction, after ``load_monitor`` took the lock)."""
    doc = json.dumps(history_to_list(history))
    updated = conn.execute(
        update(_MONITOR).where(_MONITOR.c.id == _HISTORY_ROW).values(state_json=doc, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(insert(_MONITOR), {"id": _HISTORY_ROW, "state_json": doc, "updated_at": now})
