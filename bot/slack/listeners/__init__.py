"""Listeners grouped by kind; each module exposes ``register(app, ctx)``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from bot.slack.translate import PayloadError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("npo.slack")


def tolerant(listener: F) -> F:
    """A payload Slack would not send (a forged or broken one, already acknowledged) is
    logged with the field at fault and dropped; translation raised before anything was
    stored. Other errors still propagate: they are bugs."""

    @functools.wraps(listener)  # Bolt injects arguments by the wrapped signature
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return listener(*args, **kwargs)
        except PayloadError as exc:
            log.warning("ignored a malformed payload in %s: %s", listener.__name__, exc)
            return None

    return run  # type: ignore[return-value]
