"""The fake Slack Web API lives in ``testkit.slack_api`` (the benchmarks use it too); this
name stays so existing test imports keep working."""

from testkit.slack_api import (
    FakeSlackAPI,
    button_payload,
    event_body,
    fake_slack,
    form_body,
    override_submission_payload,
    signed_headers,
)

__all__ = [
    "FakeSlackAPI",
    "button_payload",
    "event_body",
    "fake_slack",
    "form_body",
    "override_submission_payload",
    "signed_headers",
]
