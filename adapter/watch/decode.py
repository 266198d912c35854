"""A packet's numbers back into tagged values (runs on the writer thread).

Pure functions: numpy in, plain values out, every segment read by its name
(see packet.py). `event_values` wraps them for the event sink, with each
tag's first-event metadata built by the pure builders of summary.py.

This runs beside training, which pays for its CPU time: a `Layout`, worked
out once per packet layout (segments and entries, mostly the same at every
logging step), holds index arrays, so that a packet's bar inputs are ONE
gather and its bars a few numpy operations, with no loop over entries.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from torch_visualization import metadata, reduce, sink, summary
from torch_visualization.watch import functional
from torch_visualization.watch import plan as plans
from torch_visualization.watch import render
from torch_visualization.watch import tokens

# Names shown in the non-finite warning.
_WARN_NAMES = 5

# Layouts kept per watch (several: an optimizer stepping on some logging
# steps only, a module running on some); past this the cache starts over.
_LAYOUTS = 16

_GRAD_ROWS = [reduce.STAT_ROWS.index(name) for name in ("sq_sum", "abs_sum", "abs_max")]


@dataclasses.dataclass
class Memory:
    """What the decoding of one watch keeps between packets (writer thread).

    Attributes:
      warned: Non-finite warnings already given.
      entropy_heads: Per attention module index, its head count, fixed at
        the first packet with attention (the labels of `attention/entropy`).
      pie_classes: The class indices of a big output's pie (the most likely
        ones at the first logging step), fixed then; `pie_labels` theirs.
      zero_fraction: `(labels, slots)` of `activations/zero_fraction`
        (activation modules and functional ReLU calls), fixed at its first
        packet.
      freeze: Called as `freeze(tag, kind, labels)` when labels get fixed
        after `watch()` started (or None).
      layouts: `{layout key: Layout}`; `heatmap_key`: `(packet.heatmaps, its
        part of the key)` (the reducer's one list: its key is built once).
    """

    warned: set = dataclasses.field(default_factory=set)
    entropy_heads: dict = None
    pie_classes: list = None
    pie_labels: list = None
    zero_fraction: tuple = None
    freeze: object = None
    layouts: dict = dataclasses.field(default_factory=dict)
    heatmap_key: tuple = (None, None)


def layout_of(packet, plan, memory):
    """The packet's `Layout`, from `memory` or built (and kept) now."""
    if memory.heatmap_key[0] is not packet.heatmaps:
        memory.heatmap_key = (packet.heatmaps, tuple(
            (tag, tuple(shape)) for tag, shape, _ in packet.heatmaps))
    key = (
        tuple(packet.segments.items()),
        tuple([(suffix, tuple(positions)) for suffix, positions in packet.gradient_groups]),
        tuple([(suffix, tuple(positions)) for suffix, positions in packet.update_groups]),
        tuple(packet.activation_entries),
        tuple(packet.module_entries),
        packet.module_numels if packet.module_numels is None else tuple(packet.module_numels),
        tuple([(index, tuple(pooled), tuple(original))
               for index, pooled, original in packet.attention_entries]),
        memory.heatmap_key[1],
    )
    layout = memory.layouts.get(key)
    if layout is None:
        layout = Layout(packet, plan, memory)
        if len(memory.layouts) >= _LAYOUTS:
            memory.layouts.clear()
        memory.layouts[key] = layout
    return layout


class Layout:
    """Where the numbers of the packets of one layout lie.

    Built at the first packet of a layout, reading its segments in decoding
    order (labels fixed then are claimed in that order). `inputs =
    array[source]` gathers every bar input; `grads`, `updates`,
    `activations`, `modules` are `(slice of inputs, rows)` (None: no such
    segment). A position in two groups takes the later one's numbers, as
    the per-group writes did. `renderers`: see render.event.
    """

    grads = updates = activations = modules = attention = heatmaps = None

    def __init__(self, packet, plan, memory):
        self.renderers = {}  # with classes or not -> render.Renderer or None
        self.source, segments = [], packet.segments
        if packet.gradient_groups:
            where = {}  # position -> its sums of squares, sums, maxima, counts
            for suffix, positions in packet.gradient_groups:
                stats, counts = segments["grads." + suffix][0], segments["nonfinite." + suffix][0]
                for column, position in enumerate(positions):
                    where[position] = [stats + row * len(positions) + column
                                       for row in _GRAD_ROWS] + [counts + column]
            self.grads = self._take(np.array(list(where.values()), np.intp).reshape(-1, 4).T)
            self.grad_target = np.array(list(where), np.intp)
            self.grad_numels = np.asarray(plan.grad_numels, np.float64)[self.grad_target]
        if packet.update_groups:
            where = {}  # position -> (before, update)
            for suffix, positions in packet.update_groups:
                offset = segments["updates." + suffix][0]
                for column, position in enumerate(positions):
                    where[position] = (offset + column, offset + len(positions) + column)
            self.updates = self._take(np.array(list(where.values()), np.intp).reshape(-1, 2).T)
            # Per `plan.update_positions` entry its column (k: not stepped, NaN).
            columns = {position: column for column, position in enumerate(where)}
            self.update_pick = np.array([columns.get(position, len(where))
                                         for position in plan.update_positions], np.intp)
        if packet.activation_entries:
            self._activations(packet, plan, memory)
        if packet.module_entries:
            self._modules(packet, len(plan.stat_names))
        self.source = np.array(self.source, dtype=np.intp)
        if packet.attention_entries:
            self._attention(packet, plan, memory)
        if "heatmaps" in segments:
            grids, start = [], 0
            for tag, (rows, cols), _ in packet.heatmaps:
                grids.append((tag, start, start + rows * cols, (rows, cols)))
                start += rows * cols
            self.heatmaps = segments["heatmaps"] + (grids,)

    def _take(self, indices):  # `[rows, k]` -> `(slice of inputs, rows)`
        self.source += indices.ravel().tolist()
        return slice(len(self.source) - indices.size, len(self.source)), len(indices)

    def _activations(self, packet, plan, memory):
        if memory.zero_fraction is None:
            # Fixed (and the tag claimed) at its first packet: the functional
            # call sites are known once the first measured forward has ended.
            layout = functional.zero_fraction_layout(plan.activation_names, plan.functional)
            if memory.freeze is not None:
                memory.freeze(plans.TAG_ZERO_FRACTION, "bars", tuple(layout[0]))
            memory.zero_fraction = layout
        (labels, slots), offset = memory.zero_fraction, packet.segments["activations"][0]
        source, bars = [], []
        self.activation_totals = totals = np.zeros(len(labels))  # elements per bar
        for column, (index, numel) in enumerate(packet.activation_entries):
            if index < len(slots):  # functional sites found after the labels were fixed: none
                source.append(offset + column)
                bars.append(slots[index])
                totals[slots[index]] += numel
        self.activations = self._take(np.array([source], np.intp))
        self.activation_bars, missing = np.array(bars, np.intp), ~(totals > 0)
        self.activation_missing = missing if missing.any() else None  # NaN there
        self.activation_labels = {"labels": labels}

    def _modules(self, packet, count):
        """`module_stats` rows: sums of squares, minima, maxima, and once
        combined over ranks counts (then `module_totals` is None); columns
        of modules that ran on no element left out where known."""
        (offset, size), numels = packet.segments["module_stats"], packet.module_numels
        rows = 4 if numels is None else 3
        kept = np.arange(size // rows) if numels is None else np.flatnonzero(np.asarray(numels))
        self.modules = self._take(offset + np.arange(rows)[:, None] * (size // rows) + kept)
        self.module_columns = np.array(packet.module_entries, np.intp)[kept]
        self.module_totals = self.module_missing = self.module_direct = None
        if numels is not None:
            self.module_totals = np.bincount(self.module_columns, minlength=count,
                                             weights=np.asarray(numels, np.float64)[kept])
            missing = ~(self.module_totals > 0)
            self.module_missing = missing if missing.any() else None  # NaN there
            # Each module once, in order, with elements: its column is its bar.
            self.module_direct = (self.module_missing is None
                                  and self.module_columns.tolist() == list(range(count)))

    def _attention(self, packet, plan, memory):
        self.attention, entropies = [], {}
        for index, pooled_shape, original in packet.attention_entries:
            offset, size = packet.segments["attention.%d" % index]
            reduction = "none" if tuple(pooled_shape) == tuple(original) else "mean_pool"
            self.attention.append((plans.TAG_ATTENTION + plan.attention_names[index], offset, size,
                                   tuple(pooled_shape),
                                   {"original_shape": original, "reduction": reduction}))
            entropies[index] = packet.segments["entropy.%d" % index]
        fixed = memory.entropy_heads is None  # its labels: `<module>/head<k>`
        if fixed:
            memory.entropy_heads = {index: size for index, (_, size) in sorted(entropies.items())}
        labels = ["%s/head%d" % (plan.attention_names[index], head)
                  for index, heads in memory.entropy_heads.items() for head in range(heads)]
        if fixed and memory.freeze is not None:
            memory.freeze(plans.TAG_ENTROPY, "bars", tuple(labels))
        source, target, heads = [], [], 0  # where each module's entropies go
        for index, count in memory.entropy_heads.items():
            offset, size = entropies.get(index, (0, None))
            if size == count:  # else not captured in this step: NaN
                source += range(offset, offset + count)
                target += range(heads, heads + count)
            heads += count
        self.entropy = np.array(source, np.intp), np.array(target, np.intp), heads, {"labels": labels}


def step_values(packet, array, plan, memory=None):
    """`[(tag, kind, values, extra)]` of one packet's host array; `extra`
    holds what the first event of a tag needs for its metadata (labels,
    original shape, reduction)."""
    memory = Memory() if memory is None else memory
    layout = layout_of(packet, plan, memory)
    # Once per packet rather than per division: x/0 and 0/0 give what is logged.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = bar_values(array[layout.source].astype(np.float64), plan, layout)
    if layout.attention is not None:
        out += [(tag, "attention", array[offset:offset + size].reshape(shape), extra)
                for tag, offset, size, shape, extra in layout.attention]
        source, target, heads, labels = layout.entropy
        entropy = np.full(heads, np.nan)
        entropy[target] = array[source]
        out.append((plans.TAG_ENTROPY, "bars", entropy, labels))
    out += tokens.token_values(packet, array, plan.tokens)
    if packet.class_samples:
        shares = packet.segment("classes", array).astype(np.float64) / packet.class_samples
        out.append(pie_value(shares, plan, memory))
    sequence = packet.segment("sequence", array)
    if sequence is not None and sequence[2] > 0:
        entropy_sum, top, positions = sequence.astype(np.float64)
        out.append((plans.TAG_SEQUENCE, "bars", np.array([entropy_sum / positions, top]),
                    {"labels": plans.SEQUENCE_STATS}))
    if layout.heatmaps is not None:
        offset, size, grids = layout.heatmaps
        # Heatmaps arrive as block sums; one multiply turns them all into means.
        cells = array[offset:offset + size] * packet.heatmap_scales
        out += [(tag, "heatmap", cells[start:stop].reshape(shape), extra)
                for (tag, start, stop, shape), (_, _, extra) in zip(grids, packet.heatmaps)]
    return out


def bar_values(inputs, plan, layout):
    """The gradient, update and activation bars from a packet's `inputs`."""
    out = []
    if layout.grads is not None:
        stats = inputs[layout.grads[0]].reshape(4, -1)
        np.sqrt(stats[0], out=stats[0])  # L2 norms travel as sums of squares
        stats[1] /= layout.grad_numels  # mean |g|
        bars = np.zeros((4, len(plan.grad_names)))  # gradients not present: 0
        bars[:, layout.grad_target] = stats
        labels = {"labels": plan.grad_names}
        out += [(tag, "bars", row, labels) for tag, row in zip(plans.GRADIENT_TAGS, bars)]
    if layout.updates is not None:
        out.append((plans.TAG_UPDATE_RATIO, "bars",
                    update_ratios(inputs[layout.updates[0]], layout.update_pick),
                    {"labels": plan.update_names}))
    if layout.activations is not None:
        # bincount adds in entry order, as the loop over entries did.
        nonzero = np.bincount(layout.activation_bars, weights=inputs[layout.activations[0]],
                              minlength=len(layout.activation_totals))
        fraction = 1.0 - nonzero / layout.activation_totals
        if layout.activation_missing is not None:
            fraction[layout.activation_missing] = np.nan
        out.append((plans.TAG_ZERO_FRACTION, "bars", fraction, layout.activation_labels))
    if layout.modules is not None:
        out += module_values(inputs[layout.modules[0]].reshape(layout.modules[1], -1), plan, layout)
    return out


def module_values(stats, plan, layout):
    """`activations/rms` and `activations/max_abs` of the stat modules (NaN
    for a module that did not run) from their `module_stats` rows."""
    columns, totals, missing = layout.module_columns, layout.module_totals, layout.module_missing
    count = len(plan.stat_names)
    if totals is None:  # combined over ranks: a module that ran on no rank adds nothing
        columns, stats = columns[stats[3] != 0], stats[:, stats[3] != 0]
        totals = np.bincount(columns, weights=stats[3], minlength=count)
        missing = ~(totals > 0)
    # bincount adds in column order, as the loop over columns did.
    squares = np.bincount(columns, weights=stats[0], minlength=count)
    # max |x| = max(-min, max); np.maximum keeps a NaN (aminmax of an
    # output holding NaN gives NaN), over a module's columns too.
    top = np.maximum(-stats[1], stats[2])
    if not layout.module_direct:
        top, biggest = np.full(count, np.nan), top
        top[columns] = -np.inf
        np.maximum.at(top, columns, biggest)
    rms = np.sqrt(squares / totals)
    if missing is not None:
        rms[missing] = np.nan
    labels = {"labels": plan.stat_names}
    return [(plans.TAG_RMS, "bars", rms, labels), (plans.TAG_MAX_ABS, "bars", top, labels)]


def update_ratios(norms, pick):
    """`updates/ratio` from the squared norms before the step and of the
    update (`pick`: see Layout): ||w_after - w_before|| / ||w_before||,
    and for a parameter that was exactly zero before the step (a
    zero-initialised bias at step 0) 1 when it moved and 0 when it did not:
    the whole parameter is that update. NaN for parameters whose optimizer
    did not step while this logging step was measured.
    """
    before, delta = np.sqrt(norms).reshape(2, -1)
    ratio = np.empty(len(before) + 1)
    np.divide(delta, before, out=ratio[:-1])
    ratio[-1] = np.nan  # what `pick` takes for a parameter not stepped
    if not before.all():  # (NaN counts as nonzero)
        zero = np.flatnonzero(before == 0)
        ratio[zero] = delta[zero] != 0
    return ratio[pick]


def pie_value(shares, plan, memory):
    """The `outputs/classes` pie: every class, or for more than
    `PIE_CLASSES` the classes most likely at the first logging step and one
    "other" slice (labels are fixed per tag)."""
    if len(shares) <= plans.PIE_CLASSES:
        return (plans.TAG_CLASSES, "pie", shares, {"class_names": plan.class_names})
    if memory.pie_classes is None:
        names = plan.class_names or [str(index) for index in range(len(shares))]
        top = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")[:plans.PIE_CLASSES - 1]
        memory.pie_classes = sorted(int(index) for index in top)
        memory.pie_labels = [names[index] for index in memory.pie_classes] + ["other"]
        if memory.freeze is not None:
            memory.freeze(plans.TAG_CLASSES, "pie", tuple(memory.pie_labels))
    kept = shares[memory.pie_classes]
    # Sums added in order (not numpy's pairwise sum), as render.py's C adds.
    values = np.append(kept, max(0.0, float(np.nancumsum(shares)[-1]) - float(np.nancumsum(kept)[-1])))
    return (plans.TAG_CLASSES, "pie", values, {"class_names": memory.pie_labels})


def warn_nonfinite(plan, warned, step, values):
    """Warns once about NaN/Inf gradients and once about NaN/Inf weights.

    Args:
      warned: The set of warnings already given (updated).
    """
    bad = {}
    for tag, kind, array, _ in values:
        if tag == plans.TAG_GRAD_NONFINITE and tag not in warned:
            names = ["%s (%d)" % (name, count) for name, count in zip(plan.grad_names, array) if count]
            if names:
                bad[tag] = names
        elif kind == "heatmap" and plans.TAG_WEIGHTS not in warned and not np.isfinite(array).all():
            bad.setdefault(plans.TAG_WEIGHTS, []).append(tag[len(plans.TAG_WEIGHTS):])
    for key, names in bad.items():
        warned.add(key)
        what, where = (("gradients with NaN/Inf values (count)", "%r and the gradient bars" % key)
                       if key == plans.TAG_GRAD_NONFINITE
                       else ("weights with NaN/Inf values", "'weights/<name>'"))
        more = "" if len(names) <= _WARN_NAMES else " and %d more" % (len(names) - _WARN_NAMES)
        warnings.warn(
            "torch_visualization watch: %s at step %d: %s%s; logged as-is in %s "
            "(warned once)" % (what, step, ", ".join(names[:_WARN_NAMES]), more, where),
            RuntimeWarning,
            stacklevel=2,
        )


def first_value(tag, kind, values, extra):
    """The complete `Summary.Value` of a tag's first event (with metadata)."""
    if kind in ("heatmap", "attention"):
        build = summary.heatmap_summary if kind == "heatmap" else summary.attention_summary
        proto = build(tag, values, original_shape=extra["original_shape"],
                      reduction=extra["reduction"])
    elif kind == "tokens":
        proto = summary.tokens_summary(tag, values)
    elif kind == "pie":
        proto = summary.pie_summary(tag, values, class_names=extra["class_names"] or None)
    else:
        proto = summary.bars_summary(tag, values, labels=extra["labels"])
    return proto.value[0]


def event_values(packet, plan, memory):
    """A sink job's values: rendered in one C call where render.py can, else `FastValues`."""
    packet.wait()
    array = packet.host_array()
    event = render.event(packet, array, plan, layout_of(packet, plan, memory), memory,
                         lambda: general_values(packet, array, plan, memory))
    return general_values(packet, array, plan, memory) if event is None else event


def general_values(packet, array, plan, memory):
    """`FastValues` of one packet's host `array`, through `step_values`
    (warning of NaN/Inf numbers)."""
    values = step_values(packet, array, plan, memory)
    if not np.isfinite(array).all():
        warn_nonfinite(plan, memory.warned, packet.step, values)
    # Every array built above is C-contiguous, float64 (attention maps:
    # float32), as stored; heatmaps get their stored encoding.
    stored = [metadata.encode_float32_grid(data) if kind == "heatmap" else None if kind == "tokens" else data
              for _, kind, data, _ in values]
    return sink.FastValues([value[0] for value in values], stored,
                           lambda index: first_value(*values[index]))
