"""The load test's outcome for people and the KFP UI: `system.Metrics` scalars and Markdown."""

import dataclasses

from components.load_test.load import LoadResult
from components.reports.markdown import Document


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The verdict of one load test.

    Attributes:
      blessed: Every request succeeded, within the latency bound, after a timely load.
      reason: Why (or why not), in one sentence.
      result: What the load measured; None when no load was sent.
      load_time_s: Server start to the version AVAILABLE (includes process start-up and
        TF Serving's warm-up replay); None when it did not load.
      max_p99_ms: The configured p99 bound.
      load_timeout_s: The configured load timeout.
      server: The server measured: `tensorflow_model_server` or `python -m serving`
        (`settings.TF_SERVING`, `settings.PYTHON_SERVER`); `max_p99_ms` is its bound.
    """

    blessed: bool
    reason: str
    result: LoadResult | None
    load_time_s: float | None
    max_p99_ms: float
    load_timeout_s: float
    server: str

    def scalars(self) -> dict[str, float | str]:
        """Flat values for the InfraBlessing's custom properties and the Metrics artifact."""
        result = self.result
        values: dict[str, float | str] = {
            "blessed": 1 if self.blessed else 0,
            "server": self.server,
            "requests": result.requests if result else 0,
            "failures": result.failures if result else 0,
            "p50_ms": round(result.percentile_ms(50), 3) if result else 0.0,
            "p99_ms": round(result.percentile_ms(99), 3) if result else 0.0,
            # KFP stores no nulls (backend/src/v2/metadata/converter.go): -1 = did not load.
            "load_time_s": round(self.load_time_s, 3) if self.load_time_s is not None else -1.0,
            "max_p99_ms": self.max_p99_ms,
            "load_timeout_s": self.load_timeout_s,
            "reason": self.reason,
        }
        return values


def render_markdown(outcome: Outcome, model_uri: str) -> str:
    """The Markdown report: verdict, reason, measurements against the bounds, first errors."""
    verdict = "Blessed for push" if outcome.blessed else "NOT blessed: the Pusher will not push"
    scalars = outcome.scalars()
    load = "did not load" if outcome.load_time_s is None else f"{outcome.load_time_s:.2f} s"
    rows: list[tuple[object, object]] = [
        ("model", model_uri),
        ("load time (start to AVAILABLE)", f"{load} (bound {outcome.load_timeout_s:g} s)"),
        ("requests", scalars["requests"]),
        ("failures", scalars["failures"]),
        ("p50 latency", f"{scalars['p50_ms']} ms"),
        ("p99 latency", f"{scalars['p99_ms']} ms (bound {outcome.max_p99_ms:g} ms)"),
    ]
    if outcome.result:
        rows += [(f"sent: {k}", v) for k, v in sorted(outcome.result.by_method.items())]
    doc = (
        Document()
        .heading(f"Pre-push load test: {verdict}")
        .paragraph(outcome.reason)
        .table(["", ""], [(str(k), str(v)) for k, v in rows])
    )
    if outcome.result and outcome.result.errors:
        doc.paragraph("First errors:").bullets(outcome.result.errors)
    return str(doc)
