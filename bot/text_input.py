"""Text from outside (Slack, Alertmanager) made safe to store: bounded, no control codes.

PostgreSQL's text columns reject NUL, and the other C0 controls are never meant in an
incident or a reason (they only garble logs and terminals); tab, newline and carriage
return are layout and stay. A lone UTF-16 surrogate (JSON allows ``"\\ud800"``) cannot be
encoded for either database and becomes U+FFFD.
"""

from __future__ import annotations

# Slack's limit for one message's text: the longest incident text that is stored.
MAX_STORED_CHARS = 40_000

# C0 controls mapped to None for str.translate; tab, LF and CR stay.
_DROP = {code: None for code in range(0x20) if chr(code) not in "\t\n\r"}


def clean_text(text: str, limit: int) -> str:
    """``text`` without NUL and the other C0 controls but tab, LF and CR, cut to ``limit``
    characters. Only the first ``limit`` characters are read unless controls were dropped
    from them, so a huge value costs no more than a ``limit``-sized one."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    cleaned = text[:limit].translate(_DROP)
    if len(cleaned) < limit < len(text):  # controls were dropped: fill up from the rest
        cleaned = text.translate(_DROP)[:limit]
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        cleaned = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in cleaned)
    return cleaned
