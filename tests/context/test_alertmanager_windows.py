"""Maintenance windows read from a real Alertmanager's API (Debian's package)."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.context.facts import IncidentRef
from bot.context.windows import AlertmanagerWindows, WindowConfigError, WindowProvider

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = """
route: {receiver: nobody}
receivers: [{name: nobody}]
time_intervals:
  - name: weekly-maintenance
    time_intervals:
      - weekdays: ['tuesday']
        times: [{start_time: '02:00', end_time: '04:00'}]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install it)")
    folder: Path = tmp_path_factory.mktemp("alertmanager")
    (folder / "am.yml").write_text(CONFIG)
    port = _free_port()
    log = (folder / "am.log").open("w")
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={folder / 'am.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {(folder / 'am.log').read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_windows_come_from_the_loaded_configuration(alertmanager: str) -> None:
    windows = AlertmanagerWindows(alertmanager, ["weekly-maintenance"])
    tuesday = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)
    assert windows.in_window(tuesday) is True
    assert windows.next_opening(tuesday) == dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)
    fact = WindowProvider(windows, "alertmanager").facts(IncidentRef("", tuesday), 1.0)
    assert fact["maintenance_window"].value is True
    assert fact["maintenance_window"].source == "alertmanager"
    assert fact["maintenance_window"].observed_at == windows.loaded_at


def test_a_missing_interval_name_is_an_error_naming_it(alertmanager: str) -> None:
    with pytest.raises(WindowConfigError, match="nightly"):
        AlertmanagerWindows(alertmanager, ["nightly"]).in_window(dt.datetime.now(dt.UTC))


def test_an_unreachable_alertmanager_raises() -> None:
    """The gatherer then logs why and leaves the window unknown."""
    port = _free_port()  # nothing listens there
    with pytest.raises(httpx.ConnectError):
        AlertmanagerWindows(f"http://127.0.0.1:{port}", ["x"]).in_window(dt.datetime.now(dt.UTC))
