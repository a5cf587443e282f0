"""Renders an evaluation as one self-contained HTML page with hand-written inline SVG plots.

The KFP UI shows a `system.HTML` artifact's file in a sandboxed frame; the page fetches
nothing (no script, stylesheet, font or image from elsewhere), so it also renders offline.
"""

import html
from collections.abc import Mapping, Sequence

from metadata.tfma_results import (
    COMPARED_METRICS,
    HEADLINE_METRICS,
    CalibrationBucket,
    EvaluationResult,
    RocPoint,
    SliceResult,
)

CANDIDATE_COLOR = "#1f6feb"
BASELINE_COLOR = "#9aa4b2"
_SERIES_COLORS = ("#1f6feb", "#d9480f", "#2b8a3e", "#862e9c")
# Slices per feature drawn in the per-slice charts (largest first): company has dozens.
MAX_SLICES_PER_FEATURE = 12

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:24px;
color:#1b1f24;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}h3{font-size:15px;margin:18px 0 4px}.muted{color:#57606a;font-size:13px}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-size:15px}
.ok{background:#dafbe1;border:1px solid #4ac26b}.bad{background:#ffebe9;border:1px solid #ff8182}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}
.row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
svg text{font-family:inherit;font-size:11px;fill:#1b1f24}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: float | None, name: str = "") -> str:
    if value is None:
        return "-"
    if name == "example_count":
        return f"{value:,.0f}"
    return f"{value:.4f}"


def legend(items: Sequence[tuple[str, str]]) -> str:
    """A colour key: one swatch and name per (name, colour)."""
    return (
        '<div class="legend muted">'
        + "".join(f'<span style="background:{c}"></span>{_e(n)}' for n, c in items)
        + "</div>"
    )


def _unit_axes(size: int, pad: int, x_label: str, y_label: str) -> list[str]:
    """A square plot of [0, 1] x [0, 1] with ticks, grid and the diagonal."""
    inner = size - 2 * pad
    parts = [
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#57606a"/>'
    ]
    for i in range(0, 11, 2):
        t = i / 10
        x = pad + t * inner
        y = pad + (1 - t) * inner
        parts += [
            f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{pad + inner}" stroke="#eaeef2"/>',
            f'<line x1="{pad}" y1="{y:.1f}" x2="{pad + inner}" y2="{y:.1f}" stroke="#eaeef2"/>',
            f'<text x="{x:.1f}" y="{pad + inner + 14}" text-anchor="middle">{t:.1f}</text>',
            f'<text x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end">{t:.1f}</text>',
        ]
    parts += [
        f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#adb5bd" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{pad + inner / 2}" y="{size - 6}" text-anchor="middle">{_e(x_label)}</text>',
        f'<text transform="translate(12 {pad + inner / 2}) rotate(-90)" '
        f'text-anchor="middle">{_e(y_label)}</text>',
    ]
    return parts


def _svg(width: int, height: int, parts: Sequence[str], label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'
        + "".join(parts)
        + "</svg>"
    )


def roc_svg(
    roc: Sequence[RocPoint], baseline_roc: Sequence[RocPoint], operating: RocPoint | None
) -> str:
    """The ROC curve (recall against false positive rate), with the operating point."""
    size, pad = 340, 40
    inner = size - 2 * pad

    def xy(p: RocPoint) -> str:
        return f"{pad + p.false_positive_rate * inner:.1f},{pad + (1 - p.recall) * inner:.1f}"

    parts = _unit_axes(size, pad, "false positive rate", "recall (true positive rate)")
    if baseline_roc:
        parts.append(
            f'<polyline fill="none" stroke="{BASELINE_COLOR}" stroke-width="2" '
            f'stroke-dasharray="6 3" points="{" ".join(xy(p) for p in baseline_roc)}"/>'
        )
    parts.append(
        f'<polyline fill="none" stroke="{CANDIDATE_COLOR}" stroke-width="2.5" '
        f'points="{" ".join(xy(p) for p in roc)}"/>'
    )
    if operating is not None:
        x, y = xy(operating).split(",")
        parts.append(f'<circle cx="{x}" cy="{y}" r="5" fill="#d9480f"/>')
    return _svg(size, size, parts, "ROC curve")


def calibration_svg(series: Mapping[str, Sequence[CalibrationBucket]]) -> str:
    """Mean label against mean prediction per prediction bucket, one line per slice."""
    size, pad = 340, 40
    inner = size - 2 * pad
    parts = _unit_axes(size, pad, "mean prediction in bucket", "observed rate of positives")
    for (name, buckets), color in zip(series.items(), _SERIES_COLORS, strict=False):
        points = [
            (pad + b.mean_prediction * inner, pad + (1 - b.mean_label) * inner, b.examples)
            for b in buckets
        ]
        if not points:
            continue
        most = max(n for _, _, n in points)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
            f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}"/>'
        )
        for x, y, n in points:
            # Area proportional to the bucket's share of examples.
            radius = 2.5 + 5.5 * (n / most) ** 0.5
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{color}" '
                f'fill-opacity="0.55"><title>{_e(name)}: {n:.0f} examples</title></circle>'
            )
    return _svg(size, size, parts, "calibration")


