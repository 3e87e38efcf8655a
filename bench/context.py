"""``python -m bench.context``: how long gathering an incident's context takes.

Starts a small exporter and Debian's ``prometheus`` on loopback (scraping it every second),
writes a weekly maintenance calendar, and builds the providers from a context
configuration as the bot does (labels, two PromQL facts for ``link``, the calendar). Then
gathers the context of ``--incidents`` incidents one after another and reports the wall
time per incident (median, p95, max) against the budget, and how many incidents lost a
fact to the budget. Needs the ``prometheus`` binary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bot.context.config import build_gatherer, load_config
from bot.context.facts import IncidentRef

DEVICES = 200


def _metrics() -> bytes:
    lines = ["# TYPE lag_member_up gauge", "# TYPE iface_util_ratio gauge"]
    for d in range(DEVICES):
        for m in range(4):
            lines.append(f'lag_member_up{{device="leaf-{d}",member="et-0/0/{m}"}} {int(m != 3)}')
        lines.append(f'iface_util_ratio{{device="leaf-{d}",interface="xe-1/0/3"}} 0.{d % 10}')
    return ("\n".join(lines) + "\n").encode()


class _Exporter(BaseHTTPRequestHandler):
    body = _metrics()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//npo//bench//EN
BEGIN:VEVENT
UID:weekly@npo
DTSTART:20260106T020000Z
DTEND:20260106T040000Z
RRULE:FREQ=WEEKLY;BYDAY=TU
SUMMARY:Fabric maintenance
END:VEVENT
END:VCALENDAR
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=300)
    parser.add_argument("--budget-ms", type=float, default=300.0)
    args = parser.parse_args()
    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (apt-get install prometheus)", file=sys.stderr)
        return 2
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    folder = Path(tempfile.mkdtemp(prefix="npo-bench-context-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: fabric\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n"
    )
    (folder / "maintenance.ics").write_text(ICS)
    (folder / "context.yml").write_text(
        f"budget_ms: {args.budget_ms}\n"
        f"prometheus:\n  url: http://127.0.0.1:{port}\n  components:\n    link:\n"
        "      redundancy:\n"
        "        query: 'count(lag_member_up{device=\"$device\"} == 1) - 1'\n"
        "        freshness: 'max(timestamp(lag_member_up{device=\"$device\"}))'\n"
        '      utilisation: \'max(iface_util_ratio{device="$device", interface="$interface"})\'\n'
        "maintenance:\n  calendar: maintenance.ics\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": "count(lag_member_up)"},
                    timeout=1,
                )
                if r.json()["data"]["result"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        gatherer = build_gatherer(load_config(folder / "context.yml"))
        times, short = [], 0
        for i in range(args.incidents):
            ref = IncidentRef(
                "flapping", dt.datetime.now(dt.UTC), f"leaf-{i % DEVICES}", "xe-1/0/3", "link"
            )
            got = gatherer.gather(ref)
            times.append(got.elapsed_ms)
            short += len(got.facts) < 3
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        print(
            f"context gather, {args.incidents} incidents, 3 providers (labels, prometheus "
            f"2 queries + freshness, calendar), budget {args.budget_ms:.0f} ms:\n"
            f"  median {statistics.median(times):.1f} ms  p95 {p95:.1f} ms  "
            f"max {times[-1]:.1f} ms  incidents missing a fact: {short}"
        )
        gatherer.close()
    finally:
        proc.terminate()
        proc.wait(10)
        exporter.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
