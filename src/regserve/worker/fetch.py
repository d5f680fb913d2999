"""A version's model files for a Ray replica on any node: fetched from regserve's gateway and
kept in a cache on the node, never read from regserve's data dir.

One page for both ends of the transfer, as ``wire.py`` is for the socket protocol:

- **the archive** (:data:`FILES_PATH`, written by the gateway with :func:`archive_chunks`,
  read by the replica in :func:`fetch_files`): a tar stream (POSIX pax) of the version's
  regular files, relative names only. Symbolic links and other special files are left out;
  a member that is not a regular file or directory, or whose name is absolute or climbs out
  (``..``), is refused by the reader.
- **the fingerprint** (:func:`files_fingerprint`): SHA-256 over each regular file's relative
  path, size and content digest, in sorted order. The backend computes it from regserve's copy
  and hands it to the replica; it names the cache entry, and the replica computes it again over
  what it received: a download cut short or altered is never used.
- **the cache**: ``<cache dir>/<model key>/v<version>-<fingerprint>``, where the cache dir is
  the one configured (``REGSERVE_RAY_MODEL_CACHE``) or ``<the Ray node's temp dir>/
  regserve-models``. A download goes to a temporary directory beside the entry and is renamed
  into place only once complete and checked, so a partial download never counts as cached. A
  lock file per entry (``flock``) makes a second replica on the node wait for the first one's
  download and use it rather than download again.

The credential (``FileSource.credential``) is regserve's, scoped to this model and version
(``regserve/auth/file_grants.py``); it is sent as ``Authorization: Bearer`` to this route only.
Standard library only: this runs in the version's environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

__all__ = [
    "FILES_PATH",
    "FetchError",
    "FileSource",
    "archive_chunks",
    "fetch_files",
    "files_fingerprint",
]

FILES_PATH = "/api/2.0/regserve/version-files"
"""The gateway's route that sends a served version's files as a tar stream."""
_CHUNK = 1024 * 1024
_BLOCK = 512
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_READ_TIMEOUT = 60.0
_MAX_BACKOFF = 5.0
_log = logging.getLogger("regserve.worker")


class FetchError(Exception):
    """The version's files could not be fetched; the message says why (no credential in it)."""


