"""Approved playbooks reach every replica: the database is the source of truth (the vetted
text is kept in the ``playbook_submission`` row), and each replica copies it into its own
submissions folder, at start, right after an approval, and every 30 s."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.engine import read_only
from bot.db.models import PlaybookSubmission
from retrieval.playbook import PlaybookError, parse_playbook

log = logging.getLogger(__name__)


def approved_playbooks(engine: Engine) -> dict[str, str]:
    """Playbook id → vetted text of its latest approval."""
    with Session(read_only(engine)) as session:
        rows = session.exec(
            select(PlaybookSubmission.playbook_id, PlaybookSubmission.text)
            .where(PlaybookSubmission.status == "approved")
            .order_by(col(PlaybookSubmission.decided_at), col(PlaybookSubmission.created_at))
        ).all()
    return dict(rows)  # a later approval of the same id wins


class LibrarySync:
    """Writes missing or changed approved playbooks into ``folder`` and then calls
    ``on_changed`` (re-ingest and reload the library) once; nothing when nothing changed."""

    def __init__(self, engine: Engine, folder: Path, on_changed: Callable[[], None]) -> None:
        self.engine, self.folder, self.on_changed = engine, folder, on_changed
        self._lock = threading.Lock()  # the 30 s job and an approval may run at once

    def run(self) -> list[str]:
        """Bring the folder up to date; the ids of the playbooks written."""
        with self._lock:
            written = [
                playbook_id
                for playbook_id, text in sorted(approved_playbooks(self.engine).items())
                if self._sync_one(playbook_id, text)
            ]
            if written:
                log.info("library sync wrote %s", ", ".join(written))
                self.on_changed()
            return written

    def _sync_one(self, playbook_id: str, text: str) -> bool:
        data = text.encode("utf-8")
        path = self.folder / f"{playbook_id}.md"
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        try:  # a row that is not a valid playbook never reaches the library
            pb = parse_playbook(text, f"submission:{playbook_id}")
        except PlaybookError as exc:
            log.warning("library sync skipped %s: %s", playbook_id, exc)
            return False
        if pb.id != playbook_id:
            log.warning("library sync skipped %s: its text has id %r", playbook_id, pb.id)
            return False
        _write_atomically(path, data)
        return True


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one (hidden temp file, which
    the library's folder scan skips, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sync-", suffix=".md")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
