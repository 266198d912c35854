"""The checks: pure functions from logged statistics to findings.

Numpy in, `Finding`s out; no I/O, no TensorBoard, no torch. Each check
judges a statistic against the parameter's own history and the rest of the
network at the same step, never against one absolute number alone, so that
healthy runs of ordinary models stay silent (the thresholds and why they are
what they are: README, "Findings").

Inputs are `Series`: the logged steps of one tag (increasing) and one value
row per step. Bars keep column 0 (what the chart draws); values may hold NaN
and +-Inf.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from torch_visualization.findings.model import (
    ERROR,
    WARNING,
    Finding,
    Thresholds,
    overtime_view,
    step_view,
)


@dataclasses.dataclass(frozen=True)
class Series:
    """The logged steps of one tag.

    Attributes:
      tag: Tag name.
      labels: Names along the last value axis (layers, modules, classes);
        empty for scalars.
      steps: int64 array `[T]`, increasing.
      values: float64 array `[T, ...]`: `[T, L]` bars, `[T, K]` pies,
        `[T, K, K]` confusion matrices, `[T]` scalars.
    """

    tag: str
    labels: tuple
    steps: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, tag, labels, steps, values):
        """Builds a Series, checking that steps and values agree."""
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64)
        if values.shape[:1] != steps.shape:
            raise ValueError(
                "tag %r: %d steps but values of shape %s" % (tag, steps.size, values.shape)
            )
        if steps.size > 1 and not (np.diff(steps) > 0).all():
            raise ValueError("tag %r: steps must be strictly increasing" % tag)
        return cls(tag, tuple(str(label) for label in labels), steps, values)

    def __len__(self):
        return int(self.steps.size)


def align(a, b):
    """`a` and `b` restricted to their common steps and common labels.

    Tags logged in the same event have the same steps, but TensorBoard
    samples each tag on its own once a run outgrows the sampling bound.

    Returns:
      `(a', b')` with equal steps and labels in `a`'s label order.
    """
    steps, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    if a.labels == b.labels:
        la = lb = slice(None)
        labels = a.labels
    else:
        position = {label: i for i, label in enumerate(b.labels)}
        pairs = [(i, position[label]) for i, label in enumerate(a.labels) if label in position]
        la = [i for i, _ in pairs]
        lb = [j for _, j in pairs]
        labels = tuple(a.labels[i] for i in la)
    return (
        Series(a.tag, labels, steps, a.values[ia][:, la]),
        Series(b.tag, labels, steps, b.values[ib][:, lb]),
    )


def _row_quantile(values, q):
    """Per row: the `q` quantile of the non-NaN entries (NaN for none).

    As `np.nanquantile(values, q, axis=1)` (linear interpolation), without
    its per-row Python loop: a run's 1,000 steps cost one sort.
    """
    ordered = np.sort(values, axis=1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=1)
    position = q * np.maximum(count - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    rows = np.arange(values.shape[0])
    out = ordered[rows, low] + (ordered[rows, high] - ordered[rows, low]) * (position - low)
    out[count == 0] = np.nan
    return out


def _first_streak(mask, length):
    """Per column: index where the first run of >= `length` Trues starts, or -1."""
    rows, cols = mask.shape
    length = max(1, min(length, rows))
    run = np.zeros(cols, dtype=np.int64)
    start = np.full(cols, -1, dtype=np.int64)
    for t in range(rows):
        run = np.where(mask[t], run + 1, 0)
        hit = (start < 0) & (run >= length)
        start[hit] = t - length + 1
    return start


def _last_true(mask):
    """Per column: index of the last True, or -1."""
    rows = mask.shape[0]
    flipped = np.argmax(mask[::-1], axis=0)
    return np.where(mask.any(axis=0), rows - 1 - flipped, -1)


def _names(labels, count=3):
    shown = ", ".join(labels[:count])
    return shown + (" and %d more" % (len(labels) - count) if len(labels) > count else "")


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _label(series, i):
    return series.labels[i] if i < len(series.labels) else str(i)


def gradient_scale(norm, mean_abs=None, numel=None):
    """The per-element gradient size used to compare parameters.

    The root mean square `norm / sqrt(numel)` when every parameter's size is
    known (from the weights heatmaps' original shapes), else
    `gradients/mean_abs` (mean |g|) when logged: neither grows with the
    parameter's size as the L2 norm does. Else the norm itself.
    """
    if numel and all(numel.get(label, 0) > 0 for label in norm.labels):
        sizes = np.array([numel[label] for label in norm.labels], dtype=np.float64)
        return Series(norm.tag, norm.labels, norm.steps, norm.values / np.sqrt(sizes))
    if mean_abs is None or not len(mean_abs):
        return norm
    norm_aligned, scale = align(norm, mean_abs)
    return scale if len(norm_aligned) else norm


def exploding_mask(norm, thresholds):
    """`[T, L]` bool: gradient norms that exploded (absolute or vs own start)."""
    values = norm.values
    finite = np.isfinite(values)
    explode = finite & (values > thresholds.high)
    if thresholds.growth > 0:
        positive = np.where(finite & (values > 0), values, np.nan)
        start = np.full(values.shape[1], np.nan)
        for i in range(values.shape[1]):
            seen = positive[:, i][~np.isnan(positive[:, i])][:3]
            if seen.size:
                start[i] = np.median(seen)
        with np.errstate(invalid="ignore"):
            grown = (values >= thresholds.growth * start) & (values >= thresholds.growth_floor)
        explode |= finite & grown
    return explode


def exploding_gradients(norm, thresholds):
    """Finds gradient norms that exploded.

    Args:
      norm: `gradients/norm` bars (L2 norm per parameter).
      thresholds: `Thresholds` (`high`, `growth`, `growth_floor`).

    Returns:
      A list with at most one `exploding_gradients` finding.
    """
    if not len(norm):
        return []
    explode = exploding_mask(norm, thresholds)
    if not explode.any():
        return []
    first = _first_streak(explode, 1)
    last = _last_true(explode)
    worst = np.where(explode, norm.values, -np.inf).max(axis=0)
    order = [i for i in np.argsort(-worst, kind="stable") if first[i] >= 0]
    labels = tuple(_label(norm, i) for i in order)
    first_i = int(first[order].min())
    top = order[0]
    step = int(norm.steps[first_i])
    worst_step = int(norm.steps[int(np.argmax(np.where(explode[:, top], norm.values[:, top], -np.inf)))])
    message = (
        "gradient norm of %s exploded: %.3g at its worst (step %d); first from step %d"
        % (_names(labels), worst[top], worst_step, step)
    )
    return [
        Finding(
            "exploding_gradients", ERROR, norm.tag, labels, step,
            int(norm.steps[int(last[order].max())]), message, step_view(norm.tag, step), float(worst[top]),
        )
    ]


def _vanishing_state(norm, scale, thresholds):
    """`(norm, s, rel, reference, vanish)` on common steps, or None.

    `rel` is log10 of each parameter's per-element gradient size over the
    step's reference; `vanish` the `[T, L]` mask of the vanishing condition.
    """
    if not len(norm) or scale.values.ndim != 2 or scale.values.shape[1] < 2:
        return None
    norm, scale = align(norm, scale)
    if not len(norm):
        return None
    s = scale.values
    valid = np.isfinite(s) & (s > 0) & np.isfinite(norm.values)
    valid &= ~exploding_mask(norm, thresholds)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.where(valid, np.log10(np.where(valid, s, 1.0)), np.nan)
    counts = valid.sum(axis=1)
    reference = np.where(counts >= 2, _row_quantile(log_s, 0.75), np.nan)
    rel = log_s - reference[:, None]
    with np.errstate(invalid="ignore"):
        vanish = np.zeros_like(valid)
        if thresholds.ratio > 0:
            vanish |= rel < math.log10(thresholds.ratio)
        vanish |= (norm.values < thresholds.low) & (rel < -2)
        if thresholds.history_orders > 0:
            start = np.full(rel.shape[1], np.nan)
            for i in range(rel.shape[1]):
                seen = rel[:, i][~np.isnan(rel[:, i])][:3]
                if seen.size:
                    start[i] = np.median(seen)
            vanish |= (rel - start < -thresholds.history_orders) & (rel < -2)
        vanish &= valid
    return norm, s, rel, reference, vanish


def _module(name):
    return name.rsplit(".", 1)[0] if "." in name else name


def underflow_labels(norm, scale, thresholds):
    """Parameters whose gradient met the vanishing condition at some step.

    Their updates may be too small to change a float32 weight, so an update
    ratio of exactly 0 is no sign of a parameter left out of the optimizer.
    """
    state = _vanishing_state(norm, scale, thresholds)
    if state is None:
        return set()
    norm, vanish = state[0], state[4]
    return {_label(norm, i) for i in np.flatnonzero(vanish.any(axis=0))}


# A vanishing layer is an error, not a warning, when it does not learn at
# all: its update ratio ||dw|| / ||w|| is below float32's resolution of a
# weight (2^-23), so its weights barely change. Adam rescales small
# gradients, so a vanishing layer may still learn: the update ratio decides.
# Without `updates/ratio`, a layer 10^6 below the typical parameter is one:
# with SGD its relative updates are then ~1e-9 where the rest's are ~1e-3.
STALLED_UPDATE = 2.0 ** -23
VANISHING_ERROR_ORDERS = 6


def vanishing_gradients(norm, scale, thresholds, *, ratio=None):
    """Finds layers whose gradients vanished next to the rest of the network.

    The reference at each step is the 75th percentile of the per-element
    gradient sizes over parameters whose gradient is present, finite and not
    exploding: robust to a few exploding layers ("a layer is not vanishing
    because another one explodes") and to the smaller half of the network.
    A layer (module) vanishes when all its parameters do: a bias in front of
    a BatchNorm has a zero gradient by construction while its weight learns.

    Args:
      norm: `gradients/norm` bars.
      scale: Per-element gradient size (`gradient_scale`), same steps/labels
        as `norm` or alignable to them.
      thresholds: `Thresholds` (`ratio`, `low`, `history_orders`, `persist`).
      ratio: `updates/ratio` bars, or None.

    Returns:
      A list with at most one `vanishing_gradients` finding: an error when
      a vanishing parameter's median update ratio over its vanishing steps
      is below `STALLED_UPDATE` (without update ratios: when the worst
      layer is 10^`VANISHING_ERROR_ORDERS` or more below the typical
      parameter), else a warning.
    """
    state = _vanishing_state(norm, scale, thresholds)
    if state is None:
        return []
    norm, s, rel, reference, vanish = state
    first = _first_streak(vanish, thresholds.persist)
    modules = {}
    for i in range(len(norm.labels)):
        modules.setdefault(_module(norm.labels[i]), []).append(i)
    for members in modules.values():
        # Parameters with no gradient at all (unused) do not vote.
        voting = [i for i in members if np.isfinite(rel[:, i]).any()]
        if any(first[i] < 0 for i in voting):
            first[members] = -1
    flagged = np.flatnonzero(first >= 0)
    if not flagged.size:
        return []
    # Only the steps of each parameter's streaks count toward "how bad".
    worst = np.array([np.nanmin(np.where(vanish[:, i], rel[:, i], np.nan)) for i in flagged])
    order = flagged[np.argsort(worst, kind="stable")]
    worst_rel = float(np.min(worst))
    labels = tuple(_label(norm, i) for i in order)
    first_i = int(first[flagged].min())
    last_i = int(_last_true(vanish[:, flagged]).max())
    step = int(norm.steps[first_i])
    top = order[0]
    at = first[top]
    message = (
        "gradients of %s are as small as %.1g times the typical parameter's "
        "(per-element |g| %.2g against %.2g at step %d), from step %d"
        % (_names(labels), 10.0 ** worst_rel, s[at, top], 10.0 ** reference[at],
           int(norm.steps[at]), step)
    )
    stalled = _stalled(norm, vanish, order, ratio, worst_rel)
    if stalled is not None:
        message += ": %s does not learn (%s)" % (
            stalled[0], "updates %.2g of its norm, below float32's resolution" % stalled[1]
            if np.isfinite(stalled[1]) else "10^%d below the typical parameter" % VANISHING_ERROR_ORDERS)
    severity = ERROR if stalled is not None else WARNING
    return [
        Finding(
            "vanishing_gradients", severity, norm.tag, labels, step,
            int(norm.steps[last_i]), message, step_view(norm.tag, step), 10.0 ** worst_rel,
        )
    ]


def _stalled(norm, vanish, flagged, ratio, worst_rel):
    """`(parameter, its median update ratio)` of a vanishing parameter that
    stopped learning (see STALLED_UPDATE), `(worst, NaN)` without update
    ratios when the gap alone says so, else None. `flagged` is in order of
    severity."""
    known = [i for i in flagged if ratio is not None and norm.labels[i] in ratio.labels]
    if not known:
        return (_label(norm, flagged[0]), math.nan) if worst_rel <= -VANISHING_ERROR_ORDERS else None
    rows = {int(s): t for t, s in enumerate(ratio.steps)}
    for i in known:
        column = ratio.labels.index(norm.labels[i])
        moved = [ratio.values[rows[int(s)], column] for s in norm.steps[vanish[:, i]] if int(s) in rows]
        moved = [m for m in moved if np.isfinite(m)]
        if moved and np.median(moved) < STALLED_UPDATE:
            return _label(norm, i), float(np.median(moved))
    return None


def dead_units(zero_fraction, thresholds):
    """Finds activation modules whose outputs are (nearly) all exactly zero.

    Args:
      zero_fraction: `activations/zero_fraction` bars (NaN: did not run).
      thresholds: `Thresholds` (`dead`, `persist`).

    Returns:
      A list with at most one `dead_units` finding.
    """
    if not len(zero_fraction):
        return []
    values = zero_fraction.values
    with np.errstate(invalid="ignore"):
        dead = np.isfinite(values) & (values >= thresholds.dead)
    first = _first_streak(dead, thresholds.persist)
    flagged = np.flatnonzero(first >= 0)
    if not flagged.size:
        return []
    mean = np.array([values[dead[:, i], i].mean() for i in flagged])
    order = flagged[np.argsort(-mean, kind="stable")]
    labels = tuple(_label(zero_fraction, i) for i in order)
    step = int(zero_fraction.steps[int(first[flagged].min())])
    last = int(zero_fraction.steps[int(_last_true(dead[:, flagged]).max())])
    top = float(mean.max())
    everything = bool((values[dead] >= 1.0).all())
    message = "%.1f%% of the outputs of %s are exactly zero from step %d: those units pass no signal" % (
        100 * top, _names(labels), step,
    )
    return [
        Finding(
            "dead_units", ERROR if everything else WARNING, zero_fraction.tag, labels,
            step, last, message, step_view(zero_fraction.tag, step), top,
        )
    ]


def frozen_parameters(norm, ratio, thresholds, *, exclude=(), unchanged=None):
    """Finds parameters that get gradients but never change.

    Two signs, both "from its first such step to the end": the update ratio
    is exactly 0 at every logged step where the gradient is nonzero (a param
    group with lr 0), or the parameter is not stepped by any watched
    optimizer (watch() leaves it out of `updates/ratio`) and its weights
    heatmap did not change between two held steps (left out of the
    optimizer). Parameters without a gradient (unused, or behind dead units)
    are not frozen in this sense and are left alone, as are schedules that
    unfreeze later or warm up from lr 0.

    Args:
      norm: `gradients/norm` bars.
      ratio: `updates/ratio` bars.
      thresholds: `Thresholds` (unused; uniform signature).
      exclude: Labels not to report (vanishing ones: an update too small to
        change a float32 weight is the vanishing gradient's doing).
      unchanged: `{label: (first, last)}` of parameters missing from
        `ratio` whose weights were equal at held steps `first` and `last`.

    Returns:
      A list with at most one `frozen_parameters` finding.
    """
    del thresholds
    unchanged = unchanged or {}
    has_grad_all = np.isfinite(norm.values) & (norm.values > 0)
    found = {}  # label -> (first index into norm.steps, last)
    for i, name in enumerate(norm.labels):
        if name in unchanged and name not in exclude:
            first, last = unchanged[name]
            inside = (norm.steps >= first) & (norm.steps <= last) & has_grad_all[:, i]
            if inside.sum() >= min(2, len(norm)):
                hits = np.flatnonzero(inside)
                found[name] = (int(hits[0]), int(hits[-1]))
    a, b = align(norm, ratio)
    if len(a):
        has_grad = np.isfinite(a.values) & (a.values > 0)
        frozen = has_grad & (b.values == 0)
        moving = has_grad & ~frozen
        need = min(2, len(a))
        for i, name in enumerate(a.labels):
            if name in exclude or frozen[:, i].sum() < need:
                continue
            first = int(np.argmax(frozen[:, i]))
            if moving[first:, i].any():
                continue
            last = int(_last_true(frozen[:, i : i + 1])[0])
            found[name] = (
                int(np.searchsorted(norm.steps, a.steps[first])),
                int(np.searchsorted(norm.steps, a.steps[last])),
            )
    if not found:
        return []
    labels = tuple(sorted(found, key=lambda name: (found[name][0], norm.labels.index(name))))
    step = int(norm.steps[min(f for f, _ in found.values())])
    last = int(norm.steps[max(l for _, l in found.values())])
    one = len(labels) == 1
    message = (
        "%s %s nonzero gradients but never %s from step %d: "
        "left out of the optimizer, or a learning rate of 0?"
        % (_names(labels), "gets" if one else "get", "changes" if one else "change", step)
    )
    # Parameters left out of the optimizer have no update bar: show their gradients.
    tag = ratio.tag if set(labels) <= set(ratio.labels) else norm.tag
    return [
        Finding(
            "frozen_parameters", WARNING, tag, labels, step, last,
            message, overtime_view(tag), 0.0,
        )
    ]


def large_updates(ratio, thresholds, *, ndims=None):
    """Finds update/weight ratios far above the usual ~1e-3.

    Two tests. The network's: at a logged step, the median ratio over weight
    matrices (parameters with two or more dimensions; every parameter when no
    shapes are known) is above `update_matrix`: the learning rate is too
    high for the whole model (one such step is enough: a huge learning rate
    often wrecks the model in a few steps). A parameter's own: its ratio
    stays above the lenient limit (`update_vector`, judged over `persist`
    logged steps in a row): a parameter that starts at zero has ratios near
    1 for its first few steps (its norm is then one or two updates), and
    biases and norm scales with tiny norms 0.2-0.5 for long.

    Non-finite ratios are ignored: a parameter that starts at zero has no
    denominator at its first update (logs written before watch() defined
    that case), and NaN weights are reported as `nonfinite`.

    Args:
      ratio: `updates/ratio` bars, ||w_after - w_before|| / ||w_before||.
      thresholds: `Thresholds` (`update_matrix`, `update_vector`, `persist`).
      ndims: `{label: number of dimensions}` of the parameters.

    Returns:
      A list with at most one `large_updates` finding.
    """
    if not len(ratio):
        return []
    ndims = ndims or {}
    values = ratio.values
    count = values.shape[1]
    matrices = np.array([ndims.get(_label(ratio, i), 0) >= 2 for i in range(count)], dtype=bool)
    if not matrices.any():
        matrices[:] = True
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        columns = np.where(finite[:, matrices], values[:, matrices], np.nan)
        median = _row_quantile(columns, 0.5)
        network = (median > thresholds.update_matrix)[:, None] & matrices[None, :] & finite & (
            values > thresholds.update_matrix
        )
        own = finite & (values > thresholds.update_vector)
    large = network | (own & (_first_streak(own, thresholds.persist) >= 0)[None, :])
    own_first = _first_streak(own, thresholds.persist)
    net_first = _first_streak(network, 1)
    first = np.where(
        (net_first >= 0) & ((own_first < 0) | (net_first < own_first)), net_first, own_first
    )
    flagged = np.flatnonzero(first >= 0)
    if not flagged.size:
        return []
    worst = np.array([values[large[:, i], i].max() for i in flagged])
    order = flagged[np.argsort(-worst, kind="stable")]
    labels = tuple(_label(ratio, i) for i in order)
    step = int(ratio.steps[int(first[flagged].min())])
    last = int(ratio.steps[int(_last_true(large[:, flagged]).max())])
    top = float(worst.max())
    message = (
        "updates of %s are up to %.2g times the weights' own norm in one step (usual: about 1e-3), "
        "from step %d: the learning rate is probably too high"
        % (_names(labels), top, step)
    )
    return [
        Finding(
            "large_updates", ERROR if top >= 1 else WARNING, ratio.tag, labels, step, last,
            message, step_view(ratio.tag, step), top,
        )
    ]


def uniform_entropy(queries, keys, causal):
    """Mean entropy (nats) per query row of a uniform attention map.

    `ln(keys)` without a mask; with a causal mask row i sees i + 1 keys (the
    last `queries` of `keys` positions), so the mean over rows of
    ln(row length): about ln(keys) - 1 for square maps. The first rows of a
    causal map have low entropy by construction; the logged entropy is the
    mean over every row, so this is the level to judge it against.
    """
    if keys < 1 or queries < 1:
        return math.nan
    if not causal:
        return math.log(keys)
    lengths = np.minimum(np.arange(1, queries + 1) + max(keys - queries, 0), keys)
    return float(np.mean(np.log(lengths)))


def head_module(label):
    """`blocks.0.attn` of the entropy label `blocks.0.attn/head3`."""
    return label.rsplit("/head", 1)[0]


def attention_collapse(entropy, shapes, thresholds):
    """Finds attention heads whose entropy collapsed toward zero.

    A head's entropy is judged as a fraction of a uniform map's
    (`uniform_entropy`, from the module's map shape and whether its mask is
    causal). A head collapses where that fraction is below
    `thresholds.entropy` while at least half the heads of its module are
    below it too, for `persist` logged steps in a row: one sharp head is a
    specialised one (previous token, first token), and the entropy of one
    example is noisy; collapse (Zhai et al., 2023) takes a layer's heads.

    Args:
      entropy: `attention/entropy` bars (labels `<module>/head<k>`, nats).
      shapes: `{module: (queries, keys, causal)}` of the attention maps.
      thresholds: `Thresholds` (`entropy`, `persist`).

    Returns:
      A list with at most one `attention_collapse` finding; labels are the
      heads, the lowest entropy first.
    """
    if not len(entropy) or entropy.values.ndim != 2:
        return []
    modules = [head_module(_label(entropy, i)) for i in range(entropy.values.shape[1])]
    reference = np.array([
        uniform_entropy(*shapes[m]) if m in shapes else math.nan for m in modules
    ])
    groups = {}
    for i, module in enumerate(modules):
        groups.setdefault(module, []).append(i)
    values = entropy.values.copy()
    for heads in groups.values():
        # Every head of a module at exactly 0 is watch()'s mark of a map
        # with no finite row (NaN weights), not of attention on one key.
        blank = np.all(values[:, heads] == 0, axis=1)
        values[np.ix_(blank, heads)] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = values / np.where(reference > 0, reference, np.nan)[None, :]
        low = np.isfinite(fraction) & (fraction < thresholds.entropy)
    collapsed = np.zeros_like(low)
    for heads in groups.values():
        counted = np.isfinite(fraction[:, heads]).sum(axis=1)
        half = (2 * low[:, heads].sum(axis=1) >= counted) & (counted > 0)
        collapsed[:, heads] = low[:, heads] & half[:, None]
    first = _first_streak(collapsed, thresholds.persist)
    flagged = np.flatnonzero(first >= 0)
    if not flagged.size:
        return []
    worst = np.array([np.nanmin(np.where(collapsed[:, i], fraction[:, i], np.nan)) for i in flagged])
    order = flagged[np.argsort(worst, kind="stable")]
    labels = tuple(_label(entropy, i) for i in order)
    step = int(entropy.steps[int(first[flagged].min())])
    last = int(entropy.steps[int(_last_true(collapsed[:, flagged]).max())])
    top = order[0]
    at = int(np.nanargmin(np.where(collapsed[:, top], fraction[:, top], np.nan)))
    started = entropy.values[:, top][np.isfinite(entropy.values[:, top])]
    message = (
        "attention of %s collapsed onto very few keys from step %d: %s has %.2f nats of entropy "
        "at step %d, %.0f%% of a uniform map's %.2f (it started at %.2f)"
        % (_names(labels), step, labels[0], entropy.values[at, top], int(entropy.steps[at]),
           100 * fraction[at, top], reference[top], started[0] if started.size else math.nan)
    )
    return [
        Finding(
            "attention_collapse", WARNING, entropy.tag, labels, step, last,
            message, overtime_view(entropy.tag), float(fraction[at, top]),
        )
    ]


def activation_outliers(max_abs, rms, thresholds, *, zero_fraction=None):
    """Finds outputs with massive activations: max |x| far above their rms.

    Judged on block outputs (the residual stream) and modules the user
    named, not on activation modules (the labels of `zero_fraction`): their
    outputs are sparse by design (ReLU's zeros, GELU's and SiLU's near-zeros
    for negative inputs), more so as training goes on, which raises max/rms
    without any outlier; a massive activation made there shows in the output
    of the block it feeds. The ratio is bounded by sqrt(number of elements /
    number of outliers); healthy block outputs sit at 3-7 (README, "Findings").

    Args:
      max_abs: `activations/max_abs` bars.
      rms: `activations/rms` bars (same labels).
      thresholds: `Thresholds` (`outlier`, `persist`).
      zero_fraction: `activations/zero_fraction` bars (their labels are
        left out), or None.

    Returns:
      A list with at most one `activation_outliers` finding; labels are
      the modules, the first to show it first (later blocks of a residual
      stream inherit an outlier from the block that made it), then in model
      order.
    """
    if not len(max_abs) or not len(rms):
        return []
    top, root = align(max_abs, rms)
    if not len(top):
        return []
    activations = set(zero_fraction.labels) if zero_fraction is not None else set()
    judged = np.array([label not in activations for label in top.labels], dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(root.values > 0, top.values / root.values, np.nan)
        out = np.isfinite(ratio) & (ratio >= thresholds.outlier) & judged[None, :]
    first = _first_streak(out, thresholds.persist)
    flagged = np.flatnonzero(first >= 0)
    if not flagged.size:
        return []
    order = flagged[np.argsort(first[flagged], kind="stable")]
    labels = tuple(_label(top, i) for i in order)
    step = int(top.steps[int(first[flagged].min())])
    last = int(top.steps[int(_last_true(out[:, flagged]).max())])
    lead = order[0]
    at = int(np.nanargmax(np.where(out[:, lead], ratio[:, lead], np.nan)))
    others = "" if len(labels) == 1 else " (also in %s)" % _names(labels[1:])
    message = (
        "massive activations in the output of %s from step %d: its max |x| is %.0f times its "
        "rms at step %d (%.3g against %.3g; usual: 3-7)%s"
        % (labels[0], step, ratio[at, lead], int(top.steps[at]), top.values[at, lead],
           root.values[at, lead], others)
    )
    return [
        Finding(
            "activation_outliers", WARNING, top.tag, labels, step, last,
            message, step_view(top.tag, step), float(ratio[at, lead]),
        )
    ]


def collapse_threshold(classes):
    """Share of one class that counts as collapse: halfway from uniform to all."""
    return (1.0 + 1.0 / classes) / 2.0


def class_collapse(series, thresholds=None):
    """Finds outputs or predictions concentrated on one class, up to the end.

    Args:
      series: A pie (`[T, K]` shares or counts, any scale) or a confusion
        matrix (`[T, K, K]`, rows true classes, columns predicted ones).
        With a confusion matrix, a class is only collapsed onto when its
        predicted share is also halfway from its true share to 1 (an
        imbalanced data set is not a collapse). A pie does not know the
        true shares: its top class must hold `thresholds.collapse` (0.95)
        or more, for `persist` logged steps up to the end.
      thresholds: `Thresholds` (`collapse`, `persist`); the defaults when None.

    Returns:
      A list with at most one `class_collapse` finding; its label is the
      class collapsed onto (the other classes are not concerned).
    """
    thresholds = thresholds or Thresholds()
    values = series.values
    if not len(series):
        return []
    if values.ndim == 3:
        predicted, truth = values.sum(axis=1), values.sum(axis=2)
    elif values.ndim == 2:
        predicted, truth = values, None
    else:
        return []
    classes = predicted.shape[1]
    if classes < 2:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        total = predicted.sum(axis=1)
        ok = np.isfinite(predicted).all(axis=1) & (predicted >= 0).all(axis=1) & (total > 0)
        share = predicted / np.where(ok, total, 1.0)[:, None]
        top = share.argmax(axis=1)
        top_share = share[np.arange(len(series)), top]
        limit = np.full(len(series), collapse_threshold(classes))
        if truth is None:
            limit = np.maximum(limit, thresholds.collapse)
        else:
            truth_total = truth.sum(axis=1)
            true_share = truth[np.arange(len(series)), top] / np.where(truth_total > 0, truth_total, 1.0)
            limit = np.maximum(limit, (1.0 + true_share) / 2.0)
        collapsed = ok & (top_share >= limit)
    # Collapsed now (at the last logged step) and since when; early
    # training often starts concentrated and spreads out.
    if not collapsed[-1]:
        return []
    start = len(series) - 1
    while start > 0 and collapsed[start - 1]:
        start -= 1
    need = min(2 if truth is not None else thresholds.persist, len(series))
    if len(series) - start < need:
        return []
    # The class concerned is the one collapsed onto now (what the view
    # shows); a model that collapses onto another class at each evaluation
    # is still collapsed, and the message says onto which before.
    name = _label(series, int(top[-1]))
    labels = (name,)
    earlier = [_label(series, c) for c in dict.fromkeys(int(k) for k in top[start:-1][::-1])
               if c != int(top[-1])]
    step = int(series.steps[start])
    what = "predictions" if values.ndim == 3 else "outputs"
    message = "%s concentrate on class %s: %.0f%% at step %d, collapsed onto one class since step %d%s" % (
        what, name, 100 * top_share[-1], int(series.steps[-1]), step,
        " (earlier onto %s)" % _names(earlier) if earlier else "",
    )
    return [
        Finding(
            "class_collapse", WARNING, series.tag, labels, step, int(series.steps[-1]),
            message, step_view(series.tag, int(series.steps[-1])), float(top_share[-1]),
        )
    ]


def _smooth(values, width=3):
    """Trailing median over `width` points (noise of single batches); the
    first points use the ones there are."""
    out = np.array([np.median(values[: t + 1]) for t in range(min(width - 1, values.size))])
    if values.size >= width:
        windows = np.lib.stride_tricks.sliding_window_view(values, width)
        out = np.concatenate([out, np.median(windows, axis=1)])
    return out


def loss_divergence(loss, thresholds):
    """Finds a loss that became non-finite or grew far above its minimum.

    Args:
      loss: A scalar series (`[T]`) whose tag names a loss.
      thresholds: `Thresholds` (`loss_factor`).

    Returns:
      A list with at most one `loss_divergence` finding.
    """
    values = loss.values.reshape(-1)
    if not values.size:
        return []
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        before = "" if i == 0 else " (last finite value %.3g)" % values[i - 1]
        # The tag names a loss ("loss", "loss/train", "val_loss"): it is the subject.
        message = "%s became %s at step %d%s" % (
            loss.tag, "NaN" if np.isnan(values[i]) else ("+Inf" if values[i] > 0 else "-Inf"),
            int(loss.steps[i]), before,
        )
        return [
            Finding(
                "loss_divergence", ERROR, loss.tag, (loss.tag,), int(loss.steps[i]),
                int(loss.steps[np.flatnonzero(bad)[-1]]), message, overtime_view(loss.tag), float(values[i]),
            )
        ]
    if values.size < 3:
        return []
    smooth = _smooth(values)
    low = np.minimum.accumulate(smooth)
    start_level = smooth[0]
    if (values > 0).all():
        limit = np.maximum(thresholds.loss_factor * low, start_level)
    else:
        # Losses that can be zero or negative: distance above the minimum.
        limit = np.maximum(low + thresholds.loss_factor * (start_level - low), start_level)
        limit = np.where(start_level > low, limit, np.inf)
    diverged = (smooth > limit) & (smooth > start_level)
    if not diverged.any():
        return []
    t = int(np.argmax(diverged))
    # The smoothed curve lags by up to two points: report the first raw
    # point of the rise that already crossed the limit.
    while t > 0 and values[t - 1] > limit[t]:
        t -= 1
    i_min = int(np.argmin(values[: t + 1]))
    last = int(loss.steps[np.flatnonzero(diverged)[-1]])
    if values[i_min] > 0:
        how = "%.3g times its minimum %.3g" % (values[t] / values[i_min], values[i_min])
    else:
        how = "up from its minimum %.3g" % values[i_min]
    message = "%s diverged: %.3g at step %d, %s (step %d)" % (
        loss.tag, values[t], int(loss.steps[t]), how, int(loss.steps[i_min]),
    )
    return [
        Finding(
            "loss_divergence", ERROR, loss.tag, (loss.tag,), int(loss.steps[t]), last,
            message, overtime_view(loss.tag), float(values.max()),
        )
    ]


def nonfinite(series_list, *, what, counts=()):
    """Finds NaN/Inf in one family of tags (gradients, weights or outputs).

    Args:
      series_list: `Series` whose values are either the numbers themselves
        or counts of NaN/Inf elements (`gradients/nonfinite`, and the
        weights' counts `source.read_run` makes): a count > 0 is a hit.
      what: "gradients", "weights" or "outputs of <tag>" (for the message).
      counts: Tags whose values are such counts.

    Returns:
      A list with at most one `nonfinite` finding; labels are the
      parameters (gradients), weight names (weights) or classes (outputs)
      affected, the earliest first.
    """
    first_by_label = {}
    last_step = None
    tag_of_first = None
    step_of_first = None
    count_at_first = 0
    for series in series_list:
        if not len(series):
            continue
        values = series.values.reshape(len(series), -1)
        if series.tag in counts:
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(values) | (values > 0)
        else:
            bad = ~np.isfinite(values)
        rows = bad.any(axis=1)
        if not rows.any():
            continue
        first = int(np.argmax(rows))
        step = int(series.steps[first])
        last = int(series.steps[np.flatnonzero(rows)[-1]])
        last_step = last if last_step is None else max(last_step, last)
        if step_of_first is None or step < step_of_first:
            step_of_first, tag_of_first = step, series.tag
            count_at_first = int(bad[first].sum())
        if len(series.labels) == values.shape[1]:
            for col in np.flatnonzero(bad.any(axis=0)):
                name = series.labels[col]
                at = int(series.steps[int(np.argmax(bad[:, col]))])
                first_by_label[name] = min(first_by_label.get(name, at), at)
        else:
            name = series.labels[0] if len(series.labels) == 1 else series.tag
            first_by_label[name] = min(first_by_label.get(name, step), step)
    if step_of_first is None:
        return []
    labels = tuple(sorted(first_by_label, key=lambda name: first_by_label[name]))
    message = "NaN/Inf in the %s from step %d (first: %s)" % (
        what, step_of_first, _names([l for l in labels if first_by_label[l] == step_of_first] or list(labels)),
    )
    return [
        Finding(
            "nonfinite", ERROR, tag_of_first, labels, step_of_first, last_step, message,
            step_view(tag_of_first, step_of_first), float(count_at_first),
        )
    ]
