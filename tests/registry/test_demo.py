from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from regserve.registry.demo import (
    DEMO_MODEL_NAME,
    FLAVORS,
    looks_complete,
    prepare,
    prepare_in_child,
    prepared,
    register,
)
from regserve.registry.models import ModelSnapshot, VersionInfo
from tests.registry.conftest import HostedServer
from tests.support.timing import scaled


def test_demo_model_is_registered_once(hosted: HostedServer, tmp_path: Path) -> None:
    reader = hosted.registry.reader
    cache = tmp_path / "cache"
    models = prepare(cache)
    assert models == prepared(cache)
    assert prepare(cache) == models  # once
    # What is registered is what was prepared, not a model trained again.
    (models / "C1.0" / "prepared-here.txt").write_text("v1")
    register(hosted.url, "unused-by-plain-mlflow", models)
    register(hosted.url, "unused-by-plain-mlflow", models)

    snap = reader.snapshot(DEMO_MODEL_NAME)
    assert snap is not None
    assert [(v.version, v.stage, v.status) for v in snap.versions] == [
        ("1", "Staging", "READY"),
        ("2", "Production", "READY"),
    ]
    assert snap.aliases == {"champion": "2"}
    assert looks_complete(snap)  # a restart needs no registering process
    v1 = reader.download(DEMO_MODEL_NAME, "1", tmp_path / "v1")
    assert (v1 / "prepared-here.txt").read_text() == "v1"
    requirements = v1 / "requirements.txt"
    pinned = [line for line in requirements.read_text().splitlines() if "==" in line]
    assert {line.partition("==")[0] for line in pinned} >= {"mlflow", "scikit-learn"}  # given
    mlmodel = yaml.safe_load(
        (reader.download(DEMO_MODEL_NAME, "2", tmp_path / "v2") / "MLmodel").read_text()
    )
    inputs = yaml.safe_load(mlmodel["signature"]["inputs"])
    assert [col["name"] for col in inputs] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert "saved_input_example_info" in mlmodel
    assert "sklearn" in mlmodel["flavors"]
    # saved with cloudpickle, as the flavors its warm process is started with say
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert FLAVORS["sklearn"]["serialization_format"] == "cloudpickle"
    assert [p.name for p in (cache / "demo").iterdir()] == [models.name]  # no leftovers


def test_a_first_demo_prepares_its_models_in_the_cache(tmp_path: Path) -> None:
    """No cache yet: the models are trained and saved there, complete, then reused."""
    cache = tmp_path / "cache"
    models = prepare(cache)
    assert sorted(p.name for p in models.iterdir()) == ["C0.5", "C1.0", "complete"]
    mlmodel = yaml.safe_load((models / "C0.5" / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    stamp = (models / "C0.5" / "MLmodel").stat().st_mtime_ns
    assert prepare(cache) == models
    assert (models / "C0.5" / "MLmodel").stat().st_mtime_ns == stamp  # not saved again


def _snapshot(stages: list[str], aliases: dict[str, str]) -> ModelSnapshot:
    versions = tuple(
        VersionInfo(DEMO_MODEL_NAME, str(i), stage, "READY", (), "src", None, i)
        for i, stage in enumerate(stages, start=1)
    )
    return ModelSnapshot(DEMO_MODEL_NAME, versions, aliases, "")


def test_the_demo_is_complete_with_versions_added_since_but_not_when_changed() -> None:
    champion = {"champion": "2"}
    assert looks_complete(_snapshot(["Staging", "Production"], champion))
    assert looks_complete(_snapshot(["Staging", "Production", "None"], {**champion, "x": "3"}))
    assert not looks_complete(_snapshot(["Staging", "Archived", "Production"], champion))
    assert not looks_complete(_snapshot(["Staging", "Production"], {"champion": "1"}))
    assert not looks_complete(_snapshot(["Staging"], {}))
    assert not looks_complete(None)


def _training(cache: Path) -> list[int]:
    """Processes training the demo into ``cache``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--prepare" in command and str(cache).encode() in command:
            found.append(int(proc.name))
    return found


async def test_the_models_are_trained_by_a_child_once_and_a_stop_kills_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # Cancelled while the child trains (regserve stopped): the child is gone, nothing prepared.
    training = asyncio.ensure_future(prepare_in_child(cache))
    for _ in range(int(scaled(30) / 0.05)):
        if _training(cache):
            break
        await asyncio.sleep(0.05)
    assert _training(cache), "no child process trains the demo"
    training.cancel()
    with pytest.raises(asyncio.CancelledError):
        await training
    assert _training(cache) == []
    assert not (prepared(cache) / "complete").exists()

    models = await prepare_in_child(cache)
    assert models == prepared(cache)
    assert (models / "complete").is_file()
    assert (models / "C1.0" / "MLmodel").is_file()
    stamp = (models / "C1.0" / "MLmodel").stat().st_mtime_ns
    assert await prepare_in_child(cache) == models  # prepared: not trained again
    assert (models / "C1.0" / "MLmodel").stat().st_mtime_ns == stamp


def test_a_stop_while_registering_does_not_hold_the_exit(tmp_path: Path) -> None:
    """regserve stopped while the demo registers: its server is gone, MLflow's client retries
    the refused connection for minutes; the process still exits at once."""
    code = textwrap.dedent(
        f"""
        import asyncio, pathlib, socket
        from regserve.registry.demo import register_in_background

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

        async def main():
            url = f"http://127.0.0.1:{{port}}"
            task = asyncio.ensure_future(
                register_in_background(url, "t", pathlib.Path({str(tmp_path)!r}))
            )
            await asyncio.sleep(1.0)
            assert not task.done()  # still retrying
            task.cancel()

        asyncio.run(main())
        print("exiting")
        """
    )
    begun = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(60)
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout
    assert time.monotonic() - begun < scaled(20)
