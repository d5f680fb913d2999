"""One Settings object, read once from the environment (prefix ``REGSERVE_``) and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob of a regserve process. Each field is also ``REGSERVE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="REGSERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")

    @model_validator(mode="before")
    @classmethod
    def _host_may_be_a_url(cls, data: Any) -> Any:
        """``REGSERVE_HOST`` is also where the client commands find regserve, as a URL
        (``http://127.0.0.1:8080``): then listen on its host, and on its port unless one is set.
        """
        if not isinstance(data, dict) or "://" not in str(data.get("host", "")):
            return data
        parts = urlsplit(str(data["host"]))
        data = {**data, "host": parts.hostname or "127.0.0.1"}
        if parts.port and "port" not in data:
            data["port"] = parts.port
        return data

    port: int = Field(8080, description="Port the gateway listens on.")
    data_dir: Path = Field(
        Path(".regserve"), description="Where state, artifacts, sockets and logs live."
    )
    registry_uri: str | None = Field(
        None,
        description="An existing MLflow tracking/registry URI; unset hosts MLflow's server here.",
    )
    store_uri: str | None = Field(
        None, description="regserve's own state database; default SQLite in the data dir."
    )
    env_manager: Literal["local", "virtualenv"] = Field(
        "virtualenv",
        description="virtualenv: a uv-built environment per version's logged dependencies; "
        "local: every worker runs in regserve's own interpreter (development).",
    )
    env_cache_dir: Path | None = Field(
        None, description="Where built environments are kept; default <data-dir>/envs."
    )
    demo_cache_dir: Path | None = Field(
        None,
        description="Where the demo model, trained once per set of library versions, is kept "
        "(`make` prepares it); default $XDG_CACHE_HOME/regserve (~/.cache/regserve).",
    )
    env_cache_max_bytes: int = Field(
        20 * 1024**3, description="Cache size past which unused environments are evicted (LRU)."
    )
    env_build_parallelism: int = Field(2, description="Environment builds run at once.")
    python_fallback: Literal["nearest", "fail"] = Field(
        "nearest",
        description="When the model's Python major.minor is not installed: use the nearest "
        "interpreter (with a warning event) or fail the version.",
    )
    package_index_url: str | None = Field(None, description="Package index uv installs from.")
    extra_index_urls: list[str] = Field(
        default_factory=list, description="Extra package indexes (JSON list in the variable)."
    )
    backend: Literal["local", "ray"] = Field(
        "local",
        description="Where versions run: local worker processes, or Ray Serve deployments.",
    )
    ray_address: str | None = Field(
        None,
        description="--backend ray: the Ray cluster to connect to (e.g. 10.0.0.5:6379); unset "
        "starts a single-node Ray on 127.0.0.1, stopped with regserve.",
    )
    ray_gateway_url: str | None = Field(
        None,
        description="--backend ray: the URL Ray replicas fetch their version's model files from "
        "(this gateway as the Ray nodes reach it, or a load balancer in front of every "
        "gateway, the same on each); unset: http://<host>:<port> of this gateway "
        "(127.0.0.1 when it listens on every address).",
    )
    ray_model_cache: str | None = Field(
        None,
        description="--backend ray: the directory on each Ray node where replicas keep the "
        "model files they fetched (shared by the replicas of that node); unset: "
        "<the node's Ray temp dir>/regserve-models.",
    )
    admin_token: str | None = Field(
        None, description="The admin token; when unset one is made and kept in the data dir."
    )
    poll_interval: float = Field(3.0, description="Seconds between registry sync passes.")
    max_payload_bytes: int = Field(
        16 * 1024 * 1024, description="Largest scoring request body accepted (413 above)."
    )
    request_timeout: float = Field(60.0, description="Seconds a scoring request may take (504).")
    unavailable_wait: float = Field(
        60.0,
        ge=0,
        le=600,
        description="Seconds at most a scoring request waits at the gateway for a version that "
        "has no ready replica (starting, restarting) before it answers 503, within its "
        "request_timeout; 0 answers 503 at once.",
    )
    idle_timeout: float = Field(
        600.0,
        ge=0,
        description="Seconds without a request after which a version's worker processes (its "
        "replicas and template) are stopped on the local backend, giving their memory back; "
        "it stays READY and its next request loads it again (forked from the model's warm "
        "process). On Ray, Serve scales the version to zero replicas after it. 0: never (per "
        "model: cluster tag regserve.idle_timeout, seconds or never).",
    )
    memory_budget: ByteSize | None = Field(
        None,
        description="Memory the loaded versions' worker processes (replicas and templates, "
        "PSS) may hold at most on the local backend, in bytes or with a unit ('3GiB', "
        "'500MB'); above it the least recently used versions are unloaded as idle ones are "
        "(they stay READY; their next request loads them again). Unset: no budget.",
    )
    memory_budget_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds a version stays loaded at least, once it loaded (started, "
        "restarted or woken), before the memory budget may unload it: versions that take "
        "turns beyond the budget are not unloaded and loaded again on every request.",
    )
    max_queued_requests: int = Field(
        1000,
        ge=0,
        description="Scoring requests of one model that may wait at once for a ready replica; "
        "the next one gets 503 with Retry-After at once.",
    )
    inference_table_max_body_bytes: int = Field(
        65536,
        ge=0,
        description="Bytes of a request's and of an answer's body kept in an inference table row; "
        "a longer body is cut there and the row's request_truncated/response_truncated says so.",
    )
    inference_table_queue_rows: int = Field(
        10000,
        ge=1,
        description="Captured rows that may wait in memory for the inference table's writer; "
        "rows over that are dropped and counted (regserve_inference_table_rows_total).",
    )
    inference_table_flush_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        description="Seconds at most between two writes of captured rows to the inference "
        "tables (a write also happens once 1,000 rows wait).",
    )
    inference_table_retention_days: int = Field(
        30,
        ge=0,
        description="Days of inference table rows kept (today included, UTC); the writer "
        "deletes older date partitions (Parquet) or rows (the PostgreSQL store's "
        "inference_rows), hourly. 0: keep them all.",
    )
    overrun_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a worker may go on with a request past its deadline (its caller "
        "got a 504) before it is replaced by a new one; 0: never replaced.",
    )
    worker_start_timeout: float = Field(
        300.0,
        description="Seconds a worker may take to load its model before it counts as failed, "
        "from when its start got its turn (see worker_start_parallelism).",
    )
    worker_start_parallelism: int = Field(
        default_factory=lambda: max(2, len(os.sched_getaffinity(0))),
        ge=1,
        description="Workers (templates, fresh workers) that start at once on the local "
        "backend, each loading its model; the others wait for a turn: a crashed worker that "
        "had served first, then versions a stage or alias points at, then those called "
        "lately, then the newest. Default: the CPUs regserve may run on, at least 2.",
    )
    max_restarts: int = Field(
        4, description="Consecutive crashes before a version is marked FAILED."
    )
    restart_backoff_base: float = Field(1.0, description="First restart delay; doubles each time.")
    restart_backoff_max: float = Field(30.0, description="Longest delay between restarts.")
    orphan_timeout: float = Field(
        120.0,
        description="Seconds a worker whose regserve process is gone waits to be adopted by the "
        "next one before it stops by itself (0: never).",
    )
    listen_fd: int | None = Field(
        None,
        description="An inherited listening socket to serve on instead of binding host:port "
        "(set by regserve itself when it re-executes for a restart).",
    )
    systemd_listen_fds: int | None = Field(
        None,
        validation_alias="LISTEN_FDS",
        description="systemd socket activation: how many sockets were passed (from fd 3).",
    )
    systemd_listen_pid: int | None = Field(
        None,
        validation_alias="LISTEN_PID",
        description="systemd socket activation: the process the sockets were passed to.",
    )
    log_max_bytes: int = Field(
        5 * 1024 * 1024, description="Size at which a version's log file is rotated."
    )
    kept_logs: int = Field(
        20,
        ge=0,
        description="Logs kept per model of versions that stopped being served (archived, "
        "deleted, serving disabled), the newest; readable with get-version-logs and the UI.",
    )
    kept_log_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="Size a stopped version's log is cut to (its newest lines are kept).",
    )
    share_workers: bool = Field(
        False,
        description="Run the versions of one served model that share an environment in one "
        "worker process (per model: cluster tag regserve.share_workers=true|false).",
    )
    fork_replicas: bool = Field(
        True,
        description="Fork a version's replicas from a template process that loaded the model "
        "once: a replica starts, and a crashed one restarts, in milliseconds. Turn off for "
        "models whose libraries do not survive a fork (per model: tag regserve.fork_replicas).",
    )
    warm_start: bool = Field(
        True,
        description="Keep, per served model and environment, a warm process that imported "
        "MLflow and the flavor's libraries once, and fork the model's templates from it: a new "
        "version or a lost template costs a model load, not an interpreter start (needs "
        "fork_replicas; 0 turns it off).",
    )
    replicas: int = Field(
        1,
        ge=1,
        le=16,
        description="Worker processes per served version (per model: cluster tag "
        "regserve.replicas); a request whose replica dies is retried once on another.",
    )
    cluster_update_timeout: float = Field(
        600.0,
        description="Seconds update-cluster-config waits for the new cluster's workers to be "
        "READY; past it the old cluster keeps serving and the update is reported as failed.",
    )
    max_token_lifetime: int | None = Field(
        90 * 24 * 3600,
        description="Longest lifetime in seconds a new token may have (also the lifetime of "
        "tokens asked for without one); unset or 0: no cap, tokens may never expire.",
    )
    auth_cache_ttl: float = Field(
        10.0,
        description="Seconds a checked token and a model's permissions are kept in memory; "
        "changes made through this process apply at once, other gateways' within this time.",
    )
    auth_cache_size: int = Field(
        10_000, description="Most tokens and models whose auth checks are kept in memory."
    )
    ui_session_hours: float = Field(
        12.0,
        gt=0,
        description="Hours a UI sign-in lasts (the session cookie's lifetime); it ends sooner "
        "when its token is revoked or expires.",
    )
    rate_limit_rps: float | None = Field(
        None,
        description="Requests per second allowed per token (429 above, bursts up to one "
        "second's worth); unset or 0: no limit.",
    )
    webhook_secret: str | None = Field(
        None,
        description="Secret MLflow registry webhooks are signed with (X-MLflow-Signature); "
        "unset: one is made once and kept in <data-dir>/webhook-secret (0600).",
    )
    webhook_tolerance: float = Field(
        300.0,
        description="Seconds a webhook's X-MLflow-Timestamp may be away from now; older "
        "deliveries are refused as possible replays.",
    )
    register_webhook: bool = Field(
        True,
        description="When regserve hosts the registry, register its own webhook there at start "
        "so new versions and aliases are picked up at once, not at the next poll.",
    )
    node_types_file: Path | None = Field(
        None,
        description="A YAML or JSON file of the node types offered (id, cores, memory, "
        "description, replicas); unset: local-small, local-medium and local-large.",
    )
    resource_limits: Literal["auto", "cgroup2", "cgroup1", "process", "off"] = Field(
        "auto",
        description="How a node type's cores and memory are enforced on the local backend: "
        "auto picks cgroup v2, then cgroup v1, then CPU affinity with a per-process memory "
        "limit; naming one that is not available fails at start; off enforces nothing.",
    )
    worker_users: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run each served model's workers as an unprivileged user of its own (a uid "
        "from worker_uid_range): auto when regserve may change user (root), on: refuse to start "
        "otherwise, off: as regserve's own user (docs/security.md#trust-model).",
    )
    worker_uid_range: str = Field(
        "61184-65519",
        description="The uids (and gids of the same numbers) handed to models, FIRST-LAST; none "
        "may belong to a user or group of the machine (those are skipped).",
    )
    worker_uid_claims: Path = Field(
        Path("/var/lib/regserve/uids"),
        description="Where the uids handed to models are claimed, host-wide, so that two "
        "regserve processes never give one uid to two models.",
    )
    worker_env: list[str] = Field(
        default_factory=list,
        description="Names of variables of regserve's environment passed on to every worker "
        '(JSON list, e.g. ["OMP_NUM_THREADS"]); a model\'s own go in its model env file.',
    )
    model_env_dir: Path | None = Field(
        None,
        description="Per-model variables for its workers, <dir>/<model>.env (KEY=VALUE lines, "
        "written by an administrator); default <data-dir>/model-env.",
    )
    cluster_max_pids: int = Field(
        1024,
        ge=16,
        description="Processes and threads one model's workers may have at once (a fork bomb "
        "stops there): its cluster's pids cgroup, and its user's RLIMIT_NPROC.",
    )
    demo: bool = Field(False, description="Register and serve the iris demo model on first start.")
    registry_start_delay: float = Field(
        0.0,
        ge=0,
        description="Seconds to wait, once listening, before making the registry ready (for "
        "tests: it holds the window in which MLflow's routes answer 503 and /health 'starting').",
    )
    # -- hostile input (docs/security.md#limits-on-requests) ----------------------------------
    max_input_columns: int = Field(
        10_000, ge=0, description="Most columns a scoring input may have (400 above; 0: none)."
    )
    max_input_rows: int = Field(
        1_000_000, ge=0, description="Most rows a scoring input may have (400 above; 0: none)."
    )
    max_input_values: int = Field(
        10_000_000,
        ge=0,
        description="Most values (rows x columns) a scoring input may have (400 above; 0: none).",
    )
    max_json_depth: int = Field(
        64, ge=0, description="Deepest nesting of a JSON scoring body (400 above; 0: none)."
    )
    header_timeout: float = Field(
        10.0,
        ge=0,
        description="Seconds a client has to send a request's headers, from its connection or "
        "the request's first byte (408 and closed after; 0: no limit).",
    )
    body_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds a request body may take, plus one per REGSERVE_BODY_MIN_RATE bytes "
        "received (408 and closed after; 0: no limit).",
    )
    body_min_rate: int = Field(
        1024,
        ge=1,
        description="Bytes per second a slow request body must keep up past its "
        "REGSERVE_BODY_TIMEOUT.",
    )
    max_connections_per_client: int = Field(
        256,
        ge=0,
        description="Most open connections from one client address (429 and closed above; 0: "
        "no limit; behind a proxy every client has the proxy's address).",
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()
