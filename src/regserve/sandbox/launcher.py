"""Starts a worker process in its model's sandbox, then becomes it (``execve``).

``<regserve's python> -I -S launcher.py [--uid U --gid G] [--home DIR] [--max-pids N]
[--network none] -- <python> -m regserve.worker ...``, or ``... --uid U --gid G -- kill-all``:
as that user, SIGKILL every process of that user (``kill(-1)``, all at once: a fork bomb has no
time to fork past it).

regserve runs this file with its own interpreter in isolated mode, before any code of the
model's environment is loaded (no site-packages, no ``.pth`` file, no ``PYTHON*`` variable
read), while it still holds regserve's privileges. In this order it:

1. with ``--network none``, moves into a network namespace of its own with only the loopback
   interface up (the model cannot reach any other host, nor any port of this one);
2. limits the processes and threads the user may have (``RLIMIT_NPROC``: with a user per
   model, this is the model's own count, so a fork bomb stops there) and turns core dumps off;
3. drops to the model's user and group with no supplementary group (``--uid``/``--gid``), and
   checks that the change cannot be undone;
4. sets ``no_new_privs`` (no setuid binary gives privileges back), a private umask, the
   working directory, and closes every inherited descriptor but 0, 1 and 2;
5. executes the worker with the environment it was given (regserve built it from an
   allow-list: no server secret is ever in it).

Anything that fails exits with code 6 (``EXIT_SANDBOX_FAILED``) and a line on stderr (the
version's log) saying what; the worker never runs half-sandboxed.

Standard library only, no import of regserve: it runs with ``-S``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import sys

__all__ = ["main"]

EXIT_SANDBOX_FAILED = 6
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class SandboxError(Exception):
    """The sandbox could not be set up; the message says which step failed."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _isolate_network() -> None:
    """A network namespace of our own, loopback up: no route to anything but ourselves."""
    if _libc().unshare(_CLONE_NEWNET) != 0:
        raise SandboxError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise SandboxError(f"the user is {os.getresuid()}, not {uid}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    if uid != 0:
        raise SandboxError("the dropped privileges could be taken back")


def _no_new_privs() -> None:
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    if "--" not in argv:
        raise SandboxError("no command after --")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if len(options) % 2 or not command:
        raise SandboxError(f"bad arguments: {options}")
    known = {"--uid", "--gid", "--home", "--max-pids", "--network"}
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    unknown = set(pairs) - known
    if unknown:
        raise SandboxError(f"unknown options: {sorted(unknown)}")
    return pairs, command


def enter(options: dict[str, str]) -> None:
    """Steps 1-4 of the module's docstring, in this process."""
    if options.get("--network", "host") == "none":
        _isolate_network()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if "--max-pids" in options:
        pids = int(options["--max-pids"])
        resource.setrlimit(resource.RLIMIT_NPROC, (pids, pids))
    if "--uid" in options:
        _drop_to(int(options["--uid"]), int(options.get("--gid", options["--uid"])))
    _no_new_privs()
    os.umask(0o077)
    os.chdir(options.get("--home", "/"))
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)


def main(argv: list[str]) -> int:
    try:
        options, command = _parse(argv)
        enter(options)
        if command == ["kill-all"]:
            os.kill(-1, signal.SIGKILL)  # every process this user may signal: its own
            return 0
        os.execve(command[0], command, dict(os.environ))
    except (SandboxError, OSError, ValueError) as exc:
        print(f"regserve sandbox: the worker could not be started: {exc}", file=sys.stderr)
    return EXIT_SANDBOX_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
