"""Isolation: how the processes that run a model's code are kept from everything else.

A model's code (a pyfunc's ``load_context``/``predict``, a flavor's pickles, its environment's
packages) is not trusted: whoever may register a version gets it run. So every process that runs
such code (a worker, a template, an environment check) is started through a :class:`Sandbox`:

- its environment is an allow-list (:mod:`.environ`): no server secret reaches it;
- when regserve may change user (root, or the capabilities in :data:`NEEDED_CAPABILITIES`),
  it runs as the model's own unprivileged user (:mod:`.users`), which cannot read regserve's
  state, registry, secrets, logs or other models' files (:mod:`.files`), cannot connect to
  another model's workers (their sockets are in directories of their own users, and workers
  accept only regserve's uid), and cannot signal regserve or another model's processes;
- the processes and threads of that user are capped (``REGSERVE_CLUSTER_MAX_PIDS``);
- with the cluster tag ``regserve.network=none`` it has a network namespace with only the
  loopback interface: it can reach no host, nor this one's ports.

``REGSERVE_WORKER_USERS``: ``auto`` (the default) isolates when it can and says so when it
cannot (a warning at start, an event per cluster); ``on`` refuses to start without it; ``off``
runs workers as regserve's own user (the environment is scrubbed all the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regserve.errors import InvalidParameterError
from regserve.sandbox import launcher
from regserve.sandbox.environ import read_model_env, worker_environment
from regserve.sandbox.files import grant_tree, lock_down, make_private_dir, open_passage
from regserve.sandbox.users import BUILDER, WorkerUser, WorkerUsers, parse_uid_range
from regserve.settings import Settings

__all__ = [
    "NEEDED_CAPABILITIES",
    "NETWORK_TAG",
    "Isolation",
    "IsolationUnavailableError",
    "Sandbox",
    "missing_privileges",
    "parse_network",
]

_log = logging.getLogger("regserve.sandbox")

NETWORK_TAG = "regserve.network"
NEEDED_CAPABILITIES = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    3: "CAP_FOWNER",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
}
"""What regserve needs to run workers as other users, give them their files and stop them."""
_LAUNCHER = Path(launcher.__file__)


class IsolationUnavailableError(RuntimeError):
    """``REGSERVE_WORKER_USERS=on`` where regserve cannot change user."""


def parse_network(value: str) -> bool:
    """The tag's value: True for the host's network (``host``), False for none (``none``)."""
    normalized = value.strip().lower()
    if normalized not in ("none", "host"):
        raise InvalidParameterError(
            f"Tag {NETWORK_TAG} must be 'none' (the workers get only a loopback interface: no "
            f"network at all) or 'host' (the machine's network, the default); got '{value}'."
        )
    return normalized == "host"


def missing_privileges() -> list[str]:
    """The capabilities this process lacks to isolate workers (empty: it has them all)."""
    effective = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                effective = int(line.split()[1], 16)
    return [name for bit, name in NEEDED_CAPABILITIES.items() if not effective >> bit & 1]


@dataclass(frozen=True)
class Sandbox:
    """How the processes of one model (or of an environment build) are started."""

    home: Path
    user: WorkerUser | None
    """The model's own user; None: regserve's (isolation is off or unavailable)."""
    network: bool = True
    """False: a network namespace with only the loopback interface."""
    max_pids: int | None = None
    """RLIMIT_NPROC of ``user`` (only with a user of its own: else it would count regserve's)."""
    model_env: Mapping[str, str] = field(default_factory=dict)
    passed: tuple[str, ...] = ()

    @property
    def peer_uid(self) -> int:
        """The only uid (besides root) a worker accepts connections from: regserve's."""
        return os.geteuid()

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` started through the launcher when there is something to set up."""
        options: list[str] = []
        if self.user is not None:
            options += ["--uid", str(self.user.uid), "--gid", str(self.user.gid)]
            if self.max_pids is not None:
                options += ["--max-pids", str(self.max_pids)]
        if not self.network:
            options += ["--network", "none"]
        if not options:
            return argv
        return [
            sys.executable,
            "-I",
            "-S",
            str(_LAUNCHER),
            *options,
            "--home",
            str(self.home),
            "--",
            *argv,
        ]

    def environment(self, bin_dir: Path | None, pythonpath: Path | None) -> dict[str, str]:
        user = self.user.name if self.user is not None else _own_user_name()
        return worker_environment(
            home=self.home,
            user=user,
            bin_dir=bin_dir,
            pythonpath=pythonpath,
            passed=self.passed,
            model_env=self.model_env,
        )

    def prepare(self, *private_dirs: Path) -> None:
        """The home, its tmp and ``private_dirs`` (a socket directory) exist and are the user's."""
        uid, gid = (self.user.uid, self.user.gid) if self.user else (os.geteuid(), os.getegid())
        for path in (self.home, self.home / "tmp", *private_dirs):
            make_private_dir(path, uid, gid)

    def run(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
        """``argv`` started in this sandbox and waited for, its output captured."""
        self.prepare()
        return subprocess.run(
            self.command(argv),
            env=self.environment(None, None),
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def can_run(self, python: Path | str, code: str = "pass", site: bool = False) -> bool:
        """Whether ``python`` starts here (its files reachable by this sandbox's user) and
        runs ``code`` (isolated mode; without site-packages unless ``site``)."""
        flags = ["-I"] if site else ["-I", "-S"]
        try:
            return self.run([str(python), *flags, "-c", code], timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def describe(self) -> str:
        """How its processes run, for the cluster's events ("as user 61234, no network")."""
        who = f"as user {self.user.uid}" if self.user else "as regserve's own user"
        return who if self.network else f"{who}, no network"


class Isolation:
    """The isolation of one regserve process's workers (see the module's docstring)."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self._settings = settings
        self._data_dir = data_dir
        self._homes = data_dir / "homes"
        self._env_dir = settings.model_env_dir or data_dir / "model-env"
        wanted = settings.worker_users
        obstacle = _obstacle(data_dir)
        if wanted == "on" and obstacle:
            raise IsolationUnavailableError(
                f"REGSERVE_WORKER_USERS=on, but workers cannot run as users of their own: "
                f"{obstacle}"
            )
        self.enabled = wanted != "off" and not obstacle
        self.why_not = "REGSERVE_WORKER_USERS=off" if wanted == "off" else obstacle
        self.users = (
            WorkerUsers(
                data_dir, parse_uid_range(settings.worker_uid_range), settings.worker_uid_claims
            )
            if self.enabled
            else None
        )

    def start(self) -> None:
        """Lock the data dir down and read the models' users; log what isolation there is."""
        os.umask(0o077)
        lock_down(self._data_dir)
        open_passage(self._homes)
        self._env_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.users is not None:
            self.users.start()
            uids = self._settings.worker_uid_range
            _log.info("workers run as users of their own (uids %s)", uids)
        else:
            _log.warning("%s", self.warning())

    def warning(self) -> str:
        """What is not isolated, when isolation is off ("" when it is on)."""
        if self.enabled:
            return ""
        return (
            f"Workers run as regserve's own user ({self.why_not}): a model's code cannot see "
            "regserve's secrets (its environment is scrubbed), but it can read regserve's data "
            "dir and other models' files and reach their workers. Run regserve as root (or "
            "with CAP_SETUID and CAP_SETGID) so that each model gets a user of its own; see "
            "docs/security.md#trust-model."
        )

    def sandbox_for(self, model_name: str, network: bool = True) -> Sandbox:
        """How ``model_name``'s workers are started (its user, limits, network, variables).

        Raises InvalidParameterError for a bad model env file, and for no ``network``
        (``regserve.network=none``) where regserve cannot make a namespace.
        """
        if not network and not self.enabled:
            raise InvalidParameterError(
                f"{NETWORK_TAG}=none needs regserve to run as root (a network namespace per "
                f"cluster); here {self.why_not}."
            )
        try:
            model_env = read_model_env(self._env_dir, model_name)
        except ValueError as exc:
            raise InvalidParameterError(f"The model's env file cannot be used: {exc}") from exc
        user = self.users.user_for(model_name) if self.users is not None else None
        return Sandbox(
            self._homes / _digest(model_name),
            user,
            network,
            self._settings.cluster_max_pids,
            model_env,
            tuple(self._settings.worker_env),
        )

    def builder(self) -> Sandbox:
        """How environment builds and checks run: an unprivileged user of their own."""
        user = self.users.user_for(BUILDER) if self.users is not None else None
        return Sandbox(self._homes / "builder", user, passed=tuple(self._settings.worker_env))

    def grant(self, model_name: str, model_dir: Path) -> None:
        """The model's files (``model_dir``, and the model's directory holding it under
        ``<data-dir>/models``) readable by its user only; the way there open to pass through."""
        if self.users is None:
            return
        user = self.users.user_for(model_name)
        models = self._data_dir / "models"
        top = models / model_dir.relative_to(models).parts[0]
        open_passage(self._data_dir, models)
        grant_tree(model_dir, user.gid)
        for directory in model_dir.relative_to(top).parents:
            path = top / directory
            os.chown(path, os.geteuid(), user.gid)
            os.chmod(path, 0o750)

    def kill_all(self, model_name: str) -> None:
        """SIGKILL every process of the model's user (what its workers left: a fork bomb's
        children, a daemon of its own), in one ``kill(-1)`` as that user."""
        if self.users is None or model_name not in self.users.known():
            return
        # No process cap for the killer: the model may be at its cap (that is why it is here).
        sandbox = Sandbox(self._homes / _digest(model_name), self.users.user_for(model_name))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = sandbox.run(["kill-all"], timeout=10)
            if done.returncode not in (0, -signal.SIGKILL):
                _log.warning(
                    "could not stop what the workers of %s left: %s",
                    model_name,
                    done.stdout.decode(errors="replace").strip(),
                )

    def forget(self, model_name: str) -> None:
        """The registered model is gone (its processes stopped): its home goes, and its user
        back to the range; a model created later under the name gets neither."""
        shutil.rmtree(self._homes / _digest(model_name), ignore_errors=True)
        if self.users is not None:
            self.users.forget(model_name)


def _obstacle(data_dir: Path) -> str:
    """Why workers cannot run as users of their own here ("" when they can)."""
    missing = missing_privileges()
    if missing:
        return (
            f"regserve lacks {', '.join(missing)} (run it as root, or give it those capabilities)"
        )
    for directory in data_dir.parents:  # the data dir itself is opened by lock_down
        with contextlib.suppress(FileNotFoundError):
            if not directory.stat().st_mode & stat.S_IXOTH:
                return (
                    f"the data dir {data_dir} is inside {directory}, which other users "
                    "cannot enter (put the data dir where they can pass through, e.g. "
                    "/var/lib/regserve)"
                )
    return ""


def _digest(model_name: str) -> str:
    return "m-" + hashlib.sha1(model_name.encode()).hexdigest()[:16]


def _own_user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
