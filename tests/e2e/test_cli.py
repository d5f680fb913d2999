"""The ``regserve`` command against a real regserve: tables, JSON, --wait, profiles, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.support.cli import ok, run_cli
from tests.support.models import iris_frame, log_broken_version
from tests.support.registry import user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, free_port

pytestmark = pytest.mark.e2e

MODEL = "cli-iris"
BROKEN = "cli-broken"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegServeProcess]:
    s = RegServeProcess(tmp_path_factory.mktemp("cli") / "data", max_restarts="1")
    s.start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, s.url, ADMIN_TOKEN) as reg:
        reg.register(MODEL)
        reg.register(MODEL, c=0.3)
        reg.stage(MODEL, "2", "Production")
        log_broken_version(BROKEN)
    yield s
    s.close()


def test_enable_waits_until_ready_then_shows_everything(server: RegServeProcess) -> None:
    done = run_cli(server.url, "serving", "enable", MODEL, "--wait", "-o", "json")
    status = json.loads(ok(done))["endpoint_status"]
    assert status["state"] == "ENDPOINT_STATE_READY"
    # --wait returned only once every version was READY, not merely the endpoint.
    versions = json.loads(ok(run_cli(server.url, "versions", MODEL, "-o", "json")))
    states = {v["endpoint_version_name"]: v["state"] for v in versions["endpoint_versions"]}
    assert states == {"1": "VERSION_STATE_READY", "2": "VERSION_STATE_READY"}

    table = ok(run_cli(server.url, "versions", MODEL))
    row_2 = next(line for line in table.splitlines() if "│ 2 " in line)
    assert "READY" in row_2
    assert "Production" in row_2
    listed = json.loads(ok(run_cli(server.url, "serving", "list", "-o", "json")))
    assert [e["registered_model_name"] for e in listed["endpoints"]] == [MODEL]
    assert "READY" in ok(run_cli(server.url, "serving", "status", MODEL))

    events = json.loads(ok(run_cli(server.url, "events", MODEL, "-o", "json")))["events"]
    enabled = [e for e in events if e["event_type"] == "SERVING_ENABLED"]
    assert enabled[0]["principal"] == "admin"
    only_v1 = json.loads(ok(run_cli(server.url, "events", MODEL, "--version", "1", "-o", "json")))
    assert {e["endpoint_version_name"] for e in only_v1["events"]} == {"1"}
    assert "model loaded in" in ok(run_cli(server.url, "logs", MODEL, "1"))


def test_enable_wait_fails_with_the_failed_version(server: RegServeProcess) -> None:
    done = run_cli(server.url, "serving", "enable", BROKEN, "--wait", "--timeout", "90")
    assert done.returncode == 1, done.stderr
    assert "failed versions: v1" in done.stderr
    assert "deliberately broken model" in done.stderr
    ok(run_cli(server.url, "serving", "disable", BROKEN))
    gone = run_cli(server.url, "serving", "status", BROKEN)
    assert gone.returncode == 1
    assert "not enabled" in gone.stderr


def test_cluster_show_and_set(server: RegServeProcess) -> None:
    ok(run_cli(server.url, "serving", "enable", MODEL))
    ok(
        run_cli(
            server.url,
            "cluster",
            "set",
            MODEL,
            "--node-type",
            "local-default",
            "--tag",
            "regserve.batching=off",
            "--tag",
            "team=fraud",
        )
    )
    shown = json.loads(ok(run_cli(server.url, "cluster", "show", MODEL, "-o", "json")))
    assert shown == {
        "node_type_id": "local-default",
        "tags": [{"key": "regserve.batching", "value": "off"}, {"key": "team", "value": "fraud"}],
    }
    bad_tag = run_cli(server.url, "cluster", "set", MODEL, "--node-type", "x", "--tag", "novalue")
    assert bad_tag.returncode == 2
    unknown = run_cli(server.url, "cluster", "set", MODEL, "--node-type", "gpu-huge")
    assert unknown.returncode == 1
    assert "INVALID_PARAMETER_VALUE" in unknown.stderr
    offered = json.loads(ok(run_cli(server.url, "cluster", "node-types", "-o", "json")))
    assert [n["node_type_id"] for n in offered["node_types"]] == [
        "local-default",
        "local-small",
        "local-medium",
        "local-large",
    ]


def test_exit_codes(server: RegServeProcess, tmp_path: Path) -> None:
    assert run_cli(server.url, "serving", "status", "never-served").returncode == 1
    missing = run_cli(server.url, "serving", "enable", "no-such-model")
    assert missing.returncode == 4
    assert "RESOURCE_DOES_NOT_EXIST" in missing.stderr
    assert run_cli(server.url, "logs", MODEL, "99").returncode == 4
    assert run_cli(server.url, "serving", "list", token="rsp_wrong").returncode == 3
    no_token = run_cli(server.url, "serving", "list", token=None, cwd=tmp_path)
    assert no_token.returncode == 3
    assert "no token" in no_token.stderr
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli(nobody, "serving", "list")
    assert unreachable.returncode == 5
    assert "cannot reach" in unreachable.stderr
    assert run_cli(server.url, "serving", "list", "-o", "xml").returncode == 2


def test_profiles_supply_host_and_token(server: RegServeProcess, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.ini"
    profiles.write_text(
        f"[default]\nhost = http://127.0.0.1:1\n[ci]\nhost = {server.url}\ntoken = {ADMIN_TOKEN}\n"
    )
    env = {"REGSERVE_CONFIG_FILE": str(profiles)}
    listed = run_cli(None, "serving", "list", "--profile", "ci", "-o", "json", token=None, **env)
    assert MODEL in ok(listed)
    by_env = run_cli(None, "serving", "list", token=None, REGSERVE_PROFILE="ci", **env)
    assert MODEL in ok(by_env)
    # The flag beats the profile: the default profile's host is unreachable, --host is not.
    flagged = run_cli(None, "serving", "list", "--host", server.url, **env)
    assert MODEL in ok(flagged)
    assert run_cli(None, "serving", "list", "--profile", "nope", **env).returncode == 2


def test_logs_follow_keeps_running_until_interrupted(server: RegServeProcess) -> None:
    ok(run_cli(server.url, "serving", "enable", MODEL, "--wait"))
    import os

    env = {
        **os.environ,
        "REGSERVE_HOST": server.url,
        "REGSERVE_TOKEN": ADMIN_TOKEN,
        "REGSERVE_CONFIG_FILE": "/nonexistent",
    }
    follower = subprocess.Popen(
        [sys.executable, "-m", "regserve.cli", "logs", MODEL, "1", "-f", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=20)
    assert follower.returncode == 0, err
    assert "model loaded in" in out


def test_o_is_the_output_format_in_score_too(server: RegServeProcess, tmp_path: Path) -> None:
    """`-o json` means the same in `score` as in `events`: what to print. The file to write is
    the third argument; `-o FILE` (the old spelling) still writes it, with a note."""
    ok(run_cli(server.url, "serving", "enable", MODEL, "--wait"))
    frame, _ = iris_frame()
    rows = tmp_path / "rows.csv"
    frame.head(5).to_csv(rows, index=False)
    scored = tmp_path / "scored.csv"
    done = run_cli(server.url, "score", f"{MODEL}/1", str(rows), str(scored), "-o", "json")
    summary = json.loads(ok(done))
    assert summary["rows"] == 5
    assert summary["output_path"] == str(scored)
    assert len(pd.read_csv(scored)["prediction"]) == 5
    table = run_cli(server.url, "score", f"{MODEL}/1", str(rows), str(scored))
    assert ok(table) == ""  # people get the summary line on stderr, as with every message
    assert "Scored 5 rows" in table.stderr

    old = tmp_path / "old.parquet"
    legacy = run_cli(server.url, "score", f"{MODEL}/1", str(rows), "-o", str(old))
    ok(legacy)
    assert "regserve score MODEL INPUT" in legacy.stderr  # says how to write it now
    assert len(pd.read_parquet(old)) == 5
    no_file = run_cli(server.url, "score", f"{MODEL}/1", str(rows))
    assert no_file.returncode == 2
    assert "name the file to write" in no_file.stderr
    both = run_cli(server.url, "score", f"{MODEL}/1", str(rows), str(scored), "-o", "x.csv")
    assert both.returncode == 2
    assert "table or json" in both.stderr


def test_token_create_shows_the_whole_token_on_a_narrow_terminal(server: RegServeProcess) -> None:
    done = run_cli(server.url, "token", "create", "--comment", "narrow", COLUMNS="40")
    lines = ok(done).splitlines()
    label = lines.index("Token value (shown once; it cannot be read again):")
    value = lines[label + 1]
    assert value.startswith("rsp_")
    assert len(value) > 40  # wider than the terminal, and still whole on its line
    assert all(len(line) <= 40 for line in lines[:label])  # the table fits; the token is apart
    # The value printed is the token itself: it authenticates.
    assert MODEL in ok(run_cli(server.url, "serving", "list", token=value))
    listed = json.loads(ok(run_cli(server.url, "token", "list", "-o", "json", token=value)))
    whole_id = next(i["token_id"] for i in listed["token_infos"] if i["comment"] == "narrow")
    first_cells = [line.split("│")[1].strip() for line in lines[:label] if line.startswith("│")]
    assert "".join(first_cells) == whole_id  # folded over lines, not cut
