"""Command line: `python -m torch_visualization summary LOGDIR`.

Prints, per run, the diagnosis the "Model Insight" tab makes visible, as text
for a terminal or a CI log:

- gradient norms (`gradients/norm` bars, as `watch()` logs them) that fell
  below an absolute floor or below a fraction of the step's largest layer
  norm ("vanishing"), or rose above a ceiling ("exploding"), with the first
  step it happened, at any logged step;
- dead units: activation modules whose fraction of exactly-zero outputs
  (`activations/zero_fraction`) at the latest step is at or above a threshold;
- non-finite values (NaN, +-Inf) in any of our charts.

Reads through `torch_visualization.read` (TensorBoard's own loader), so every
logdir TensorBoard reads works here too (local, `s3://`, ...). Torch-free.

Exit status: 0, or 1 with `--strict` when anything was flagged; 2 for bad
arguments or a logdir with no runs of ours.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

GRADIENT_TAG = "gradients/norm"
ZERO_FRACTION_TAG = "activations/zero_fraction"

# Defaults: an L2 gradient norm below 1e-7 carries no signal in float32
# training; a layer 10^4 times smaller than the largest is the classic
# vanishing-gradient picture; above 1e3 is an exploding gradient for any
# normally initialised network; 90% exact zeros is a dead ReLU layer.
DEFAULT_LOW = 1e-7
DEFAULT_HIGH = 1e3
DEFAULT_RATIO = 1e-4
DEFAULT_DEAD = 0.9


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a finite number >= 0, got %r" % text)
    return value


def build_parser():
    """The argument parser (exposed for tests and `--help`)."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_visualization",
        description="Diagnose torch-visualization runs from the command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser(
        "summary",
        help="per run: vanishing/exploding gradients, dead units, non-finite values",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument("logdir", help="directory of runs, as given to tensorboard --logdir")
    summary.add_argument("--low", type=_positive_float, default=DEFAULT_LOW,
                         help="flag gradient norms below this (default %(default)g)")
    summary.add_argument("--high", type=_positive_float, default=DEFAULT_HIGH,
                         help="flag gradient norms above this (default %(default)g)")
    summary.add_argument("--ratio", type=_positive_float, default=DEFAULT_RATIO,
                         help="flag layers whose gradient norm is below RATIO x the "
                         "step's largest one (default %(default)g; 0 turns it off)")
    summary.add_argument("--dead", type=_positive_float, default=DEFAULT_DEAD,
                         help="flag activations with at least this fraction of zero "
                         "outputs (default %(default)g)")
    summary.add_argument("--grad-tag", default=GRADIENT_TAG,
                         help="bars tag with gradient norms (default %(default)s)")
    summary.add_argument("--zero-tag", default=ZERO_FRACTION_TAG,
                         help="bars tag with zero fractions (default %(default)s)")
    summary.add_argument("--json", action="store_true",
                         help="print the findings as JSON instead of text")
    summary.add_argument("--strict", action="store_true",
                         help="exit with status 1 when anything was flagged")
    return parser


def diagnose(data, *, low=DEFAULT_LOW, high=DEFAULT_HIGH, ratio=DEFAULT_RATIO,
             dead=DEFAULT_DEAD, grad_tag=GRADIENT_TAG, zero_tag=ZERO_FRACTION_TAG):
    """Findings for every run of `read()`'s result.

    Args:
      data: `{run: {tag: Series}}` as `torch_visualization.read` returns.
      low: Gradient norms below this are flagged "vanishing".
      high: Gradient norms above this are flagged "exploding".
      ratio: Norms below `ratio` times the step's largest finite norm are
        flagged "vanishing" too; 0 turns that check off.
      dead: Zero fractions at or above this (latest step) are flagged.
      grad_tag: The bars tag holding gradient norms.
      zero_tag: The bars tag holding activation zero fractions.

    Returns:
      `{run: {"gradients": [...], "dead": [...], "nonfinite": [...],
      "steps": [first, last]}}`, JSON-serialisable; each list entry is a dict
      naming the layer or tag, the first step, the number of steps and the
      latest value involved.
    """
    if low > high:
        raise ValueError("--low (%g) must not exceed --high (%g)" % (low, high))
    report = {}
    for run, tags in sorted(data.items()):
        steps = [s for series in tags.values() for s in series.steps]
        report[run] = {
            "steps": [min(steps), max(steps)] if steps else [],
            "gradients": _gradient_findings(tags.get(grad_tag), low, high, ratio),
            "dead": _dead_findings(tags.get(zero_tag), dead),
            "nonfinite": _nonfinite_findings(tags),
        }
    return report


def _bar_columns(series):
    """`(labels, steps, [layers] arrays)` of a bars series (column 0 of 2-D)."""
    values = [np.asarray(v, dtype=np.float64) for v in series.values]
    values = [v[:, 0] if v.ndim == 2 else v for v in values]
    return series.labels, series.steps, values


