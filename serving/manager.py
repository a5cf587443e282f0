"""Watches model base paths and manages version lifecycles, policies and labels."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import tensorflow as tf

import model_contract
from serving.errors import (
    InvalidArgumentError,
    ModelLoadError,
    NotFoundError,
    ServingError,
    UnavailableError,
)
from serving.metrics import ServingMetrics
from serving.model import ServableVersion
from serving.settings import ModelSettings, ServerSettings, read_model_config

logger = logging.getLogger(__name__)

UNLOAD_DRAIN_S = 30.0
INT64_MAX = 2**63 - 1


def list_versions(base_path: str) -> dict[int, str]:
    """The base path's version folders that TF Serving would serve: numbers within int64.

    tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc
    (ParseVersionNumber: `absl::SimpleAtoi` into an int64_t) skips children whose name does
    not parse, which includes numbers beyond int64 (`99999999999999999999`); kept, such a
    version broke every response that names it (issue 17).
    """
    found = model_contract.list_version_dirs(tf.io.gfile, base_path)
    return {v: path for v, path in found.items() if v <= INT64_MAX}


class State(enum.IntEnum):
    """TF Serving's ModelVersionStatus.State values."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass
class VersionRecord:
    """What the manager knows about one version."""

    version: int
    state: State = State.START
    error: ServingError | None = None  # the last failed load's; reported once the state is END
    fingerprint: tuple[int, int] | None = None
    servable: ServableVersion | None = None
    inflight: int = 0
    attempts: int = 0  # failed loads of these files so far
    retry_at: float | None = None  # monotonic time of the next load retry; None = no more

    @property
    def retrying(self) -> bool:
        """Failed to load, another attempt due: LOADING, as TF Serving reports its retries."""
        return self.state == State.LOADING and self.error is not None


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """A version's state and status, as GetModelStatus reports it."""

    version: int
    state: State
    error_code: int
    error_message: str


class _Model:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.records: dict[int, VersionRecord] = {}


def _fingerprint(version_dir: str) -> tuple[int, int] | None:
    try:
        stat = tf.io.gfile.stat(os.path.join(version_dir, model_contract.SAVED_MODEL_FILE))
    except tf.errors.OpError:
        return None
    return (int(stat.length), int(stat.mtime_nsec))