def bars_svg(
    rows: Sequence[tuple[str, Sequence[tuple[float | None, str]]]], width: int = 560
) -> str:
    """Horizontal bars in [0, 1]: one group per row label, one bar per (value, color).

    A None value draws no bar and says `n/a`.
    """
    bar_h, gap = 12, 8
    # About 6.5 px per character at the 11 px font: room for the longest label.
    label_w = int(min(340, 16 + 6.5 * max((len(label) for label, _ in rows), default=10)))
    plot_w = width - label_w - 60
    height = 24
    parts = []
    y = 8
    for label, bars in rows:
        group_top = y
        for value, color in bars:
            if value is None:
                parts.append(f'<text x="{label_w + 4}" y="{y + bar_h - 2}">n/a</text>')
            else:
                w = max(0.0, min(1.0, value)) * plot_w
                parts += [
                    f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                    f'fill="{color}"/>',
                    f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 2}">{value:.3f}</text>',
                ]
            y += bar_h + 2
        parts.append(
            f'<text x="{label_w - 8}" y="{(group_top + y) / 2 + 3:.1f}" '
            f'text-anchor="end">{_e(label)}</text>'
        )
        y += gap
    height = y + 18
    for i in range(0, 11, 2):
        x = label_w + i / 10 * plot_w
        parts.insert(0, f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{y}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 12}" text-anchor="middle">{i / 10:.1f}</text>')
    return _svg(width, height, parts, "bar chart")


