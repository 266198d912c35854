"""What a finding is, and the thresholds that decide one.

A finding is a claim about the user's training (DESIGN.md, "Diagnosis
principles"): it names the kind of problem, the layers, parameters, modules
or classes concerned (most severe first), the first and last logged step it
was seen at, the numbers in one sentence, and the chart to open.
"""

from __future__ import annotations

import dataclasses
import math

from torch_visualization.tb_plugin import encoding

ERROR = "error"
WARNING = "warning"

# The vocabulary is part of the HTTP contract (docs/http_api.md) and of the
# CLI's --json output; the order is the order findings of one run are listed
# in when severity and first step tie.
KINDS = (
    "nonfinite",
    "loss_divergence",
    "exploding_gradients",
    "vanishing_gradients",
    "dead_units",
    "frozen_parameters",
    "large_updates",
    "attention_collapse",
    "activation_outliers",
    "class_collapse",
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosed problem of one run.

    Attributes:
      kind: One of `KINDS`.
      severity: "error" (training is broken) or "warning" (probably wrong).
      tag: The tag the finding is based on (ours, or a user's loss scalar).
      labels: Layers, parameters, modules or classes concerned, most severe
        first.
      first_step: First logged step at which the problem was seen.
      last_step: Last logged step at which it was seen.
      message: One sentence with the numbers, for a practitioner.
      view: What to open: `{"tag", "step"}` (one step of a chart) or
        `{"tag", "view": "overtime"}` (the tag's over-time view).
      value: The number behind the verdict (the worst one); may be NaN or
        +-Inf, which `to_json` encodes as the HTTP API does.
    """

    kind: str
    severity: str
    tag: str
    labels: tuple
    first_step: int
    last_step: int
    message: str
    view: dict
    value: float = math.nan

    def to_json(self):
        """A dict for `json.dumps` (strict JSON: non-finite numbers as strings)."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "tag": self.tag,
            "labels": list(self.labels),
            "first_step": int(self.first_step),
            "last_step": int(self.last_step),
            "message": self.message,
            "view": dict(self.view),
            "value": encoding.encode_array(float(self.value)),
        }


def step_view(tag, step):
    """`view` opening one step of a chart."""
    return {"tag": tag, "step": int(step)}


def overtime_view(tag):
    """`view` opening the over-time view of a tag."""
    return {"tag": tag, "view": "overtime"}


def sort_findings(findings):
    """Errors first, then by first step, then in `KINDS` order."""
    return sorted(
        findings,
        key=lambda f: (f.severity != ERROR, f.first_step, KINDS.index(f.kind), f.tag),
    )


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The numbers that turn statistics into findings (README, "Findings").

    Attributes:
      low: Absolute floor for a parameter's gradient L2 norm; below it (and
        100x below the typical parameter) the gradient is vanishing.
      ratio: A parameter whose per-element gradient (mean |g|) is below
        `ratio` times the typical one (the 75th percentile over parameters)
        at the same step is vanishing; 0 turns that test off.
      high: Gradient L2 norms above this are exploding.
      growth: A gradient norm this many times its own start (median of the
        first three logged steps), and at least `growth_floor`, is exploding.
      growth_floor: See `growth`.
      history_orders: A parameter whose gradient fell this many orders of
        magnitude relative to the rest of the network, from where it started,
        is vanishing (when it is also 100x below the typical one).
      dead: Activation modules with at least this fraction of exactly-zero
        outputs are dead.
      update_matrix: `updates/ratio` above this for a parameter with two or
        more dimensions (weight matrices, convolutions) is a large update.
      update_vector: The same for one-dimensional parameters (biases, norm
        scales and shifts: their norm is small, so relative updates of
        0.2-0.5 are normal) and parameters of unknown shape.
      persist: Logged steps in a row a gradient, activation or update
        condition must hold (fewer when the run has fewer logged steps).
      loss_factor: A loss is diverging when its smoothed value is this many
        times its smoothed minimum so far and above where it started.
      collapse: A class pie (mean softmax, no true classes known) is
        collapsed when one class holds at least this share (and at least
        halfway from uniform to all) for `persist` logged steps up to the
        end: an imbalanced data set (80/20) is not a collapse.
      entropy: An attention head collapses when its mean entropy is below
        this fraction of a uniform map's (ln keys; for causal maps the mean
        over query rows of ln(row length)), with at least half the heads of
        its module below it at the same step, for `persist` logged steps.
      outlier: A block output whose max |x| is at least this many times its
        rms for `persist` logged steps has massive activations (activation
        modules, sparse by design, are not judged).
    """

    low: float = 1e-7
    ratio: float = 1e-4
    high: float = 1e3
    growth: float = 1e4
    growth_floor: float = 1.0
    history_orders: float = 3.0
    dead: float = 0.95
    update_matrix: float = 0.1
    update_vector: float = 2.0
    persist: int = 3
    loss_factor: float = 10.0
    collapse: float = 0.95
    entropy: float = 0.3
    outlier: float = 30.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError("threshold %s must be a number, got %r" % (field.name, value))
            if not math.isfinite(value) and field.name != "high":
                raise ValueError("threshold %s must be finite, got %r" % (field.name, value))
            if value < 0 or value != value:
                raise ValueError("threshold %s must be >= 0, got %r" % (field.name, value))
        if self.low > self.high:
            raise ValueError("low (%g) must not exceed high (%g)" % (self.low, self.high))
        if self.persist < 1 or self.persist != int(self.persist):
            raise ValueError("persist must be a whole number >= 1, got %r" % self.persist)
        for name in ("collapse", "entropy"):
            if getattr(self, name) > 1:
                raise ValueError("%s is a fraction and must be <= 1, got %r" % (name, getattr(self, name)))
        if self.outlier <= 1:
            raise ValueError("outlier must be > 1 (max |x| is never below the rms), got %r" % self.outlier)
        if self.loss_factor <= 1:
            raise ValueError("loss_factor must be > 1, got %r" % self.loss_factor)
