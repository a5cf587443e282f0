"""Prometheus metrics of one server instance (its own registry, exposed on the REST port)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Requests for model names the server does not serve are counted under this one label value:
# names come from clients, and one label per name grew /metrics without bound (issue 17).
UNKNOWN_MODEL = "<unknown>"


def safe_label(value: str) -> str:
    """`value` as valid UTF-8 text: lone surrogates (from %ff in a URL or an argv byte) are
    written as backslash escapes; `generate_latest` raised UnicodeEncodeError on them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class ServingMetrics:
    """Request, error, latency and model-lifecycle metrics."""

    def __init__(self) -> None:
        """Creates the metrics in a fresh registry."""
        self.registry = CollectorRegistry()
        self._models: frozenset[str] = frozenset()
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self._example_children: dict[tuple[str, str, str], Counter] = {}
        self.requests = Counter(
            "serving_requests",
            "Requests by model, version, method, protocol and status code.",
            ["model", "version", "method", "protocol", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "serving_request_latency_seconds",
            "Request latency by model, version, method and protocol.",
            ["model", "version", "method", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.examples = Counter(
            "serving_examples",
            # TF Serving's example-count metric (`:tensorflow:serving:request_example_counts`):
            # counted by the service for every answered Predict/Classify/Regress.
            "Examples (first-dimension rows of the inputs) answered.",
            ["model", "version", "method"],
            registry=self.registry,
        )
        self.loaded_versions = Gauge(
            "serving_loaded_versions",
            "Versions AVAILABLE per model.",
            ["model"],
            registry=self.registry,
        )
        self.version_loads = Counter(
            "serving_version_loads",
            "Version load attempts by outcome (ok, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "serving_version_load_seconds",
            "Time to load and warm up a version.",
            ["model"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.warmup_requests = Counter(
            "serving_warmup_requests",
            "Warm-up requests replayed.",
            ["model"],
            registry=self.registry,
        )
        self.validation_failures = Counter(
            "serving_input_validation_failures",
            "Requests whose examples violate the schema, by validation mode.",
            ["model", "mode"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "serving_inflight_requests",
            "Requests being handled.",
            ["protocol"],
            registry=self.registry,
        )

    def set_models(self, names: Iterable[str]) -> None:
        """The configured model names: the only `model` label values requests may add."""
        self._models = frozenset(names)
        self._children = {}  # a removed model's requests are <unknown> from now on
        self._example_children = {}

    def model_label(self, name: str) -> str:
        """`name` when configured, else UNKNOWN_MODEL (safely encoded either way)."""
        return safe_label(name) if name in self._models else UNKNOWN_MODEL

    def observe(
        self, model: str, version: str, method: str, protocol: str, code: str, seconds: float
    ) -> None:
        """Records one finished request (an unconfigured model is counted as UNKNOWN_MODEL)."""
        key = (model, version, method, protocol, code)
        children = self._children.get(key)
        if children is None:
            # `labels()` takes a lock and builds the label tuple (~10-30 us per request, two
            # of them); the children are cached per label set, which the model check bounds.
            label = self.model_label(model)
            if label == UNKNOWN_MODEL:
                version = ""
            children = (
                self.requests.labels(label, version, method, protocol, code),
                self.latency.labels(label, version, method, protocol),
            )
            if label != UNKNOWN_MODEL:  # unknown names would grow the cache instead
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_examples(self, model: str, version: str, method: str, count: int) -> None:
        """Adds `count` answered examples (`model` is a served one: the label is its name)."""
        key = (model, version, method)
        child = self._example_children.get(key)
        if child is None:  # `labels()` per request costs a lock and a tuple (see `observe`)
            child = self._example_children[key] = self.examples.labels(model, version, method)
        child.inc(count)

    def exposition(self) -> bytes:
        """Returns the metrics in Prometheus text format."""
        return generate_latest(self.registry)