def _metrics_table(results: Sequence[SliceResult], with_baseline: bool) -> str:
    names = [n for n in HEADLINE_METRICS if any(n in r.candidate for r in results)]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for r in results:
        cells = []
        for n in names:
            text = _fmt(r.candidate.get(n), n)
            if with_baseline and n in r.baseline:
                text += f'<br><span class="muted">{_fmt(r.baseline[n], n)}</span>'
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><td>{_e(r.name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>slice</th>{head}</tr>{''.join(rows)}</table>"


def _confusion_table(evaluation: EvaluationResult) -> str:
    m = evaluation.confusion
    if m is None:
        return ""
    return (
        f"<table><tr><th>threshold {m.threshold:g}</th><th>predicted 0</th><th>predicted 1</th>"
        f"</tr><tr><td>actual 0</td><td>{m.true_negatives:,.0f}</td>"
        f"<td>{m.false_positives:,.0f}</td></tr><tr><td>actual 1</td>"
        f"<td>{m.false_negatives:,.0f}</td><td>{m.true_positives:,.0f}</td></tr></table>"
    )


def _operating_point(evaluation: EvaluationResult) -> RocPoint | None:
    m = evaluation.confusion
    if m is None:
        return None
    positives = m.true_positives + m.false_negatives
    negatives = m.false_positives + m.true_negatives
    return RocPoint(
        m.threshold,
        m.true_positives / positives if positives else 0.0,
        m.false_positives / negatives if negatives else 0.0,
    )


def _auc(metrics: dict[str, float]) -> float | None:
    # AUC needs both classes; TFMA reports 0 for a slice without positives (or negatives).
    if metrics.get("mean_label") in (0.0, 1.0):
        return None
    return metrics.get("auc")


def _per_slice_section(evaluation: EvaluationResult) -> str:
    features = sorted({s.feature for s in evaluation.slices if s.feature})
    blocks = []
    for feature in features:
        results = [s for s in evaluation.slices if s.feature == feature]
        shown = results[:MAX_SLICES_PER_FEATURE]  # largest first
        if all(s.value.lstrip("-").isdigit() for s in shown):
            shown.sort(key=lambda s: int(s.value))  # hours read better in order
        note = (
            f" ({len(shown)} largest of {len(results)} slices)" if len(results) > len(shown) else ""
        )
        rows = [
            (
                f"{s.value} (n={s.candidate.get('example_count', 0):,.0f})",
                [(_auc(s.candidate), CANDIDATE_COLOR)]
                + ([(_auc(s.baseline), BASELINE_COLOR)] if s.baseline else []),
            )
            for s in shown
        ]
        blocks.append(
            f"<h3>{_e(feature)}{_e(note)}</h3>"
            '<div class="muted">AUC per slice (n/a: the slice has one class only)</div>'
            + bars_svg(rows)
            + _metrics_table(shown, evaluation.has_baseline)
        )
    return "".join(blocks)


def render_html(
    evaluation: EvaluationResult, *, blessed: bool, reason: str, baseline: str, title: str
) -> str:
    """The evaluation report: verdict, headline metrics, ROC, calibration, baseline, slices.

    Args:
      evaluation: The evaluation read from TFMA's output.
      blessed: The Evaluator's verdict.
      reason: Why, in one or more lines.
      baseline: What the candidate was compared with.
      title: The page title (e.g. the pipeline and run).

    Returns:
      A complete HTML document that loads nothing from anywhere.
    """
    verdict = "Blessed" if blessed else "Not blessed"
    reason_html = "<br>".join(_e(line) for line in reason.splitlines())
    series = [("candidate", CANDIDATE_COLOR)]
    if evaluation.has_baseline:
        series.append(("baseline (served model)", BASELINE_COLOR))
    compare_rows = [
        (
            f"{r.name}: {metric}",
            [(r.candidate.get(metric), CANDIDATE_COLOR)]
            + ([(r.baseline.get(metric), BASELINE_COLOR)] if r.baseline else []),
        )
        for r in evaluation.headline
        for metric in COMPARED_METRICS
        if metric in r.candidate
    ]
    compare_note = (
        "Each bar pair: the candidate, then the model being served."
        if evaluation.has_baseline
        else "No baseline: nothing was served yet, so only the absolute thresholds applied."
    )
    calibration = {name: b for name, b in evaluation.calibration.items() if b}
    calibration_legend = list(zip(calibration, _SERIES_COLORS, strict=False))
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<div class="muted">baseline: {_e(baseline)}</div>',
        f'<div class="verdict {"ok" if blessed else "bad"}"><b>{verdict}</b><br>'
        f"{reason_html}</div>",
        "<h2>Headline metrics</h2>",
        _metrics_table(evaluation.headline, evaluation.has_baseline),
        '<div class="muted">'
        + ("Second line in a cell: the baseline. " if evaluation.has_baseline else "")
        + "Precision, recall and binary accuracy at the operating threshold.</div>",
        "<h2>Candidate against baseline</h2>",
        f'<div class="muted">{_e(compare_note)}</div>',
        legend(series),
        bars_svg(compare_rows, width=640),
        '<div class="row">',
        "<div><h2>ROC curve (whole eval split)</h2>",
        legend([*series, ("operating threshold", "#d9480f")]),
        roc_svg(evaluation.roc, evaluation.baseline_roc, _operating_point(evaluation)),
        _confusion_table(evaluation),
        "</div>",
        "<div><h2>Calibration</h2>",
        legend(calibration_legend),
        calibration_svg(calibration),
        '<div class="muted">Dots on the diagonal: predicted probabilities match observed '
        "rates.<br>Dot area: examples in the bucket.</div></div>",
        "</div>",
        "<h2>Metrics per slice</h2>",
        _per_slice_section(evaluation),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
