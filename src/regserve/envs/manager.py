"""EnvironmentManager: one uv-built virtualenv per environment key, built once, cached.

Builds of one key happen once even when several versions (or several regserve processes on
one data dir) ask at the same moment: an asyncio lock per key and a file lock beside it.
Builds of different keys run in parallel up to ``env_build_parallelism``. A build happens in
a temporary directory renamed into place when complete, so a crash never leaves a half-built
environment that looks usable. Least recently used environments that no served version uses
are evicted when the cache grows past ``env_cache_max_bytes``.

No code of a model's packages runs with regserve's privileges (docs/security.md#trust-model):
uv installs wheels as regserve (``--no-build``: installing a wheel runs nothing of it); when a
requirement must be built from source, the install is done again as the unprivileged builder
user (:meth:`regserve.sandbox.Isolation.builder`) with a cache of its own, and whatever the
build left running is stopped. The environment is then made read-only and open to all before
any worker uses it; the import check runs as the builder too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from regserve.envs.bytecode import (
    compile_command,
    link_bytecode,
    own_site_packages,
    site_packages,
)
from regserve.envs.interpreters import pick_interpreter
from regserve.envs.spec import EnvSpec
from regserve.errors import RegServeError
from regserve.sandbox import Isolation
from regserve.sandbox.environ import for_builds, installer_environment
from regserve.sandbox.files import make_readonly_tree, open_passage
from regserve.sandbox.users import BUILDER
from regserve.settings import Settings

__all__ = ["BuiltEnv", "EnvBuildError", "EnvironmentManager"]

_META = ".regserve-env.json"
_NO_BUILD = "Building source distributions is disabled"
"""uv's words when ``--no-build`` met a requirement that has no wheel."""
Progress = Callable[[str], Awaitable[None]]


class EnvBuildError(RegServeError):
    """The environment could not be built; the message carries the installer's own words."""

    error_code = "ENVIRONMENT_BUILD_FAILED"


@dataclass(frozen=True)
class BuiltEnv:
    key: str
    path: Path
    python: Path
    reused: bool
    seconds: float
    mlflow_version: str
    notes: tuple[str, ...] = ()


