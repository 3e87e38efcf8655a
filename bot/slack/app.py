"""The Bolt app factory: built from Settings and the service, never at import."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.governance import Governance
from bot.llm import template_summary
from bot.service import NPOService
from bot.settings import Settings
from bot.slack.access import Access
from bot.slack.flows import SlackContext
from bot.slack.listeners import actions, commands, events, views
from bot.slack.listeners import governance as governance_listeners
from core.decision import Decision
from core.feedback import FeedbackKind


def web_client(settings: Settings) -> WebClient:
    """A Web API client that retries 429s (honouring Retry-After) and 5xx responses."""
    token = settings.slack_bot_token
    client = WebClient(
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
    )


def app_for(settings: Settings, ctx: SlackContext, client: WebClient) -> App:
    if not settings.slack_bot_token or not settings.slack_signing_secret:
        raise ValueError("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are both required for Slack")
    app = App(
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        client=client,
        token_verification_enabled=False,
    )
    for module in (events, actions, views, commands, governance_listeners):
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
