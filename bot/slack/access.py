"""Who may give feedback, who may override and who may pause playbooks: user ids or a user
group from Settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection


class Access:
    """An empty allow-list means everyone; a user group is resolved through the Web API and
    cached for ``ttl`` seconds."""

    def __init__(
        self,
        feedback_users: Collection[str] = (),
        override_users: Collection[str] = (),
        group_members: Callable[[], Collection[str]] | None = None,
        ttl: float = 300.0,
        playbook_admins: Collection[str] = (),
    ) -> None:
        self._feedback = set(feedback_users)
        self._override = set(override_users)
        self._admins = set(playbook_admins)
        self._group_members = group_members
        self._ttl = ttl
        self._cached: tuple[float, set[str]] | None = None

    def _group(self) -> set[str]:
        if self._group_members is None:
            return set()
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl:
            self._cached = (now, set(self._group_members()))
        return self._cached[1]

    def _restricted(self) -> bool:
        return bool(self._feedback) or self._group_members is not None

    def may_give_feedback(self, user: str) -> bool:
        return not self._restricted() or user in self._feedback or user in self._group()

    def may_manage_playbooks(self, user: str) -> bool:
        """Pausing or resuming a playbook changes what every operator is shown: only the
        configured admins (NPO_PLAYBOOK_ADMINS) may; none configured means nobody."""
        return user in self._admins

    def may_override(self, user: str) -> bool:
        if not self.may_give_feedback(user):
            return False
        return not self._override or user in self._override
