"""Extraction of names, component, fault type and severity (its linear time on adversarial
inputs is measured with the other text patterns in tests/reliability/test_bounds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.extraction.rules import Vocabulary, classify, extract, find_names

VOCABULARY = Vocabulary.from_folders([Path(__file__).resolve().parents[2] / "playbooks"])


@pytest.mark.parametrize(
    "name",
    [
        "Ethernet1/49",
        "et-0/0/4",
        "xe-1/0/3",
        "ge-0/0/7",
        "HundredGigE0/0/0/5",
        "TenGigabitEthernet1/0/24",
        "Port-Channel10",
        "po12",
        "ae3",
        "swp31",
        "eth0",
        "bond0",
        "ens3f1",
        "mgmt0",
        "et-0/0/22:2",
        "xe-0/1/0.0",
    ],
)
def test_interfaces_are_read_whole(name: str) -> None:
    device, interface, _ = find_names(f"leaf-07 {name} is flapping")
    assert (device, interface) == ("leaf-07", name)


def test_an_instance_gives_its_host_as_the_device() -> None:
    assert find_names("alertname=NodeDown instance=db-7:9100") == ("db-7", "", "db-7:9100")
    assert find_names("10.1.0.54:53 SERVFAIL") == ("", "", "10.1.0.54:53")


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T14:02:11Z nothing named here",
        "peer 2001:db8::1 down",
        "MAC 00:1b:21:3a:4f:10 moved",
        "see https://alertmanager.int:9093/#/alerts",
        "nginx 1.25.3 and EOS 4.28.3F",
        "Ticket INC-20261201-0042 opened",
    ],
)
def test_timestamps_addresses_urls_versions_and_tickets_are_not_names(text: str) -> None:
    assert find_names(text) == ("", "", "")


def test_component_and_fault_type_come_from_the_vocabulary() -> None:
    component, fault, _ = classify("spine-2 BGP session down to its peer", VOCABULARY)
    assert (component, fault) == ("bgp", "bgp_session_down")
    # Words the vocabulary does not hold: retrieval evidence decides, or nothing does.
    hits = [("link-flap-drain", 0.4), ("link-down-bounce-port", 0.2)]
    assert classify("leaf-07 xe-1/0/3 bouncing", VOCABULARY, hits)[:2] == ("link", "flapping")
    assert classify("leaf-07 xe-1/0/3 bouncing", VOCABULARY, [])[:2] == (None, None)
    assert classify("can someone look at the dashboard", VOCABULARY, [("x", 0.1)])[:2] == (
        None,
        None,
    )


def test_stated_labels_win() -> None:
    got = extract("component=dns fault_type=servfail on ns-1", VOCABULARY)
    assert (got.component, got.fault_type, got.device) == ("dns", "servfail", "ns-1")


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("CRIT leaf-07 down", "critical"),
        ("we got paged for spine-2", "high"),
        ("sev: low, no rush", "low"),
        ("low rx power on et-0/0/4", None),  # "low" here is not a severity
        ("latency high on api-gw-2", None),
        ("homepage slow", None),
    ],
)
def test_severity_only_from_words_that_say_it(text: str, severity: str | None) -> None:
    assert extract(text, VOCABULARY).severity == severity