def _gradient_findings(series, low, high, ratio):
    if series is None or series.kind != "bars" or not series.steps:
        return []
    labels, steps, values = _bar_columns(series)
    found = {}
    for step, norms in zip(steps, values):
        finite = norms[np.isfinite(norms)]
        largest = finite.max() if finite.size else math.nan
        for i, norm in enumerate(norms):
            if not math.isfinite(norm):
                continue  # reported under non-finite values
            problems = []
            if norm < low or (ratio > 0 and largest > 0 and norm < ratio * largest):
                problems.append("vanishing")
            if norm > high:
                problems.append("exploding")
            for problem in problems:
                name = labels[i] if i < len(labels) else str(i)
                entry = found.setdefault((problem, i), {
                    "layer": name, "problem": problem, "first_step": int(step),
                    "steps": 0, "worst": float(norm),
                })
                entry["steps"] += 1
                pick = max if problem == "exploding" else min
                entry["worst"] = float(pick(entry["worst"], norm))
    last = values[-1]
    for (_, i), entry in found.items():
        entry["last"] = float(last[i]) if i < len(last) else math.nan
        entry["of_steps"] = len(steps)
    return sorted(found.values(), key=lambda e: (e["first_step"], e["layer"], e["problem"]))


def _dead_findings(series, dead):
    if series is None or series.kind != "bars" or not series.steps:
        return []
    labels, steps, values = _bar_columns(series)
    last = values[-1]
    return [
        {"layer": labels[i] if i < len(labels) else str(i), "zero_fraction": float(f),
         "step": int(steps[-1])}
        for i, f in enumerate(last)
        if math.isfinite(f) and f >= dead
    ]


def _nonfinite_findings(tags):
    found = []
    for tag, series in sorted(tags.items()):
        counts = [int(np.size(v) - np.count_nonzero(np.isfinite(v))) for v in series.values]
        bad = [(step, n) for step, n in zip(series.steps, counts) if n]
        if not bad:
            continue
        entry = {"tag": tag, "first_step": int(bad[0][0]), "steps": len(bad),
                 "of_steps": len(series.steps), "last_count": counts[-1]}
        if series.kind == "bars" and series.labels:
            last = np.asarray(series.values[-1])
            rows = ~np.isfinite(last) if last.ndim == 1 else ~np.isfinite(last).all(axis=1)
            entry["layers"] = [series.labels[i] for i in np.flatnonzero(rows)]
        found.append(entry)
    return found


def format_report(report, *, dead):
    """The findings as lines of text, one block per run."""
    lines = []
    for run, findings in report.items():
        span = findings["steps"]
        lines.append("run %s (steps %s)" % (run, "%d..%d" % tuple(span) if span else "none"))
        gradients = findings["gradients"]
        if not gradients:
            lines.append("  gradient norms: nothing flagged")
        for g in gradients:
            lines.append(
                "  gradient norm %s: %s from step %d (%d of %d steps), worst %.3g, last %.3g"
                % (g["layer"], g["problem"], g["first_step"], g["steps"], g["of_steps"],
                   g["worst"], g["last"])
            )
        if findings["dead"]:
            for d in findings["dead"]:
                lines.append("  dead units %s: %.1f%% zero outputs at step %d"
                             % (d["layer"], 100 * d["zero_fraction"], d["step"]))
        else:
            lines.append("  dead units: none at or above %.0f%% zeros" % (100 * dead))
        if not findings["nonfinite"]:
            lines.append("  non-finite values: none")
        for n in findings["nonfinite"]:
            layers = (" (latest: %s)" % ", ".join(n["layers"][:5])) if n.get("layers") else ""
            lines.append(
                "  non-finite values in %s: from step %d, %d of %d steps, %d at the latest%s"
                % (n["tag"], n["first_step"], n["steps"], n["of_steps"], n["last_count"], layers)
            )
    return lines


def _flagged(report):
    return any(f["gradients"] or f["dead"] or f["nonfinite"] for f in report.values())


def main(argv=None, stdout=None):
    """Runs the command line; returns the exit status.

    Args:
      argv: Arguments without the program name (`sys.argv[1:]` by default).
      stdout: Where the report goes (`sys.stdout` by default).
    """
    stdout = stdout or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    from torch_visualization.reader import read

    try:
        report = diagnose(
            read(args.logdir), low=args.low, high=args.high, ratio=args.ratio,
            dead=args.dead, grad_tag=args.grad_tag, zero_tag=args.zero_tag,
        )
    except ValueError as e:
        parser.error(str(e))
    if not report:
        print("no torch-visualization runs under %s" % args.logdir, file=sys.stderr)
        return 2
    if args.json:
        json.dump(report, stdout, indent=2, allow_nan=True)
        stdout.write("\n")
    else:
        stdout.write("\n".join(format_report(report, dead=args.dead)) + "\n")
    return 1 if args.strict and _flagged(report) else 0
