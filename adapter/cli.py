"""Command line: `python -m torch_visualization summary LOGDIR`.

A thin front end on the findings engine (`torch_visualization.findings`),
the same one the tab's Findings strip reads through `GET /findings`: the
command prints what the tab shows. Torch-free.

Exit status: 0, or 1 with `--strict` when anything was flagged; 2 for bad
arguments or a logdir with no runs of ours.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap

from torch_visualization.findings import KINDS, Thresholds
from torch_visualization.findings import source as findings_source

GRADIENT_TAG = findings_source.GRAD_NORM
ZERO_FRACTION_TAG = findings_source.ZERO_FRACTION

DEFAULT_LOW = Thresholds.low
DEFAULT_HIGH = Thresholds.high
DEFAULT_RATIO = Thresholds.ratio
DEFAULT_DEAD = Thresholds.dead
DEFAULT_ENTROPY = Thresholds.entropy
DEFAULT_OUTLIER = Thresholds.outlier

DESCRIPTION = """\
%s

Reads through TensorBoard's own loader, so every logdir TensorBoard reads
works here too (local, s3://, ...). The thresholds and the reasoning behind
them are in the README ("Findings")."""

EPILOG = """\
exit status: 0; 1 with --strict when anything was flagged; 2 for bad
arguments or a logdir with no torch-visualization runs."""


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
        help="per run: what is wrong (gradients, updates, activations, attention, outputs, loss), "
        "where and since when",
        description=DESCRIPTION % textwrap.fill(
            "Diagnoses every run under LOGDIR and prints, per run, its findings: what is "
            "wrong, in which layers, parameters, modules, attention heads or classes, from which logged "
            "step, with the numbers. Checked: %s." % ", ".join(KINDS), width=76
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument("logdir", help="directory of runs, as given to tensorboard --logdir")
    summary.add_argument("--low", type=_positive_float, default=DEFAULT_LOW,
                         help="gradient norms below this, and 100x below the typical "
                         "parameter's, are vanishing (default %(default)g)")
    summary.add_argument("--high", type=_positive_float, default=DEFAULT_HIGH,
                         help="gradient norms above this are exploding (default %(default)g)")
    summary.add_argument("--ratio", type=_positive_float, default=DEFAULT_RATIO,
                         help="a layer whose per-element gradient is below RATIO x the "
                         "typical parameter's at the same step is vanishing "
                         "(default %(default)g; 0 turns that test off)")
    summary.add_argument("--dead", type=_positive_float, default=DEFAULT_DEAD,
                         help="activation modules with at least this fraction of "
                         "exactly-zero outputs are dead (default %(default)g)")
    summary.add_argument("--entropy", type=_positive_float, default=DEFAULT_ENTROPY,
                         help="attention heads whose entropy is below this fraction of a "
                         "uniform map's (with half their module's heads) have collapsed "
                         "(default %(default)g)")
    summary.add_argument("--outlier", type=_positive_float, default=DEFAULT_OUTLIER,
                         help="outputs whose max |x| is at least this many times their rms "
                         "have massive activations (default %(default)g)")
    summary.add_argument("--grad-tag", default=GRADIENT_TAG,
                         help="bars tag with gradient norms (default %(default)s)")
    summary.add_argument("--zero-tag", default=ZERO_FRACTION_TAG,
                         help="bars tag with zero fractions (default %(default)s)")
    summary.add_argument("--json", action="store_true",
                         help="print the findings as JSON, the same objects as the "
                         "plugin's GET /findings (strict JSON: NaN and Infinity "
                         "are strings)")
    summary.add_argument("--strict", action="store_true",
                         help="exit with status 1 when anything was flagged")
    return parser


def report(result):
    """The `--json` document: the body `GET /findings` answers.

    Args:
      result: `{run: [Finding, ...]}` as `findings.diagnose_logdir` returns.
    """
    return {
        "runs": {run: [f.to_json() for f in found] for run, found in result.items()},
        "checks": list(KINDS),
    }


def format_report(result):
    """The findings as lines of text, one block per run."""
    lines = []
    for run, found in result.items():
        if not found:
            lines.append("run %s: no problems found" % run)
            continue
        lines.append("run %s: %d finding%s" % (run, len(found), "" if len(found) == 1 else "s"))
        for f in found:
            lines.append("  %-7s %s (%s): %s" % (f.severity, f.kind, f.tag, f.message))
    lines.append("checked: %s" % ", ".join(KINDS))
    return lines


def main(argv=None, stdout=None):
    """Runs the command line; returns the exit status.

    Args:
      argv: Arguments without the program name (`sys.argv[1:]` by default).
      stdout: Where the report goes (`sys.stdout` by default).
    """
    stdout = stdout or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.low > args.high:
        parser.error("--low (%g) must not exceed --high (%g)" % (args.low, args.high))
    try:
        thresholds = Thresholds(low=args.low, high=args.high, ratio=args.ratio, dead=args.dead,
                                entropy=args.entropy, outlier=args.outlier)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    from torch_visualization import findings

    result = findings.diagnose_logdir(
        args.logdir, thresholds, grad_tag=args.grad_tag, zero_tag=args.zero_tag
    )
    if not result:
        print("no torch-visualization runs under %s" % args.logdir, file=sys.stderr)
        return 2
    if args.json:
        json.dump(report(result), stdout, indent=2, allow_nan=False)
        stdout.write("\n")
    else:
        stdout.write("\n".join(format_report(result)) + "\n")
    flagged = any(result.values())
    return 1 if args.strict and flagged else 0
