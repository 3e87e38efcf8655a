"""``/npo <subcommand>``: the help text is built from this registry.

Replies are mrkdwn: every part that echoes input or stored data is escaped
(``bot.slack.escape``), including the usage strings (their ``<id>`` is not a link)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.reporting.stats import alignment_report, divergence_report, format_report
from bot.slack import flows
from bot.slack.blocks import submit_modal
from bot.slack.escape import clip, escape
from bot.slack.flows import SlackContext
from bot.slack.listeners import log, tolerant
from bot.slack.translate import PayloadError, command_ref, incident_from_command
from bot.text_input import MAX_STORED_CHARS, clean_text


@dataclass(frozen=True)
class Subcommand:
    usage: str
    help: str
    reply: Callable[[SlackContext, dict[str, Any], str], str]  # returns mrkdwn


MAX_REPLY = 2990  # under the 3,000 characters of a text object


def _code(text: str) -> str:
    """``text`` as a code block (escaped: Slack parses ``<…>`` inside code blocks too)."""
    return "```" + clip(escape(text), MAX_REPLY - 6) + "```"


def _help(ctx: SlackContext, body: dict[str, Any], arg: str) -> str:
    lines = [f"`/npo {escape(c.usage)}` — {escape(c.help)}" for c in SUBCOMMANDS.values()]
    return "*NPO ChatOps*\n" + "\n".join(lines)


def _stats(ctx: SlackContext, body: dict[str, Any], arg: str) -> str:
    if arg.strip() == "chart":
        return "Rendering the alignment chart…"
    if arg.strip() == "divergence":
        report = {"divergence": divergence_report(ctx.service.engine)}
        return _code(format_report(report))
    report = alignment_report(ctx.service.engine, ctx.service.clock(), arg.strip() or None)
    return _code(format_report(report))


def _playbook(ctx: SlackContext, body: dict[str, Any], arg: str) -> str:
    words = arg.split()
    if len(words) == 2 and words[0] in {"pause", "resume"}:
        user = str(body["user_id"])
        if not ctx.access.may_manage_playbooks(user):
            log.warning("refused %s of playbook by %s: not a playbook admin", words[0], user)
            return (
                "Sorry, you are not allowed to pause or resume playbooks: ask an admin to add "
                "your user id to NPO_PLAYBOOK_ADMINS."
            )
        if ctx.playbook_text(words[1]) is None:
            return f"No playbook `{escape(words[1])}`: nothing to {words[0]}."
        changed = ctx.service.set_paused(words[1], words[0] == "pause", user)
        state = "paused" if words[0] == "pause" else "resumed"
        shown = escape(words[1])
        return f"`{shown}` {state}." if changed else f"`{shown}` was already {state}."
    if len(words) != 1:
        return escape("Usage: `/npo playbook <id>` or `/npo playbook pause|resume <id>`")
    text = ctx.playbook_text(words[0])
    return clip(escape(text), 2900) if text else f"No playbook `{escape(words[0])}`."


def _prefs(ctx: SlackContext, body: dict[str, Any], arg: str) -> str:
    parts = arg.split()
    if len(parts) != 2 or parts[0] != "verbosity" or parts[1] not in {"brief", "full"}:
        return "Usage: `/npo prefs verbosity brief|full`"
    ctx.service.set_verbosity(str(body["user_id"]), parts[1])
    return f"Explanations will be {parts[1]} for you."


def _recommend(ctx: SlackContext, body: dict[str, Any], arg: str) -> str:
    if arg.strip():
        return "Looking for a vetted playbook…"
    return escape("Usage: `/npo recommend <incident>`")


SUBCOMMANDS: dict[str, Subcommand] = {
    "recommend": Subcommand(
        "recommend <incident>", "recommend a playbook for an incident", _recommend
    ),
    "stats": Subcommand(
        "stats [playbook] | stats divergence | stats chart", "playbook alignment stats", _stats
    ),
    "playbook": Subcommand(
        "playbook <id> | playbook pause|resume <id> | playbook submit",
        "show, pause, resume or submit a playbook",
        _playbook,
    ),
    "prefs": Subcommand("prefs verbosity brief|full", "how much explanation you see", _prefs),
    "help": Subcommand("help", "this list", _help),
}


def _command_text(body: dict[str, Any]) -> str:
    """The command's text as the subcommands read it: no NUL or control characters (the
    stored paths would fail on them), bounded like any incident text."""
    return clean_text(str(body.get("text", "")), MAX_STORED_CHARS).strip()


def register(app: App, ctx: SlackContext) -> None:
    def answer(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        try:
            command_ref(body)  # the subcommands below rely on its fields
        except PayloadError as exc:
            ack(
                response_type="ephemeral", text=f"Could not read this command ({escape(str(exc))})."
            )
            return
        name, _, arg = _command_text(body).partition(" ")
        if name.lower() == "playbook" and arg.strip() == "submit":
            if ctx.governance is None or not ctx.review_channel:
                ack(response_type="ephemeral", text="Playbook submissions are not configured here.")
                return
            client.views_open(trigger_id=str(body["trigger_id"]), view=submit_modal())
            ack(response_type="ephemeral", text="Opening the submission form…")
            return
        sub = SUBCOMMANDS.get(name.lower() or "help", SUBCOMMANDS["help"])
        if name.lower() == "recommend" and arg.strip():
            ctx.service.accept(incident_from_command(body, arg.strip()))  # before the ack
        ack(response_type="ephemeral", text=sub.reply(ctx, body, arg))

    def recommend_later(body: dict[str, Any], client: WebClient) -> None:
        command_ref(body)  # a malformed command was answered in the ack: nothing to do
        name, _, arg = _command_text(body).partition(" ")
        if name.lower() == "recommend" and arg.strip():
            flows.post_recommendation(ctx, client, incident_from_command(body, arg.strip()))
        elif name.lower() == "stats" and arg.strip() == "chart":
            flows.upload_chart(ctx, client, str(body["channel_id"]), body.get("thread_ts"))

    app.command("/npo")(ack=answer, lazy=[tolerant(recommend_later)])