class ModelManager:
    """Loads aspired versions, swaps them in only when fully loaded, unloads drained ones.

    A version becomes AVAILABLE only after its SavedModel loads and its warm-up requests
    replay. Older versions are unloaded only once a newer aspired one is AVAILABLE, and only
    after their in-flight requests finish. A version that fails to load is loaded again up to
    `max_num_load_retries` times, waiting `load_retry_interval_s` doubled after each failed
    retry; meanwhile GetModelStatus reports it LOADING with an OK status, and after the last
    attempt END with the load's error, as TF Serving does (tensorflow_serving/core/
    loader_harness.cc, Load -> util/retrier.cc Retry: the harness stays kLoading across the
    attempts; basic_manager.cc publishes kLoading with the harness's OK status before the
    load, and the harness's error callback publishes kEnd with the final error). Each failed
    attempt is an ERROR log line and `serving_version_loads_total{outcome="error"}`. While it
    fails it is left out of the policy, so the previous version keeps serving. Deliberate
    differences: TF Serving sleeps a fixed interval inside one load call, we back off
    between polls so that a failing version costs one attempt per interval; and a failed
    version whose saved_model.pb changes is loaded afresh (TF Serving keeps it failed unless
    `enable_reload_servables_with_error`, aspired_versions_manager.cc). Versions that were
    unloaded or left the disk stay in GetModelStatus as END, as in TF Serving, whose
    ServableStateMonitor never forgets a version (servable_state_monitor.cc).
    """

    def __init__(
        self,
        settings: ServerSettings,
        metrics: ServingMetrics,
        detector: tf.types.experimental.ConcreteFunction | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Creates a manager; nothing loads before `start` or `poll_once`.

        Args:
          settings: Server settings (models, polling, batching, warm-up).
          metrics: Where lifecycle metrics go.
          detector: Schema violation detector fused into each version's example signatures
            (`ServableVersion`); None: validation, if any, runs as its own call.
          on_change: Called (on the polling thread) after every scan and unload, e.g. to
            update the gRPC health status.
        """
        self._settings = settings
        self._detector = detector
        self._on_change = on_change
        self._metrics = metrics
        self._lock = threading.Condition()
        self._models: dict[str, _Model] = {}
        # Models removed from the config, kept for GetModelStatus: TF Serving's
        # ServableStateMonitor keeps their versions' END states (servable_state_monitor.cc).
        self._retired: dict[str, _Model] = {}
        self._config_mtime: float | None = None
        models = settings.models
        if settings.model_config_file:
            models = read_model_config(settings.model_config_file)
            self._config_mtime = os.path.getmtime(settings.model_config_file)
        for model in models:
            self._models[model.name] = _Model(model)
        metrics.set_models(self._models)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_config_check = time.monotonic()

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the polling thread (first scan immediately)."""
        self._thread = threading.Thread(target=self._loop, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling and unloads every version after its in-flight requests."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        with self._lock:
            records = [(name, r) for name, m in self._models.items() for r in m.records.values()]
        for name, record in records:
            if record.servable is not None:
                self._unload(name, record)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("Model directory poll failed; retrying")
            self._stop.wait(self._settings.file_system_poll_s)

    def poll_once(self) -> None:
        """Re-reads the config if due, then scans every model's base path once."""
        self._maybe_reload_config()
        with self._lock:
            models = list(self._models.values())
        for model in models:
            if self._stop.is_set():
                return
            self._sync_model(model)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _maybe_reload_config(self) -> None:
        path = self._settings.model_config_file
        every = self._settings.model_config_file_poll_s
        if not path or every <= 0 or time.monotonic() - self._last_config_check < every:
            return
        self._last_config_check = time.monotonic()
        try:
            mtime = os.path.getmtime(path)
            if mtime == self._config_mtime:
                return
            models = read_model_config(path)
        except (OSError, ValueError) as e:
            logger.error("Model config %s not reloaded, keeping the current one: %s", path, e)
            return
        self._config_mtime = mtime
        logger.info("Model config %s changed: models %s", path, [m.name for m in models])
        removed = []
        with self._lock:
            wanted = {m.name: m for m in models}
            for name in list(self._models):
                if name not in wanted:
                    # Retired at once (under the same lock), so that GetModelStatus never
                    # finds the model in neither map while its versions unload.
                    self._retired[name] = self._models.pop(name)
                    removed.append((name, self._retired[name]))
            for name, settings in wanted.items():
                if name in self._models:
                    self._models[name].settings = settings
                else:
                    self._models[name] = _Model(settings)
                    retired = self._retired.pop(name, None)
                    if retired is not None:  # back again: its versions' states carry over
                        self._models[name].records = retired.records
            self._metrics.set_models(self._models)
        for name, model in removed:
            for record in list(model.records.values()):
                if record.servable is not None:
                    self._unload(name, record)
                elif record.retrying:
                    with self._lock:
                        record.state, record.retry_at = State.END, None
            self._metrics.loaded_versions.labels(name).set(0)

    def _sync_model(self, model: _Model) -> None:
        name, settings = model.settings.name, model.settings
        on_disk = list_versions(settings.base_path)
        candidates = []
        now = time.monotonic()
        for version, path in on_disk.items():
            record = model.records.get(version)
            if record is not None and record.error is not None:
                fingerprint = _fingerprint(path)
                if fingerprint == record.fingerprint and (
                    record.retry_at is None or now < record.retry_at
                ):
                    continue  # failed, unchanged, no retry due: not a candidate
            candidates.append(version)
        aspired = settings.version_policy.select(candidates)
        # A retrying version the policy no longer wants (a newer one arrived) or that left the
        # disk ends with its error: TF Serving cancels its load retries
        # (aspired_versions_manager.cc, CancelLoadServableRetry) and publishes kEnd.
        wanted = settings.version_policy.select(list(on_disk))
        with self._lock:
            for record in model.records.values():
                if record.retrying and record.version not in wanted:
                    record.state, record.retry_at = State.END, None
                    self._lock.notify_all()
        if not on_disk:
            with self._lock:
                loaded = [r.version for r in model.records.values() if r.servable is not None]
            if loaded:
                logger.warning(
                    "No versions under %s for model %s; keeping versions %s loaded",
                    settings.base_path,
                    name,
                    loaded,
                )
            return
        for version in sorted(aspired, reverse=True):
            with self._lock:
                record = model.records.get(version)
                if record is not None and (
                    record.servable is not None
                    or (record.state == State.LOADING and not record.retrying)
                ):
                    continue
            self._load(model, version, on_disk[version])
        with self._lock:
            any_aspired_available = any(
                model.records.get(v) is not None and model.records[v].state == State.AVAILABLE
                for v in aspired
            )
            to_unload = [
                r
                for v, r in model.records.items()
                if r.servable is not None and r.state == State.AVAILABLE and v not in aspired
            ]
        if any_aspired_available:
            for record in to_unload:
                self._unload(name, record)

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.settings.name
        fingerprint = _fingerprint(path)
        with self._lock:
            previous = model.records.get(version)
            # Attempts count per file contents: a changed saved_model.pb starts afresh.
            attempts = (
                previous.attempts
                if previous is not None and previous.fingerprint == fingerprint
                else 0
            )
            # A retry keeps the previous attempt's error until it succeeds (`retrying`).
            record = VersionRecord(
                version,
                State.LOADING,
                error=previous.error if previous is not None and attempts else None,
                fingerprint=fingerprint,
                attempts=attempts,
            )
            model.records[version] = record
        logger.info(
            "Loading model %s version %d from %s%s",
            name,
            version,
            path,
            f" (retry {attempts} of {self._settings.max_num_load_retries})" if attempts else "",
        )
        servable = ServableVersion(name, version, path, self._settings.batching, self._detector)
        start = time.monotonic()
        try:
            servable.load(warmup=self._settings.warmup)
        except ModelLoadError as e:
            self._metrics.version_loads.labels(name, "error").inc()
            retries = self._settings.max_num_load_retries
            attempt = record.attempts + 1
            state = State.LOADING
            if record.attempts < retries:
                delay = self._settings.load_retry_interval_s * 2**record.attempts
                retry_at: float | None = time.monotonic() + delay
                next_step = f"retry {attempt} of {retries} in {delay:g}s"
            else:
                state, retry_at = State.END, None
                next_step = "no retries left (until saved_model.pb changes)"
            logger.error(
                "Model %s version %d failed to load: %s [load attempt %d; %s]",
                name,
                version,
                e.message,
                attempt,
                next_step,
            )
            with self._lock:
                record.state, record.error = state, e
                record.attempts, record.retry_at = attempt, retry_at
                self._lock.notify_all()
            return
        seconds = time.monotonic() - start
        self._metrics.version_loads.labels(name, "ok").inc()
        self._metrics.load_seconds.labels(name).observe(seconds)
        self._metrics.warmup_requests.labels(name).inc(servable.warmup_requests)
        with self._lock:
            record.servable, record.state = servable, State.AVAILABLE
            self._update_gauge(model)
            self._lock.notify_all()
        logger.info(
            "Model %s version %d AVAILABLE after %.2fs (%d warm-up requests)",
            name,
            version,
            seconds,
            servable.warmup_requests,
        )

    def _unload(self, name: str, record: VersionRecord) -> None:
        with self._lock:
            record.state = State.UNLOADING
            model = self._models.get(name)
            if model is not None:
                self._update_gauge(model)
            deadline = time.monotonic() + UNLOAD_DRAIN_S
            while record.inflight > 0 and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            servable, record.servable = record.servable, None
        if servable is not None:
            servable.unload()
        with self._lock:
            record.state = State.END
        logger.info("Model %s version %d unloaded", name, record.version)
        self._changed()

    def _update_gauge(self, model: _Model) -> None:
        count = sum(1 for r in model.records.values() if r.state == State.AVAILABLE)
        self._metrics.loaded_versions.labels(model.settings.name).set(count)

    # Queries ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[ServableVersion]:
        """Holds an AVAILABLE version for one request; unloading waits for the lease to end.

        Args:
          name: Model name.
          version: Specific version; None (and no label) means the latest available.
          label: Version label, e.g. `stable`.

        Yields:
          The servable.

        Raises:
          NotFoundError: Unknown model, version or label.
          UnavailableError: The model is known but no version is AVAILABLE yet.
        """
        with self._lock:
            record = self._resolve(name, version, label)
            record.inflight += 1
            servable = record.servable
        assert servable is not None
        try:
            yield servable
        finally:
            with self._lock:
                record.inflight -= 1
                if record.inflight == 0:
                    self._lock.notify_all()

    def _resolve(self, name: str, version: int | None, label: str | None) -> VersionRecord:
        # tensorflow_serving/model_servers/server_core.cc (ServableRequestFromModelSpec,
        # GetModelVersionForLabel): no name and unknown labels (of any model, known or not)
        # are INVALID_ARGUMENT; basic_manager.cc (GetUntypedServableHandle): a request no
        # AVAILABLE version answers is NOT_FOUND "Servable not found for request: ...".
        if not name:
            raise InvalidArgumentError("ModelSpec has no name specified.")
        model = self._models.get(name)
        if label:
            labels = model.settings.labels if model is not None else {}
            if label not in labels:
                raise InvalidArgumentError(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is not None:
            record = model.records.get(version) if model is not None else None
            if record is None or record.state != State.AVAILABLE:
                raise NotFoundError(f"Servable not found for request: Specific({name}, {version})")
            return record
        if model is None:
            raise NotFoundError(f"Servable not found for request: Latest({name})")
        available = [r for r in model.records.values() if r.state == State.AVAILABLE]
        if not available:
            states = {v: r.state.name for v, r in sorted(model.records.items())}
            raise UnavailableError(
                f"Model {name} has no version loaded yet"
                + (
                    f" (versions: {states})"
                    if states
                    else " (no version in its base path yet)"  # the path stays in the logs
                )
            )
        return max(available, key=lambda r: r.version)

    def statuses(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Returns version states as GetModelStatus reports them.

        Args:
          name: Model name.
          version: Only this version; None for all known versions.

        Returns:
          Statuses, ascending by version.

        Raises:
          NotFoundError: Unknown model, or no such version, or nothing known about the model yet.
        """
        # tensorflow_serving/model_servers/get_model_status_impl.cc
        # (GetModelStatusWithModelSpec): the two NOT_FOUND texts, by whether a version is asked.
        with self._lock:
            model = self._models.get(name) or self._retired.get(name)
            records = sorted(model.records.values(), key=lambda r: r.version) if model else []
            if version is not None:
                records = [r for r in records if r.version == version]
                if not records:
                    raise NotFoundError(f"Could not find version {version} of model {name}")
            if not records:
                raise NotFoundError(f"Could not find any versions of model {name}")
            # Only END carries an error (basic_manager.cc: kLoading is published with the
            # harness's status, OK until its last attempt has failed).
            return [
                VersionStatus(
                    r.version,
                    r.state,
                    r.error.code.value if r.error and r.state == State.END else 0,
                    r.error.message if r.error and r.state == State.END else "",
                )
                for r in records
            ]

    def ready(self) -> bool:
        """True when every configured model has at least one AVAILABLE version."""
        readiness = self.readiness()
        return bool(readiness) and all(readiness.values())

    def readiness(self) -> dict[str, bool]:
        """Per configured model: whether it has an AVAILABLE version."""
        with self._lock:
            return {
                name: any(r.state == State.AVAILABLE for r in m.records.values())
                for name, m in self._models.items()
            }

    def wait_until_available(
        self, name: str, version: int | None = None, timeout_s: float = 60.0
    ) -> int:
        """Blocks until a model (or one version of it) is AVAILABLE.

        Args:
          name: Model name.
          version: Version to wait for; None = any.
          timeout_s: Longest wait.

        Returns:
          The newest AVAILABLE version (or `version`).

        Raises:
          UnavailableError: On timeout, with the model's version states.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                model = self._models.get(name)
                if model is not None:
                    ok = [
                        v
                        for v, r in model.records.items()
                        if r.state == State.AVAILABLE and (version is None or v == version)
                    ]
                    if ok:
                        return max(ok)
                    failed = model.records.get(version) if version is not None else None
                    if failed is not None and failed.error is not None:
                        raise UnavailableError(
                            f"Model {name} version {version} failed to load: {failed.error.message}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    states = (
                        {}
                        if model is None
                        else {
                            v: (r.state.name, r.error.message if r.error else "")
                            for v, r in model.records.items()
                        }
                    )
                    raise UnavailableError(
                        f"Model {name} not AVAILABLE after {timeout_s}s: {states}"
                    )
                self._lock.wait(min(remaining, 0.5))
