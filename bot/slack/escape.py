"""The one place where text becomes Slack mrkdwn.

Slack treats ``&``, ``<`` and ``>`` as control characters in mrkdwn text (text objects of
type ``mrkdwn`` and a message's top-level ``text``): ``<!channel>``, ``<!here>`` and
``<!everyone>`` notify a whole channel, ``<@U…>`` mentions someone, ``<#C…>`` links a
channel and ``<https://…|label>`` disguises a link. Slack parses these inside inline code
and code blocks too, so backticks protect nothing. Its documented escaping is to replace
exactly these three characters with ``&amp;``, ``&lt;`` and ``&gt;`` (and nothing else:
only these entities are decoded for display).

So every renderer builds its text from trusted templates and ``escape(value)`` for every
value that came from a person, a payload, the database, a playbook or an LLM; a mention is
made only by ``mention(user_id)``. ``plain_text`` objects are not parsed for mentions or
links (their only formatting is emoji); the bot puts only fixed labels into them.
"""

from __future__ import annotations

import re

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}


def escape(text: str) -> str:
    """``text`` shown as it is: Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """The inverse of ``escape`` (one pass, so ``&amp;lt;`` becomes ``&lt;``)."""
    return _ENTITY.sub(lambda m: _DECODED[m.group(1)], text)


def mention(user_id: str) -> str:
    """``<@ID>`` for a well-formed Slack user id; anything else is shown as text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def clip(mrkdwn: str, limit: int) -> str:
    """At most ``limit`` characters, ending in "…" when cut, never inside an entity or a
    ``<…>`` sequence (a cut there would show a broken entity or an unclosed mention)."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: max(limit - 1, 0)]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
