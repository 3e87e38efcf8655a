"""The Web client retries Slack's 429 (honouring Retry-After) and 5xx answers, and keeps
its connection open between calls."""

from __future__ import annotations

import threading
import time

import pytest

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.web_api import KeepAliveWebClient
from tests.slack_fake import FakeSlackAPI, fake_slack


def _client(api: FakeSlackAPI) -> KeepAliveWebClient:
    client = web_client(
        Settings.model_validate({"slack_bot_token": "xoxb-t", "slack_api_url": api.url})
    )
    assert isinstance(client, KeepAliveWebClient)
    return client


def test_429_and_5xx_are_retried_and_the_message_lands_once() -> None:
    with fake_slack() as api:
        client = _client(api)
        api.fail_next("chat.postMessage", 429, {"Retry-After": "1"})
        api.fail_next("chat.postMessage", 503)
        started = time.monotonic()
        response = client.chat_postMessage(channel="C1", text="hello")
        elapsed = time.monotonic() - started
        assert response["ok"]
        assert len(api.of("chat.postMessage")) == 1
        assert elapsed >= 1.0  # waited as Retry-After asked


def test_calls_share_one_connection() -> None:
    with fake_slack() as api:
        client = _client(api)
        for i in range(5):
            assert client.chat_postMessage(channel="C1", text=f"m{i}")["ts"]
        assert client.auth_test()["user_id"] == "UBOT"
        assert len(api.of("chat.postMessage")) == 5
        assert api.connections == 1


def test_a_connection_the_server_closed_or_left_idle_is_replaced() -> None:
    with fake_slack() as api:
        client = _client(api)
        client.chat_postMessage(channel="C1", text="first")
        api.drop_connections()  # Slack's edge closed the idle connection
        time.sleep(0.05)
        client.chat_postMessage(channel="C1", text="second")
        client.idle_s = 0.0  # every connection is now too old to reuse
        time.sleep(0.01)
        client.chat_postMessage(channel="C1", text="third")
        assert [p["text"] for p in api.of("chat.postMessage")] == ["first", "second", "third"]
        assert api.connections == 3


def test_an_error_answer_is_raised_as_before_and_the_next_call_still_works() -> None:
    from slack_sdk.errors import SlackApiError

    with fake_slack() as api:
        client = _client(api)
        client.retry_handlers.clear()
        api.fail_next("chat.postMessage", 500)
        with pytest.raises(SlackApiError) as failed:
            client.chat_postMessage(channel="C1", text="lost")
        assert failed.value.response.status_code == 500
        assert client.chat_postMessage(channel="C1", text="kept")["ok"]
        assert [p["text"] for p in api.of("chat.postMessage")] == ["kept"]


def test_threads_each_keep_their_own_connection_and_every_message_lands_once() -> None:
    with fake_slack() as api:
        client = _client(api)
        errors: list[BaseException] = []

        def post(worker: int) -> None:
            try:
                for i in range(20):
                    client.chat_postMessage(channel="C1", text=f"{worker}-{i}")
            except BaseException as exc:  # reported below, not swallowed
                errors.append(exc)

        threads = [threading.Thread(target=post, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        texts = sorted(p["text"] for p in api.of("chat.postMessage"))
        assert texts == sorted(f"{w}-{i}" for w in range(6) for i in range(20))
        assert api.connections == 6
