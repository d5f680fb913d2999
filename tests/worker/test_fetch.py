"""A Ray replica's fetch of its version's files (``worker/fetch.py``) from a real HTTP server
that sends the archive the gateway sends (``archive_chunks``), or breaks it on purpose: the
node's cache, what never counts as cached, refusals and retries."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from regserve.worker.fetch import (
    FILES_PATH,
    FetchError,
    FileSource,
    archive_chunks,
    fetch_files,
    files_fingerprint,
)

CREDENTIAL = "rsvf1.test.credential"


@dataclass
class Gateway:
    """Answers the files route from ``model`` (and counts), as ``behaviour`` says."""

    model: Path
    behaviour: list[str] = field(default_factory=lambda: ["ok"])
    """One per request (the last repeats): ok, cut, 403, 503, other (another model's files)."""
    other: Path | None = None
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append(handler.path)
        assert handler.headers["Authorization"] == f"Bearer {CREDENTIAL}"
        assert handler.path.startswith(f"{FILES_PATH}?name=iris&version=3")
        what = self.behaviour[min(len(self.requests), len(self.behaviour)) - 1]
        if what in ("403", "503"):
            body = json.dumps({"error_code": "PERMISSION_DENIED", "message": "not yours"})
            handler.send_response(int(what))
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body.encode())
            return
        archive = b"".join(archive_chunks(self.other if what == "other" else self.model))
        length = len(archive)
        if what == "cut":  # the connection drops halfway
            archive = archive[: length // 2]
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.wfile.write(archive)
        handler.close_connection = True


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "regserve-copy"
    (root / "artifacts" / "nested").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "artifacts" / "weights.bin").write_bytes(bytes(range(256)) * 5000)  # > 1 MiB
    (root / "artifacts" / "nested" / "é.txt").write_text("accents survive\n")
    (root / "link").symlink_to("/etc/passwd")  # left out: never followed
    return root


@pytest.fixture
def gateway(model: Path) -> Iterator[Gateway]:
    state = Gateway(model)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _source(gateway: Gateway, cache: Path, wait: float = 5.0) -> FileSource:
    fingerprint = files_fingerprint(gateway.model)
    return FileSource(gateway.url, CREDENTIAL, "iris", "3", fingerprint, str(cache), wait)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_fetched_once_per_node_then_found_in_its_cache(gateway: Gateway, tmp_path: Path) -> None:
    source = _source(gateway, tmp_path / "cache")
    path, how = fetch_files(source)
    assert how.startswith(f"fetched from {gateway.url} ("), how
    expected = {k: v for k, v in _files(gateway.model).items() if k != "link"}
    assert _files(path) == expected
    assert not (path / "link").exists()
    assert path.parent.parent == tmp_path / "cache"
    for private in (tmp_path / "cache", path.parent, path):  # the node user's alone
        assert private.stat().st_mode & 0o077 == 0, private
    assert path.name == f"v3-{source.fingerprint}"
    # a second replica on the node: no request
    again, how = fetch_files(FileSource.from_json(source.to_json()))
    assert (again, how) == (path, "found in this node's cache")
    assert len(gateway.requests) == 1


def test_replicas_starting_together_download_once(gateway: Gateway, tmp_path: Path) -> None:
    source = _source(gateway, tmp_path / "cache")
    found: list[tuple[Path, str]] = []
    threads = [threading.Thread(target=lambda: found.append(fetch_files(source))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({path for path, _ in found}) == 1
    assert len(gateway.requests) == 1
    assert sum(how.startswith("fetched") for _, how in found) == 1


def test_a_download_cut_short_is_never_cached(gateway: Gateway, tmp_path: Path) -> None:
    gateway.behaviour = ["cut"]
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match=r"within 2 s"):
        fetch_files(_source(gateway, cache, wait=2.0))
    assert len(gateway.requests) >= 2  # tried again
    (model_dir,) = cache.iterdir()
    assert [p.name for p in model_dir.iterdir() if not p.name.endswith(".lock")] == []
    gateway.behaviour = ["ok"]
    path, how = fetch_files(_source(gateway, cache))
    assert how.startswith("fetched"), how
    assert (path / "MLmodel").read_text() == "flavors: {}\n"


def test_files_that_are_not_regserve_s_copy_are_refused(gateway: Gateway, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "MLmodel").write_text("flavors: {changed: true}\n")
    gateway.other, gateway.behaviour = other, ["other"]
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="not regserve's copy"):
        fetch_files(_source(gateway, cache))
    assert [p.name for p in next(cache.iterdir()).iterdir() if not p.name.endswith(".lock")] == []


def test_a_refusal_is_not_retried_and_says_why(gateway: Gateway, tmp_path: Path) -> None:
    gateway.behaviour = ["403"]
    with pytest.raises(FetchError, match=r"\(403\): PERMISSION_DENIED: not yours") as caught:
        fetch_files(_source(gateway, tmp_path / "cache"))
    assert CREDENTIAL not in str(caught.value)
    assert len(gateway.requests) == 1


def test_an_unavailable_gateway_is_waited_for(gateway: Gateway, tmp_path: Path) -> None:
    gateway.behaviour = ["503", "ok"]
    path, how = fetch_files(_source(gateway, tmp_path / "cache"))
    assert how.startswith("fetched"), how
    assert len(gateway.requests) == 2
    assert (path / "MLmodel").is_file()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../escape", tarfile.REGTYPE), ("/etc/cron.d/x", tarfile.REGTYPE), ("ln", tarfile.SYMTYPE)],
)
def test_an_archive_reaching_outside_or_holding_links_is_refused(
    tmp_path: Path, name: str, kind: bytes
) -> None:
    from regserve.worker import fetch

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, "/etc/passwd"
        archive.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    (tmp_path / "into").mkdir()
    with pytest.raises(FetchError):
        fetch._unpack(buffer, tmp_path / "into")
    assert list((tmp_path / "into").iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_the_fingerprint_covers_names_sizes_and_contents(model: Path) -> None:
    before = files_fingerprint(model)
    change: list[Callable[[], object]] = [
        lambda: (model / "MLmodel").write_text("flavors: {x: 1}\n"),
        lambda: (model / "MLmodel").rename(model / "MLmodel2"),
        lambda: (model / "extra").write_text(""),
    ]
    seen = {before}
    for step in change:
        step()
        seen.add(files_fingerprint(model))
    assert len(seen) == 4
