"""Any severity word → one of the scenario's four levels (low, medium, high, critical).

Alertmanager rules, syslog and paging tools each have their own vocabulary (``warning`` is
Alertmanager's most common value); the core knows four levels. Unknown words are
``medium``: an alert is never refused for its severity label.
"""

from __future__ import annotations

from typing import Final

DEFAULT: Final = "medium"
_LEVELS: Final[dict[str, tuple[str, ...]]] = {
    "low": ("info", "informational", "none", "ok", "low"),
    "medium": ("warning", "warn", "minor", "medium", "moderate"),
    "high": ("error", "major", "high", "page"),
    "critical": ("critical", "crit", "fatal", "emergency", "disaster", "p1"),
}
_BY_WORD: Final = {word: level for level, words in _LEVELS.items() for word in words}


def normalise_severity(value: str) -> str:
    """The scenario level for a severity label (case and surrounding blanks ignored)."""
    return _BY_WORD.get(value.strip().lower(), DEFAULT)
