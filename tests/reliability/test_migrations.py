"""Several replicas starting together on a fresh database: each runs ``upgrade`` at start,
and every one of them must come up (the migration runs once, the others wait and find the
schema at head)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url, text

from bot.db.migrate import alembic_config, current_revision

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 10
REPLICAS = 3

# Imports first, then says it is ready and waits for the start file, so the three
# upgrades begin within a millisecond of each other.
REPLICA = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import bot.db.models
    from bot.db.migrate import upgrade

    url, ready, start = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not start.exists():
        time.sleep(0.0005)
    upgrade(url)
    """
)


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _start_together(url: str, folder: Path) -> list[tuple[int, str]]:
    """Three replica processes upgrade ``url`` at the same instant: (exit code, stderr)."""
    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = folder / "start"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, url, str(folder / f"ready-{i}"), str(start)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(REPLICAS)
    ]
    deadline = time.monotonic() + 120
    while not all((folder / f"ready-{i}").exists() for i in range(REPLICAS)):
        assert time.monotonic() < deadline, "replica processes did not start"
        assert all(p.poll() is None for p in procs), "a replica died before the start"
        time.sleep(0.01)
    start.touch()
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err))
    return results


_EXCEPTION = re.compile(r"^[\w.]+(?:Error|Exception|Violation)\b.*$", re.MULTILINE)


def _crashes(results: list[tuple[int, str]]) -> list[str]:
    """The exception line of each replica that failed (its exit code if it printed none)."""
    return [
        found[-1][:160] if (found := _EXCEPTION.findall(err)) else f"exit {rc}"
        for rc, err in results
        if rc
    ]


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


@pytest.mark.slow  # 60 replica processes: about a minute per database
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

    from bot.db.migrate import MIGRATE_LOCK_KEY, upgrade
    from bot.monitoring import _LOCK_KEY

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
