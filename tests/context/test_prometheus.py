"""Facts from a real Prometheus (Debian's ``prometheus``), started on loopback and scraping
a small exporter this test runs."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bot.context.facts import IncidentRef
from bot.context.prometheus import FactQuery, PrometheusConfig, PrometheusProvider, render

BINARY = shutil.which("prometheus")
METRICS = (
    "# TYPE lag_member_up gauge\n"
    'lag_member_up{device="leaf-07",member="et-0/0/1"} 1\n'
    'lag_member_up{device="leaf-07",member="et-0/0/2"} 1\n'
    'lag_member_up{device="leaf-07",member="et-0/0/3"} 1\n'
    'lag_member_up{device="leaf-08",member="et-0/0/1"} 1\n'
    'lag_member_up{device="leaf-08",member="et-0/0/2"} 0\n'
    "# TYPE iface_util_ratio gauge\n"
    'iface_util_ratio{device="leaf-07",interface="xe-1/0/3"} 0.42\n'
)
REDUNDANCY = 'count(lag_member_up{device="$device"} == 1) - 1'
FRESHNESS = 'max(timestamp(lag_member_up{device="$device"}))'
UTILISATION = 'max(iface_util_ratio{device="$device", interface="$interface"})'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = METRICS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    folder: Path = tmp_path_factory.mktemp("prometheus")
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: fabric\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n"
    )
    port = _free_port()
    log = (folder / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"{url}/api/v1/query", params={"query": "lag_member_up"}, timeout=1)
                if r.status_code == 200 and r.json()["data"]["result"]:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start: {(folder / 'prometheus.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        exporter.shutdown()
        log.close()


def _provider(url: str, **extra: FactQuery) -> PrometheusProvider:
    queries = {
        "redundancy": FactQuery(REDUNDANCY, FRESHNESS),
        "utilisation": FactQuery(UTILISATION),
    }
    return PrometheusProvider(PrometheusConfig(url, {"link": {**queries, **extra}}))


def _incident(device: str, interface: str = "", component: str = "link") -> IncidentRef:
    return IncidentRef("", dt.datetime.now(dt.UTC), device, interface, component)


def test_redundancy_and_utilisation_from_the_incidents_names(prometheus: str) -> None:
    facts = _provider(prometheus).facts(_incident("leaf-07", "xe-1/0/3"), 2.0)
    assert facts["redundancy"].value == 2
    assert facts["redundancy"].source == "prometheus"
    age = facts["redundancy"].provenance(dt.datetime.now(dt.UTC)).age_seconds
    assert age is not None and 0 <= age < 30  # the newest scrape, seconds ago
    assert facts["utilisation"].value == pytest.approx(0.42)


def test_one_healthy_member_left_is_redundancy_zero(prometheus: str) -> None:
    facts = _provider(prometheus).facts(_incident("leaf-08"), 2.0)
    assert facts["redundancy"].value == 0
    assert "utilisation" not in facts  # no interface named: that template is not run


def test_unknown_device_component_or_query_leaves_facts_unknown(prometheus: str) -> None:
    assert _provider(prometheus).facts(_incident("leaf-99", "xe-0/0/0"), 2.0) == {}
    assert _provider(prometheus).facts(_incident("leaf-07", component="dns"), 2.0) == {}


def test_a_bad_query_raises_with_the_servers_reason(prometheus: str) -> None:
    bad = _provider(prometheus, redundancy=FactQuery("count(lag_member_up{"))
    with pytest.raises(Exception, match="bad_data"):
        bad.facts(_incident("leaf-07"), 2.0)


def test_names_are_escaped_into_promql_strings() -> None:
    tricky = _incident('leaf-1"} or vector(9) or {x="')
    query = render(REDUNDANCY, tricky)
    assert query == 'count(lag_member_up{device="leaf-1\\"} or vector(9) or {x=\\""} == 1) - 1'
