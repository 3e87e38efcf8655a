"""The playbook library as people read it: key steps and a short text per playbook."""

from __future__ import annotations

import re
from pathlib import Path

from retrieval.playbook import Playbook, lint_folder

_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.*)$")


class Library:
    def __init__(self, folders: list[Path]) -> None:
        self._folders = folders
        self._playbooks: dict[str, Playbook] = {}
        self.reload()

    @classmethod
    def load(cls, *folders: Path) -> Library:
        return cls(list(folders))

    def reload(self) -> None:
        """Read the folders again (after an approval wrote a new playbook)."""
        self._playbooks = {
            pb.id: pb
            for folder in self._folders
            if folder.is_dir()
            for pb in lint_folder(folder).playbooks
        }

    def has(self, playbook_id: str) -> bool:
        return playbook_id in self._playbooks

    def steps(self, playbook_id: str) -> list[str]:
        pb = self._playbooks.get(playbook_id)
        if pb is None:
            return []
        return [m.group(1) for line in pb.section("steps").splitlines() if (m := _ITEM.match(line))]

    def text(self, playbook_id: str) -> str | None:
        pb = self._playbooks.get(playbook_id)
        if pb is None:
            return None
        m = pb.meta
        steps = "\n".join(f"{i}. {s}" for i, s in enumerate(self.steps(playbook_id), 1))
        return (
            f"*{m.title}* (`{m.id}`, {m.status.value}, v{m.version})\n"
            f"action `{m.action}` · risk {m.risk.value} · blast radius {m.blast_radius}\n"
            f"*Steps*\n{steps}\n*Rollback*\n{pb.section('rollback')}"
        )
