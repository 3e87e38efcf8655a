"""Several replicas starting together on a fresh database: each runs ``upgrade`` at start,
and every one of them must come up (the migration runs once, the others wait and find the
schema at head)."""

from __future__ import annotations

import multiprocessing
import os
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Barrier
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url, text

import bot.db.models  # noqa: F401  (imported once in the fork server, see below)
from bot.db.migrate import alembic_config, current_revision, upgrade

TRIALS = 10
REPLICAS = 3


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _replica(url: str, barrier: Barrier, error_file: Path) -> None:
    """One replica's start: wait for the others, then upgrade (exit 1 on any error)."""
    barrier.wait(60)
    try:
        upgrade(url)
    except BaseException as exc:
        error_file.write_text("".join(traceback.format_exception_only(exc)))
        raise SystemExit(1) from exc


def _start_together(url: str, folder: Path) -> list[tuple[int | None, str]]:
    """Three replica processes upgrade ``url`` at the same instant: (exit code, error).

    Each is a process of its own with its own connections, forked from a fork server that
    imported this module (and so Alembic and the models) once: a replica starts in
    milliseconds instead of the second and a half a fresh interpreter needs."""
    folder.mkdir(parents=True)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    barrier = ctx.Barrier(REPLICAS)
    procs = [
        ctx.Process(target=_replica, args=(url, barrier, folder / f"error-{i}"))
        for i in range(REPLICAS)
    ]
    for proc in procs:
        proc.start()
    results = []
    for i, proc in enumerate(procs):
        proc.join(120)
        if proc.exitcode is None:
            proc.kill()
        error = folder / f"error-{i}"
        results.append((proc.exitcode, error.read_text() if error.exists() else ""))
    return results


def _crashes(results: list[tuple[int | None, str]]) -> list[str]:
    """The exception of each replica that failed (its exit code if it left none)."""
    return [err.strip()[:160] or f"exit {rc}" for rc, err in results if rc != 0]


@contextmanager
def _fresh_schema(db_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema next to the fixture's, as its own URL."""
    admin = create_engine(make_url(db_url).set(query={}))
    schema = f"m_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        base = make_url(db_url).set(query={}).render_as_string(hide_password=False)
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_replicas_upgrading_one_fresh_database_together_all_come_up(
    db_url: str, tmp_path: Path
) -> None:
    head = _head()
    crashed: dict[int, list[str]] = {}
    for trial in range(TRIALS):
        folder = tmp_path / f"trial-{trial}"
        if db_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path}/fresh-{trial}.db"
            results = _start_together(url, folder)
            revision = current_revision(url)
        else:
            with _fresh_schema(db_url) as url:
                results = _start_together(url, folder)
                revision = current_revision(url)
        if _crashes(results) or revision != head:
            crashed[trial] = [*_crashes(results), f"revision {revision}"]
    assert not crashed, f"{len(crashed)} of {TRIALS} trials had a replica fail: {crashed}"


def test_an_upgrade_waits_for_the_lock_and_releases_it(db_url: str, tmp_path: Path) -> None:
    """Whoever holds the migration lock, an upgrade waits for it (and migrates nothing
    meanwhile), then runs; afterwards the lock is free again."""
    import fcntl
    import threading

    from bot.db.migrate import MIGRATE_LOCK_KEY
    from bot.monitoring.ticker import _LOCK_KEY

    assert MIGRATE_LOCK_KEY != _LOCK_KEY  # never contends with the scheduled jobs
    sqlite = db_url.startswith("sqlite")
    lock_file = f"{make_url(db_url).database}.migrate.lock" if sqlite else os.devnull
    holder = create_engine(db_url)
    with holder.connect() as conn, open(lock_file, "a") as fh:
        if sqlite:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        else:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
        worker = threading.Thread(target=upgrade, args=(db_url,))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "upgrade did not wait for the lock"
        assert current_revision(db_url) is None
        if sqlite:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        else:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_LOCK_KEY})
        worker.join(60)
        assert not worker.is_alive() and current_revision(db_url) == _head()
        if not sqlite:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
            assert got.scalar_one() is True  # the upgrade's session let go of it
    holder.dispose()
