"""A packet's numbers back into tagged values (runs on the writer thread).

Pure functions: numpy in, plain values out, every segment read by its name
(see packet.py). `event_values` wraps them for the event sink, with each
tag's first-event metadata built by the pure builders of summary.py.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from torch_visualization import metadata, reduce, sink, summary
from torch_visualization.watch import functional
from torch_visualization.watch import plan as plans
from torch_visualization.watch import tokens

# Names shown in the non-finite warning.
_WARN_NAMES = 5


@dataclasses.dataclass
class Memory:
    """What the decoding of one watch keeps between packets (writer thread).

    Attributes:
      warned: Non-finite warnings already given.
      entropy_heads: Per attention module index, its head count, fixed at
        the first packet with attention (the labels of `attention/entropy`).
      pie_classes: The class indices of a big output's pie (the most likely
        ones at the first logging step), fixed then.
      zero_fraction: `(labels, slots)` of `activations/zero_fraction`
        (activation modules and functional ReLU calls), fixed at its first
        packet.
      freeze: Called as `freeze(tag, kind, labels)` when labels get fixed
        after `watch()` started (or None).
    """

    warned: set = dataclasses.field(default_factory=set)
    entropy_heads: dict = None
    pie_classes: list = None
    zero_fraction: tuple = None
    freeze: object = None


def step_values(packet, array, plan, memory=None):
    """`[(tag, kind, values, extra)]` of one packet's host array.

    `extra` holds what the first event of a tag needs for its metadata
    (labels, original shape, reduction).
    """
    memory = Memory() if memory is None else memory
    out = []
    count = len(plan.grad_names)
    if packet.gradient_groups:
        norm, mean_abs, max_abs, nonfinite = np.zeros((4, count))
        for suffix, positions in packet.gradient_groups:
            stats = packet.segment("grads." + suffix, array).astype(np.float64)
            rows = {name: stats[i * len(positions):(i + 1) * len(positions)]
                    for i, name in enumerate(reduce.STAT_ROWS)}
            # L2 norms travel as sums of squares; the root is free here.
            norm[positions] = np.sqrt(rows["sq_sum"])
            mean_abs[positions] = rows["abs_sum"] / plan.grad_numels[positions]
            max_abs[positions] = rows["abs_max"]
            nonfinite[positions] = packet.segment("nonfinite." + suffix, array)
        labels = {"labels": plan.grad_names}
        out += [
            (plans.TAG_GRAD_NORM, "bars", norm, labels),
            (plans.TAG_GRAD_MEAN_ABS, "bars", mean_abs, labels),
            (plans.TAG_GRAD_MAX_ABS, "bars", max_abs, labels),
            (plans.TAG_GRAD_NONFINITE, "bars", nonfinite, labels),
        ]
    if packet.update_groups:
        out.append((plans.TAG_UPDATE_RATIO, "bars", update_ratios(packet, array, plan),
                    {"labels": plan.update_names}))
    if packet.activation_entries:
        counts = packet.segment("activations", array)
        labels, slots = zero_fraction_layout(plan, memory)
        nonzero, total = np.zeros((2, len(labels)))
        for (index, numel), value in zip(packet.activation_entries, counts):
            if index < len(slots):  # functional sites found after the labels were fixed: none
                nonzero[slots[index]] += value
                total[slots[index]] += numel
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(total > 0, 1.0 - nonzero / total, np.nan)
        out.append((plans.TAG_ZERO_FRACTION, "bars", fraction, {"labels": labels}))
    if packet.module_entries:
        out += module_values(packet, array, plan)
    if packet.attention_entries:
        out += attention_values(packet, array, plan, memory)
    out += tokens.token_values(packet, array, plan.tokens)
    if packet.class_samples:
        shares = packet.segment("classes", array).astype(np.float64) / packet.class_samples
        out.append(pie_value(shares, plan, memory))
    sequence = packet.segment("sequence", array)
    if sequence is not None and sequence[2] > 0:
        entropy_sum, top, positions = sequence.astype(np.float64)
        out.append((plans.TAG_SEQUENCE, "bars", np.array([entropy_sum / positions, top]),
                    {"labels": plans.SEQUENCE_STATS}))
    grids = packet.segment("heatmaps", array)
    if grids is not None:
        # Heatmaps arrive as block sums; one multiply turns them all into means.
        grids = grids * packet.heatmap_scales
        offset = 0
        for tag, (rows, cols), extra in packet.heatmaps:
            out.append((tag, "heatmap", grids[offset:offset + rows * cols].reshape(rows, cols), extra))
            offset += rows * cols
    return out


def module_values(packet, array, plan):
    """`activations/rms` and `activations/max_abs` of the stat modules (NaN
    for a module that did not run)."""
    if packet.module_numels is None:  # combined over ranks: counts are the fourth row
        stats = packet.segment("module_stats", array).astype(np.float64).reshape(4, -1)
    else:
        stats = np.vstack([packet.segment("module_stats", array).astype(np.float64).reshape(3, -1),
                           np.asarray(packet.module_numels, dtype=np.float64)[None]])
    count = len(plan.stat_names)
    squares, numels, top = np.zeros(count), np.zeros(count), np.full(count, np.nan)
    for index, square, low, high, numel in zip(packet.module_entries, *stats):
        if not numel:
            continue  # a module that ran on no rank
        # max |x| = max(-min, max); np.maximum keeps a NaN (aminmax of an
        # output holding NaN gives NaN).
        biggest = np.maximum(-low, high)
        top[index] = biggest if numels[index] == 0 else np.maximum(top[index], biggest)
        squares[index] += square
        numels[index] += numel
    with np.errstate(divide="ignore", invalid="ignore"):
        rms = np.where(numels > 0, np.sqrt(squares / numels), np.nan)
    labels = {"labels": plan.stat_names}
    return [(plans.TAG_RMS, "bars", rms, labels), (plans.TAG_MAX_ABS, "bars", top, labels)]


def zero_fraction_layout(plan, memory):
    """`(labels, slots)` of `activations/zero_fraction`, fixed (and the tag
    claimed) at its first packet: the functional call sites are known once
    the first measured forward has ended (functional.py)."""
    if memory.zero_fraction is None:
        layout = functional.zero_fraction_layout(plan.activation_names, plan.functional)
        if memory.freeze is not None:
            memory.freeze(plans.TAG_ZERO_FRACTION, "bars", tuple(layout[0]))
        memory.zero_fraction = layout
    return memory.zero_fraction


def attention_values(packet, array, plan, memory):
    """Each captured module's maps, and `attention/entropy` per head (labels
    `<module>/head<k>`, fixed at the first packet with attention; NaN for a
    module not captured in this step)."""
    out, entropies = [], {}
    for index, pooled_shape, original in packet.attention_entries:
        name = plan.attention_names[index]
        maps = packet.segment("attention.%d" % index, array).reshape(pooled_shape)
        reduction = "none" if tuple(pooled_shape) == tuple(original) else "mean_pool"
        out.append((plans.TAG_ATTENTION + name, "attention", maps,
                    {"original_shape": original, "reduction": reduction}))
        entropies[index] = packet.segment("entropy.%d" % index, array)
    if memory.entropy_heads is None:
        memory.entropy_heads = {index: len(values) for index, values in sorted(entropies.items())}
        if memory.freeze is not None:
            memory.freeze(plans.TAG_ENTROPY, "bars", tuple(entropy_labels(plan, memory)))
    values = []
    for index, heads in memory.entropy_heads.items():
        got = entropies.get(index)
        values += list(got) if got is not None and len(got) == heads else [np.nan] * heads
    out.append((plans.TAG_ENTROPY, "bars", np.array(values, dtype=np.float64),
                {"labels": entropy_labels(plan, memory)}))
    return out


def entropy_labels(plan, memory):
    return ["%s/head%d" % (plan.attention_names[index], head)
            for index, heads in memory.entropy_heads.items() for head in range(heads)]


def pie_value(shares, plan, memory):
    """The `outputs/classes` pie: every class, or for more than
    `PIE_CLASSES` the classes most likely at the first logging step and one
    "other" slice (labels are fixed per tag)."""
    names = plan.class_names or [str(index) for index in range(len(shares))]
    if len(shares) <= plans.PIE_CLASSES:
        return (plans.TAG_CLASSES, "pie", shares, {"class_names": plan.class_names})
    if memory.pie_classes is None:
        top = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")[:plans.PIE_CLASSES - 1]
        memory.pie_classes = sorted(int(index) for index in top)
        if memory.freeze is not None:
            memory.freeze(plans.TAG_CLASSES, "pie", tuple(pie_labels(names, memory)))
    kept = shares[memory.pie_classes]
    values = np.append(kept, max(0.0, float(np.nansum(shares)) - float(np.nansum(kept))))
    return (plans.TAG_CLASSES, "pie", values, {"class_names": pie_labels(names, memory)})


def pie_labels(names, memory):
    return [names[index] for index in memory.pie_classes] + ["other"]


def update_ratios(packet, array, plan):
    """`updates/ratio` per `plan.update_names`: ||w_after - w_before|| /
    ||w_before||, and for a parameter that was exactly zero before the step
    (a zero-initialised bias at step 0) 1 when it moved and 0 when it did
    not: the whole parameter is that update. NaN for parameters whose
    optimizer did not step while this logging step was measured.
    """
    ratio = np.full(len(plan.grad_names), np.nan)
    for suffix, positions in packet.update_groups:
        norms = np.sqrt(packet.segment("updates." + suffix, array).astype(np.float64))
        before, delta = norms[:len(positions)], norms[len(positions):]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio[positions] = np.where(before == 0, np.where(delta == 0, 0.0, 1.0), delta / before)
    return ratio[plan.update_positions]


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
        what, where = (
            ("gradients with NaN/Inf values (count)", "%r and the gradient bars" % key)
            if key == plans.TAG_GRAD_NONFINITE
            else ("weights with NaN/Inf values", "'weights/<name>'")
        )
        more = "" if len(names) <= _WARN_NAMES else " and %d more" % (len(names) - _WARN_NAMES)
        warnings.warn(
            "torch_visualization watch: %s at step %d: %s%s; logged as-is in %s "
            "(warned once)" % (what, step, ", ".join(names[:_WARN_NAMES]), more, where),
            RuntimeWarning,
            stacklevel=2,
        )


def first_value(tag, kind, values, extra):
    """The complete `Summary.Value` of a tag's first event (with metadata)."""
    if kind == "heatmap":
        proto = summary.heatmap_summary(
            tag, values, original_shape=extra["original_shape"], reduction=extra["reduction"]
        )
    elif kind == "attention":
        proto = summary.attention_summary(
            tag, values, original_shape=extra["original_shape"], reduction=extra["reduction"]
        )
    elif kind == "tokens":
        proto = summary.tokens_summary(tag, values)
    elif kind == "pie":
        proto = summary.pie_summary(tag, values, class_names=extra["class_names"] or None)
    else:
        proto = summary.bars_summary(tag, values, labels=extra["labels"])
    return proto.value[0]


def event_values(packet, plan, memory):
    """The sink's values of one packet (what a sink job returns)."""
    packet.wait()
    array = packet.buffer.numpy()
    values = step_values(packet, array, plan, memory)
    if not np.isfinite(array).all():
        warn_nonfinite(plan, memory.warned, packet.step, values)
    out = []
    for tag, kind, data, extra in values:
        if kind == "tokens":  # strings: a whole value each step (the sink drops its metadata)
            out.append(first_value(tag, kind, data, extra))
            continue
        if kind == "heatmap":
            stored = metadata.encode_heatmap_grid(np.ascontiguousarray(data, dtype=np.float32))
        elif kind == "attention":
            stored = np.ascontiguousarray(data, dtype=np.float32)
        else:
            stored = np.ascontiguousarray(data, dtype=np.float64)
        out.append(sink.FastValue(
            tag, stored,
            lambda tag=tag, kind=kind, data=data, extra=extra: first_value(tag, kind, data, extra),
        ))
    return out
