"""The Web client retries Slack's 429 (honouring Retry-After) and 5xx answers."""

from __future__ import annotations

import time

from bot.settings import Settings
from bot.slack.app import web_client
from tests.slack_fake import fake_slack


def test_429_and_5xx_are_retried_and_the_message_lands_once() -> None:
    with fake_slack() as api:
        settings = Settings.model_validate({"slack_bot_token": "xoxb-t", "slack_api_url": api.url})
        client = web_client(settings)
        api.fail_next("chat.postMessage", 429, {"Retry-After": "1"})
        api.fail_next("chat.postMessage", 503)
        started = time.monotonic()
        response = client.chat_postMessage(channel="C1", text="hello")
        elapsed = time.monotonic() - started
        assert response["ok"]
        assert len(api.of("chat.postMessage")) == 1
        assert elapsed >= 1.0  # waited as Retry-After asked