@dataclass(frozen=True)
class FileSource:
    """Where a replica gets its version's files: handed to it by the backend as JSON."""

    url: str
    """regserve's gateway as the nodes reach it (``http://host:port``)."""
    credential: str
    """Reads this version's files and nothing else (never logged)."""
    model: str
    version: str
    fingerprint: str
    """:func:`files_fingerprint` of regserve's copy."""
    cache_dir: str = ""
    """Where the node keeps fetched files; empty: ``<the Ray node's temp dir>/regserve-models``."""
    wait_seconds: float = 120.0
    """How long the replica keeps trying while the gateway cannot be reached or answers 5xx."""

    def to_json(self) -> dict[str, str | float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FileSource:
        try:
            return cls(
                **{k: str(data[k]) for k in ("url", "credential", "model", "version")},
                fingerprint=str(data["fingerprint"]),
                cache_dir=str(data.get("cache_dir") or ""),
                wait_seconds=float(str(data.get("wait_seconds", 120.0))),
            )
        except (KeyError, ValueError) as exc:
            raise FetchError(f"The replica's file source is incomplete: {exc}") from None

    def files_url(self) -> str:
        query = urllib.parse.urlencode({"name": self.model, "version": self.version})
        return f"{self.url.rstrip('/')}{FILES_PATH}?{query}"


# -- both ends ---------------------------------------------------------------------------------


def model_files(root: Path) -> list[tuple[str, Path]]:
    """The regular files under ``root`` (symbolic links not followed nor included), as
    (relative POSIX name, path), sorted by name."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def files_fingerprint(root: Path) -> str:
    """SHA-256 over each regular file's relative name, size and content digest."""
    digest = hashlib.sha256()
    for name, path in model_files(root):
        content = hashlib.sha256()
        size = 0
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                content.update(chunk)
                size += len(chunk)
        digest.update(f"{json.dumps(name)}\0{size}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


def archive_chunks(root: Path) -> Iterator[bytes]:
    """The tar stream of ``root``'s regular files, in pieces of at most 1 MiB (blocking I/O:
    iterate it in a thread). A file that shrinks while it is read ends the stream early: the
    reader sees a broken archive (and a fingerprint that does not match), never a short file."""
    for name, path in model_files(root):
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, 0
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            left = size
            while left:
                chunk = file.read(min(_CHUNK, left))
                if not chunk:
                    raise OSError(f"{name} shrank while it was sent")
                left -= len(chunk)
                yield chunk
        if size % _BLOCK:
            yield b"\0" * (_BLOCK - size % _BLOCK)
    yield b"\0" * (2 * _BLOCK)


# -- the replica's end -------------------------------------------------------------------------


def fetch_files(source: FileSource) -> tuple[Path, str]:
    """The local directory holding the version's files on this node, and how it got there
    (for the replica's log). Raises FetchError."""
    root = Path(source.cache_dir) if source.cache_dir else _default_cache_dir()
    entry = root / _model_key(source.model) / f"v{_safe(source.version)}-{source.fingerprint}"
    if entry.is_dir():
        return entry, "found in this node's cache"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)  # the node user's alone
    entry.parent.mkdir(exist_ok=True, mode=0o700)
    with _locked(entry.with_name(f".{entry.name}.lock")):
        if entry.is_dir():  # another replica on this node fetched it while we waited
            return entry, "found in this node's cache (fetched by another replica meanwhile)"
        for stale in entry.parent.glob(f".{entry.name}.part-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a download cut short by a dead process
        started = time.monotonic()
        part = Path(tempfile.mkdtemp(prefix=f".{entry.name}.part-", dir=entry.parent))
        try:
            received = _download(source, part)
            got = files_fingerprint(part)
            if got != source.fingerprint:
                raise FetchError(
                    f"The files received for version {source.version} of '{source.model}' are "
                    f"not regserve's copy (fingerprint {got[:16]}, expected "
                    f"{source.fingerprint[:16]}): the download was cut short or the files "
                    "changed; the replica will try again when Ray restarts it."
                )
            os.rename(part, entry)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
    seconds = time.monotonic() - started
    return entry, f"fetched from {source.url} ({received} bytes in {seconds:.2f} s)"


def _download(source: FileSource, into: Path) -> int:
    """Unpack the archive into ``into``, trying again (1 s, 2 s, ... 5 s apart) while the
    gateway cannot be reached or answers a 5xx, up to ``source.wait_seconds``."""
    deadline = time.monotonic() + source.wait_seconds
    pause = 1.0
    while True:
        try:
            return _download_once(source, into)
        except _Retryable as exc:
            if time.monotonic() + pause > deadline:
                raise FetchError(
                    f"Could not fetch the files of version {source.version} of "
                    f"'{source.model}' from {source.url} within {source.wait_seconds:g} s: "
                    f"{exc}"
                ) from None
            _log.warning("fetching the model's files: %s; trying again in %.0f s", exc, pause)
            shutil.rmtree(into)
            into.mkdir(mode=0o700)
            time.sleep(pause)
            pause = min(pause * 2, _MAX_BACKOFF)


class _Retryable(Exception):
    pass


def _download_once(source: FileSource, into: Path) -> int:
    headers = {"Authorization": f"Bearer {source.credential}", "Accept": "application/x-tar"}
    request = urllib.request.Request(source.files_url(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_READ_TIMEOUT) as response:
            counted = _Counted(response)
            _unpack(cast("IO[bytes]", counted), into)  # tarfile only calls read()
            return counted.count
    except urllib.error.HTTPError as exc:
        reason = _error_text(exc)
        if exc.code in _RETRYABLE:
            raise _Retryable(f"{exc.code} {reason}") from None
        raise FetchError(
            f"regserve refused the files of version {source.version} of '{source.model}' "
            f"({exc.code}): {reason}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, tarfile.TarError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None


def _unpack(stream: IO[bytes], into: Path) -> None:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            target = _member_path(into, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise FetchError(f"The archive holds '{member.name}', which is not a file.")
            target.parent.mkdir(parents=True, exist_ok=True)
            content = archive.extractfile(member)
            assert content is not None  # a regular file
            with target.open("xb") as out:
                shutil.copyfileobj(content, out, _CHUNK)


def _member_path(root: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", "") for p in parts):
        raise FetchError(f"The archive names '{name}', outside the model's directory.")
    return root.joinpath(*parts)


class _Counted:
    """A response read through, counting its bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


def _error_text(error: urllib.error.HTTPError) -> str:
    """regserve's ``message`` from an error answer (its body), else the status's reason."""
    with contextlib.suppress(Exception):
        body = json.loads(error.read(64 * 1024))
        if isinstance(body, dict) and body.get("message"):
            return f"{body.get('error_code', '')}: {body['message']}".lstrip(": ")
    return str(error.reason)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        yield


def _default_cache_dir() -> Path:
    """``<the Ray node's temp dir>/regserve-models``: the replica runs in a Ray worker, which
    has imported Ray already (nothing is imported here); else the system's temp dir."""
    ray = sys.modules.get("ray")
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    with contextlib.suppress(Exception):
        if node is not None:
            return Path(node.get_temp_dir_path()) / "regserve-models"
    return Path(tempfile.gettempdir()) / f"regserve-models-{os.getuid()}"


def _model_key(model: str) -> str:
    readable = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in model)
    digest = hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable[:40]}-{digest}"


def _safe(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in text)[:40]
