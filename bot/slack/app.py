"""The Bolt app factory: built from Settings and the service, never at import."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.extraction.llm import template_summary
from bot.governance.submissions import Governance
from bot.service import NPOService
from bot.settings import Settings
from bot.slack.access import Access
from bot.slack.flows import SlackContext
from bot.slack.listeners import actions, approvals, commands, events, views
from bot.slack.listeners import governance as governance_listeners
from bot.slack.web_api import KeepAliveWebClient
from core.decision import Decision
from core.feedback import FeedbackKind

log = logging.getLogger("npo.slack")


class ListenerPool(Executor):
    """The threads that run Bolt's listeners, lazy ones included. We own it so a shutdown
    can wait for the work with a deadline and name what is still running. Its threads are
    daemons: the stdlib pool's are joined at interpreter exit, which would let a listener
    that hangs outlast any grace."""

    def __init__(self, workers: int = 5) -> None:
        self._workers = workers
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any], str] | None]
        self._queue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._queued = 0
        self._running: dict[int, tuple[str, float]] = {}
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        name = str(getattr(fn, "__qualname__", None) or repr(fn))
        with self._cond:
            if self._closed:
                raise RuntimeError("the listener pool is shut down")
            self._queued += 1
            if len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=self._work, name=f"npo-listener-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._queue.put((future, lambda: fn(*args, **kwargs), name))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call, name = item
            key = next(self._ids)
            with self._cond:
                self._queued -= 1
                self._running[key] = (name, time.monotonic())
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        log.exception("listener %s failed", name)
                        future.set_exception(exc)
            finally:
                with self._cond:
                    del self._running[key]
                    self._cond.notify_all()

    def busy(self) -> list[str]:
        """The work running now (with how long it has run) and how much is queued."""
        now = time.monotonic()
        with self._cond:
            running = [f"{name} ({now - t0:.1f}s)" for name, t0 in self._running.values()]
            return running + ([f"{self._queued} queued"] if self._queued else [])

    def drain(self, timeout: float) -> list[str]:
        """Take no new work, wait up to ``timeout`` seconds for the queued and running
        work; returns what is still unfinished (empty when everything finished)."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: not self._running and not self._queued, timeout)
        left = self.busy()
        for _ in self._threads:
            self._queue.put(None)
        return left

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def web_client(settings: Settings) -> WebClient:
    """A Web API client that keeps its connection open between calls and retries 429s
    (honouring Retry-After) and 5xx responses."""
    token = settings.slack_bot_token
    client = KeepAliveWebClient(
        token=token.get_secret_value() if token else None,
        base_url=settings.slack_api_url or WebClient.BASE_URL,
    )
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ServerErrorRetryHandler(max_retry_count=3))
    return client


def reaction_map(settings: Settings) -> dict[str, FeedbackKind]:
    mapping: dict[str, FeedbackKind] = {}
    for names, kind in (
        (settings.reactions_like, FeedbackKind.LIKE),
        (settings.reactions_override, FeedbackKind.OVERRIDE),
        (settings.reactions_neutral, FeedbackKind.NEUTRAL),
    ):
        mapping.update(dict.fromkeys(names, kind))
    return mapping


def slack_context(
    settings: Settings,
    service: NPOService,
    steps: Callable[[str], Sequence[str]],
    playbook_text: Callable[[str], str | None],
    client: WebClient,
    summarise: Callable[[Decision], str] = template_summary,
    governance: Governance | None = None,
) -> SlackContext:
    """What every listener and the alert intake share."""
    group = settings.feedback_group or ""

    def group_members() -> list[str]:
        return list(client.usergroups_users_list(usergroup=group).get("users", []))

    return SlackContext(
        service=service,
        access=Access(
            settings.feedback_users,
            settings.override_users,
            group_members if group else None,
            playbook_admins=settings.playbook_admins,
        ),
        steps=steps,
        playbook_text=playbook_text,
        default_verbosity=settings.default_verbosity,
        incident_channels=frozenset(settings.incident_channels),
        reactions=reaction_map(settings),
        summarise=summarise,
        governance=governance,
        review_channel=settings.review_channel or "",
        approver_users=frozenset(settings.approver_users),
    )


def bolt_logger() -> logging.Logger:
    """The base logger of Bolt's own loggers. At INFO Bolt logs the body of each request
    whose signature it refuses; our HTTP edge logs those refusals without the body, so
    Bolt speaks from WARNING unless logging is configured for ``npo.bolt``."""
    logger = logging.getLogger("npo.bolt")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


def app_for(
    settings: Settings,
    ctx: SlackContext,
    client: WebClient,
    listener_executor: Executor | None = None,
) -> App:
    if not settings.slack_bot_token or not settings.slack_signing_secret:
        raise ValueError("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are both required for Slack")
    app = App(
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        client=client,
        token_verification_enabled=False,
        logger=bolt_logger(),
        listener_executor=ListenerPool() if listener_executor is None else listener_executor,
    )
    for module in (events, actions, views, commands, governance_listeners, approvals):
        module.register(app, ctx)
    return app


def create_app(
    settings: Settings,
    service: NPOService,
    steps: Callable[[str], Sequence[str]],
    playbook_text: Callable[[str], str | None],
    client: WebClient | None = None,
    summarise: Callable[[Decision], str] = template_summary,
    governance: Governance | None = None,
) -> App:
    client = client or web_client(settings)
    ctx = slack_context(settings, service, steps, playbook_text, client, summarise, governance)
    return app_for(settings, ctx, client)
