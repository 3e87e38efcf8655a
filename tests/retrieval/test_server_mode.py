"""The same ingest and search against a real ``chroma run`` server on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.ingest import ingest_folder
from retrieval.search import HybridSearcher, Method
from retrieval.store import ChunkStore, chroma_client
from tests.conftest import PLAYBOOKS

QUERIES = [
    "CRC errors on leaf-12 eth1/3",
    "BGP session to spine-2 is down",
    "disk almost full on web-3",
    "certificate expiring next week",
    "server not answering ssh, console shows soft lockup",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(sys.executable).parent / "chroma"
    if not binary.exists():
        binary = Path(shutil.which("chroma") or "")
    if not binary.is_file():
        pytest.skip("the `chroma` command is not installed with chromadb")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(binary),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start: {(data / 'server.log').read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_server_and_embedded_give_the_same_results(
    chroma_server: str, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    folder = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, folder, ignore=shutil.ignore_patterns("policies"))
    embedded = ChunkStore(chroma_client(tmp_path / "embedded"), embedder)
    server = ChunkStore(chroma_client(url=chroma_server), embedder)
    ingest_folder(folder, embedded, embedder)
    report = ingest_folder(folder, server, embedder)
    assert report.chunks_written == embedded.count() == server.count()
    assert not ingest_folder(folder, server, embedder).changed  # idempotent on the server too

    a, b = HybridSearcher(embedded, embedder), HybridSearcher(server, embedder)
    for query in QUERIES:
        for method in Method:
            left = [(h.doc_id, round(h.cosine, 4)) for h in a.search(query, 5, method)]
            right = [(h.doc_id, round(h.cosine, 4)) for h in b.search(query, 5, method)]
            assert left == right, (query, method)


def test_a_bad_server_url_is_rejected() -> None:
    with pytest.raises(ValueError, match="NPO_CHROMA_URL"):
        chroma_client(url="chroma.internal:8000")