class EnvironmentManager:
    def __init__(self, settings: Settings, isolation: Isolation) -> None:
        self._settings = settings
        self._isolation = isolation
        self._builder = isolation.builder()
        """Where a package's own code runs during a build (its build, the import check)."""
        self._usable: dict[str, bool] = {}
        self.root = settings.env_cache_dir or settings.resolved_data_dir() / "envs"
        open_passage(self.root)
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots: asyncio.Semaphore | None = None
        self._users: dict[str, set[tuple[str, str]]] = {}
        self.worker_path = _materialize_worker(self.root)
        self._uv = str(Path(sys.executable).parent / "uv")

    # -- who uses what ---------------------------------------------------------------------

    def acquire(self, key: str, user: tuple[str, str]) -> None:
        self._users.setdefault(key, set()).add(user)

    def release(self, user: tuple[str, str]) -> None:
        for users in self._users.values():
            users.discard(user)

    # -- building --------------------------------------------------------------------------

    async def ensure(self, spec: EnvSpec, log: Path, progress: Progress) -> BuiltEnv:
        key = spec.key
        lock = self._locks.setdefault(key, asyncio.Lock())
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._settings.env_build_parallelism)
        async with lock:
            existing = self._load(key)
            if existing is not None:
                return existing
            await progress(f"Waiting for a build slot for environment {key}.")
            async with self._slots:
                built = await self._build_locked(spec, log, progress)
        await asyncio.to_thread(self._evict)
        return built

    def _load(self, key: str, reused: bool = True) -> BuiltEnv | None:
        meta_path = self.root / key / _META
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        path = self.root / key
        if not self._can_run(path / "bin" / "python"):  # built before workers had own users
            shutil.rmtree(path, ignore_errors=True)
            return None
        meta["last_used"] = time.time()
        with contextlib.suppress(OSError):
            meta_path.write_text(json.dumps(meta))
        return BuiltEnv(
            key,
            path,
            path / "bin" / "python",
            reused,
            meta.get("seconds", 0.0),
            meta.get("mlflow_version", ""),
            tuple(meta.get("notes", ())),
        )

    async def _build_locked(self, spec: EnvSpec, log: Path, progress: Progress) -> BuiltEnv:
        lock_path = self.root / f"{spec.key}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            existing = self._load(spec.key)  # another process may have built it meanwhile
            if existing is not None:
                return existing
            return await self._build(spec, log, progress)
        finally:
            os.close(fd)

    async def _build(self, spec: EnvSpec, log: Path, progress: Progress) -> BuiltEnv:
        interpreter, note = pick_interpreter(
            spec.python, self._settings.python_fallback == "nearest", self._can_run
        )
        if interpreter is None:
            raise EnvBuildError(note)
        started = time.monotonic()
        final = self.root / spec.key
        tmp = self.root / f"{spec.key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        requirements = tmp.with_suffix(".requirements.txt")
        requirements.write_text("\n".join(spec.requirements) + "\n")
        try:
            await progress(f"Creating a Python {interpreter.label} environment ({spec.key}).")
            await self._run(
                log,
                "uv venv",
                [
                    self._uv,
                    "venv",
                    "--python",
                    str(interpreter.path),
                    "--no-project",
                    "--no-config",
                    str(tmp),
                ],
            )
            count = len(spec.requirements)
            await progress(f"Installing {count} requirements from {spec.source} with uv.")
            await self._install(tmp, requirements, log, progress)
            await asyncio.to_thread(make_readonly_tree, tmp)
            await self._compile(tmp, log, progress)
            mlflow_version = await self._verify(tmp, log)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            requirements.unlink(missing_ok=True)
        seconds = round(time.monotonic() - started, 2)
        meta = {
            "key": spec.key,
            "python": interpreter.label,
            "requirements": list(spec.requirements),
            "mlflow_version": mlflow_version,
            "seconds": seconds,
            "built_at": time.time(),
            "last_used": time.time(),
            "size": _size(tmp),
            "notes": [note] if note else [],
        }
        (tmp / _META).write_text(json.dumps(meta))
        os.replace(tmp, final) if not final.exists() else shutil.rmtree(tmp)
        built = self._load(spec.key, reused=False)
        assert built is not None
        return BuiltEnv(
            built.key, built.path, built.python, False, seconds, mlflow_version, built.notes
        )

    def _index_args(self) -> list[str]:
        args: list[str] = []
        if self._settings.package_index_url:
            args += ["--index-url", self._settings.package_index_url]
        for url in self._settings.extra_index_urls:
            args += ["--extra-index-url", url]
        return args

    async def _install(
        self, env_dir: Path, requirements: Path, log: Path, progress: Progress
    ) -> None:
        """``uv pip install``: wheels only as regserve, then, if something must be built from
        source, again as the unprivileged builder (see the module's docstring)."""
        argv = [
            self._uv,
            "pip",
            "install",
            "--python",
            str(env_dir / "bin" / "python"),
            "--no-config",
            "-r",
            str(requirements),
            *self._index_args(),
        ]
        if self._builder.user is None:  # workers run as regserve's user: nothing to protect
            await self._run(log, "uv pip install", argv)
            return
        try:
            await self._run(log, "uv pip install", [*argv, "--no-build"])
            return
        except EnvBuildError as exc:
            if _NO_BUILD not in exc.message:
                raise
        await progress("Building requirements from source as the unprivileged builder user.")
        user = self._builder.user
        requirements_copy = env_dir / ".regserve-requirements.txt"
        shutil.copyfile(requirements, requirements_copy)
        await asyncio.to_thread(_chown_tree, env_dir, user.uid, user.gid)
        cache = self._builder.home / "uv-cache"
        self._builder.prepare(cache)
        argv[argv.index(str(requirements))] = str(requirements_copy)
        env = {**self._builder.environment(None, None), **for_builds(), "UV_CACHE_DIR": str(cache)}
        try:
            await self._run(log, "uv pip install (builds)", self._builder.command(argv), env)
        finally:
            await asyncio.to_thread(self._isolation.kill_all, BUILDER)
            requirements_copy.unlink(missing_ok=True)

    async def _compile(self, env_dir: Path, log: Path, progress: Progress) -> None:
        """Bytecode for every module of the environment (``envs/bytecode.py``): linked from
        regserve's own where it is the same file, compiled for the rest. A module that does not
        compile is left to its import (the log says which)."""
        site = site_packages(env_dir)
        if site is None:
            return
        linked = 0
        if site.parent.name == f"python{sys.version_info[0]}.{sys.version_info[1]}":
            linked = await asyncio.to_thread(link_bytecode, site, own_site_packages())
        await progress(f"Compiling bytecode ({linked} modules already compiled by regserve's).")
        await self._run(
            log, "compile bytecode", compile_command(env_dir / "bin" / "python", site), check=False
        )

    def _can_run(self, python: Path) -> bool:
        """Whether the workers' users can start ``python`` (always, without users of their own)."""
        if self._builder.user is None:
            return True
        key = str(python)
        if key not in self._usable:
            self._usable[key] = self._builder.can_run(python)
        return self._usable[key]

    async def _run(
        self,
        log: Path,
        what: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> None:
        """Run an installer step, its output appended to the version's log (EnvBuildError when
        it fails, unless not ``check``)."""
        env = {**(env or installer_environment()), "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
        env.pop("VIRTUAL_ENV", None)
        tail: deque[str] = deque(maxlen=25)
        with log.open("ab") as out:
            out.write(f"[environment] $ {' '.join(argv)}\n".encode())
            out.flush()
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
            assert process.stdout is not None
            async for raw in process.stdout:
                out.write(b"[environment] " + raw)
                tail.append(raw.decode("utf-8", "replace").rstrip())
            code = await process.wait()
        if code != 0 and check:
            detail = "\n".join(line for line in tail if line.strip())
            raise EnvBuildError(f"{what} failed (exit code {code}):\n{detail}")

    async def _verify(self, env_dir: Path, log: Path) -> str:
        """Import the worker inside the new environment; the MLflow version it holds."""
        script = "import mlflow, regserve.worker.server; print(mlflow.__version__)"
        python = env_dir / "bin" / "python"
        self._builder.prepare()
        process = await asyncio.create_subprocess_exec(
            *self._builder.command([str(python), "-c", script]),
            env=self._builder.environment(python.parent, self.worker_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode("utf-8", "replace").strip()
        with log.open("ab") as out:
            out.write(f"[environment] worker import check: {text[-2000:]}\n".encode())
        if process.returncode != 0:
            raise EnvBuildError(
                f"The environment was built but the worker cannot run in it:\n{text[-1500:]}"
            )
        return text.splitlines()[-1] if text else ""

    # -- the cache -------------------------------------------------------------------------

    def cached(self) -> list[dict[str, Any]]:
        entries = []
        for meta_path in self.root.glob(f"*/{_META}"):
            with contextlib.suppress(OSError, ValueError):
                entries.append(json.loads(meta_path.read_text()))
        return entries

    def _evict(self) -> None:
        entries = sorted(self.cached(), key=lambda m: m.get("last_used", 0))
        total = sum(int(m.get("size", 0)) for m in entries)
        for meta in entries:
            if total <= self._settings.env_cache_max_bytes:
                return
            if self._users.get(meta["key"]):
                continue
            shutil.rmtree(self.root / meta["key"], ignore_errors=True)
            total -= int(meta.get("size", 0))


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _materialize_worker(root: Path) -> Path:
    """A directory holding only ``regserve.worker`` (and a stub package), for PYTHONPATH.

    The worker is put on the environment's path, never installed into it; only the worker's
    own modules are exposed, so a model environment never sees regserve's dependencies.
    """
    package = resources.files("regserve.worker")
    sources = {p.name: p.read_bytes() for p in package.iterdir() if p.name.endswith(".py")}
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(sources.items())))
    target = root / "_worker" / digest.hexdigest()[:16]
    open_passage(target.parent)
    if not (target / "regserve" / "worker" / "__init__.py").exists():
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        (tmp / "regserve" / "worker").mkdir(parents=True, exist_ok=True)
        (tmp / "regserve" / "__init__.py").write_text(
            '"""regserve\'s worker, for a model environment."""\n'
        )
        for name, data in sources.items():
            (tmp / "regserve" / "worker" / name).write_bytes(data)
        make_readonly_tree(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process put it there first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    """Hand a half-built environment to the builder (it is made regserve's again after)."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
