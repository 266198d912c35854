"""A packet's event bytes in one C call, for the layouts it can express.

Once the event file holds a tag's metadata, only its numbers change from
one logging step to the next: the events of one packet layout are the same
`Summary` bytes with other numbers in them. A `Renderer`, built once per
layout (decode.Layout) from the plan, holds those bytes (the template) and
a program that writes each number in (`_fused.render_event`): the square
roots, divisions, sums per bar, pie shares, heatmap means and their float16
encoding that decode.py does in some forty numpy calls, and the sink in one
step per tag, become one C call on the writer thread, whose Python time
training pays for (it holds the GIL, on the cores training uses).

Its bytes are those of the general path (decode.step_values, then the sink's
`FastValues` writing); tests/test_decode_speed_equivalence.py holds it to
them. Packets it does not express take that path: token text, module counts
combined over ranks (DDP), the first packet of a pie with an "other" slice
(which fixes its classes), a sequence step without positions, and any packet
with a NaN or Inf in it (the general path warns of those) or with a heatmap
that float16 cannot hold.
"""

from __future__ import annotations

import numpy as np

from torch_visualization import fused, metadata, sink
from torch_visualization.watch import plan as plans

# Instructions of `_fused.render_event` (adapter/_fused.c, same numbers).
(CONST, COPY, SQRT, DIV, RATIO, ZERO_FRACTION, RMS, MAX_ABS, SHARE, HEATMAP16, HEATMAP32, COPY32,
 SEQUENCE, OTHER) = range(14)

# `renderer`'s answer before the first packet fixed the pie's classes.
_NOT_YET = object()


class Renderer:
    """The template and program of one packet layout (see the module doc).

    Attributes:
      tags: The tags of the event, in order.
    """

    def __init__(self, tags, template, program, runs, constants, scales):
        self.tags = tags
        self._template = template
        self._program = program
        self._runs = runs
        self._constants = constants
        self._scales = scales

    def render(self, packet, array):
        """The event's Summary bytes (no metadata), or None where this packet
        takes the general path (`event` picks the renderer of packets with or
        without the class pie)."""
        try:
            return fused.render_event(array, self._program, self._runs, self._constants,
                                      self._scales, packet.class_samples, self._template)
        except fused.Unreadable:  # not a float32 vector: the general path reads any
            return None


def event(packet, array, plan, layout, memory, general):
    """The packet's `sink.RenderedEvent` (`general`: its values by the
    general path, for a file without the tags' metadata yet), or None where
    it takes the general path. Each layout's renderers are built once."""
    with_classes = bool(packet.class_samples)
    if with_classes not in layout.renderers:
        built = renderer(packet, plan, layout, memory)
        if built is _NOT_YET:
            return None
        layout.renderers[with_classes] = built
    found = layout.renderers[with_classes]
    summary = None if found is None else found.render(packet, array)
    return None if summary is None else sink.RenderedEvent(found.tags, summary, general)


def renderer(packet, plan, layout, memory):
    """The `Renderer` of packets like `packet` (its `layout`; `memory`: the
    decoding's, which fixes a big pie's classes at its first packet), None
    where they take the general path, `_NOT_YET` before that first packet."""
    segments = packet.segments
    if (not fused.available() or ("tokens" in segments and plan.tokens is not None)
            or (layout.modules is not None and layout.module_totals is None)):
        return None
    big_pie = packet.class_samples and segments["classes"][1] > plans.PIE_CLASSES
    if big_pie and memory.pie_classes is None:
        return _NOT_YET
    source = layout.source
    out = _Program()
    if layout.grads is not None:
        _gradient_bars(out, source[layout.grads[0]].reshape(4, -1), layout, len(plan.grad_names))
    if layout.updates is not None:
        _update_ratios(out, source[layout.updates[0]], layout.update_pick)
    if layout.activations is not None:
        _zero_fractions(out, source[layout.activations[0]], layout)
    if layout.modules is not None:
        _module_bars(out, source[layout.modules[0]].reshape(layout.modules[1], -1), layout,
                     len(plan.stat_names))
    if layout.attention is not None:
        _attention(out, layout)
    if packet.class_samples:
        _pie(out, segments["classes"], memory.pie_classes if big_pie else None)
    if "sequence" in segments:  # its bars where the step saw positions (else: general path)
        out.op(SEQUENCE, out.value(plans.TAG_SEQUENCE, np.float64, (2,)), segments["sequence"][0])
    if layout.heatmaps is not None:
        offset, _, grids = layout.heatmaps
        for tag, start, _, (rows, cols) in grids:
            if rows * cols == 0:
                return None
            if cols >= metadata.FLOAT16_MIN_COLUMNS:
                out.op(HEATMAP16, out.value(tag, np.float16, (rows + 1, cols)),
                       offset + start, start, rows, cols)
            else:
                out.op(HEATMAP32, out.value(tag, np.float32, (rows, cols)),
                       offset + start, start, rows, cols)
    scales = packet.heatmap_scales if layout.heatmaps is not None else ()
    return out.renderer(np.asarray(scales, np.float32))


def _attention(out, layout):
    """Each attention module's pooled maps (float32, as they arrive), then
    `attention/entropy`: NaN for a module not captured this step."""
    for tag, offset, size, shape, _ in layout.attention:
        out.op(COPY32, out.value(tag, np.float32, shape), offset, 0, size)
    source, target, heads, _ = layout.entropy
    where = dict(zip(target.tolist(), source.tolist()))
    at = out.value(plans.TAG_ENTROPY, np.float64, (heads,))
    for head in range(heads):
        if head in where:
            out.op(COPY, at + 8 * head, where[head])
        else:
            out.op(CONST, at + 8 * head, out.constant(np.nan))


def _pie(out, segment, kept):
    """`outputs/classes`: every class's share, or (`kept`: the classes fixed
    at the first packet) theirs and the "other" slice."""
    offset, size = segment
    classes = range(size) if kept is None else kept
    at = out.value(plans.TAG_CLASSES, np.float64, (len(classes) + (kept is not None),))
    for slot, index in enumerate(classes):
        out.op(SHARE, at + 8 * slot, offset + index)
    if kept is not None:
        out.op(OTHER, at + 8 * len(kept), offset, out.run(kept), len(kept), size)


def _gradient_bars(out, stats, layout, count):
    """The four gradient bars: `stats` holds the packet indices of each
    gradient's sum of squares, sum of |g|, max |g| and non-finite count
    (rows); gradients not in the packet show 0."""
    column_of = {int(position): column for column, position in enumerate(layout.grad_target)}
    for row, tag in enumerate(plans.GRADIENT_TAGS):
        at = out.value(tag, np.float64, (count,))
        for position in range(count):
            column, dst = column_of.get(position), at + 8 * position
            if column is None:
                out.op(CONST, dst, out.constant(0.0))
            elif row == 0:
                out.op(SQRT, dst, stats[0, column])
            elif row == 1:
                out.op(DIV, dst, stats[1, column], out.constant(layout.grad_numels[column]))
            else:
                out.op(COPY, dst, stats[row, column])


def _update_ratios(out, norms, pick):
    """`updates/ratio`: `norms` holds the packet indices of the squared norms
    before the step, then of the updates; `pick` a column per bar (past the
    end: not stepped, NaN)."""
    stepped = len(norms) // 2
    at = out.value(plans.TAG_UPDATE_RATIO, np.float64, (len(pick),))
    for bar, column in enumerate(pick):
        if column == stepped:
            out.op(CONST, at + 8 * bar, out.constant(np.nan))
        else:
            out.op(RATIO, at + 8 * bar, norms[column], norms[stepped + column])


def _zero_fractions(out, counts, layout):
    """`activations/zero_fraction`: 1 - nonzero / elements per bar, the
    counts of its entries added in entry order; NaN for a bar without any."""
    totals = layout.activation_totals
    at = out.value(plans.TAG_ZERO_FRACTION, np.float64, (len(totals),))
    for bar, total in enumerate(totals):
        entries = counts[layout.activation_bars == bar]
        if total > 0:
            out.op(ZERO_FRACTION, at + 8 * bar, out.constant(total), out.run(entries), len(entries))
        else:
            out.op(CONST, at + 8 * bar, out.constant(np.nan))


def _module_bars(out, stats, layout, count):
    """`activations/rms` and `activations/max_abs`: `stats` holds the packet
    indices of each column's sum of squares, min and max (rows); a bar adds
    its columns in column order; NaN for a module that did not run."""
    columns, totals = layout.module_columns, layout.module_totals
    rms_at = out.value(plans.TAG_RMS, np.float64, (count,))
    runs = [np.flatnonzero(columns == bar) for bar in range(count)]
    for bar, mine in enumerate(runs):
        if totals[bar] > 0:
            out.op(RMS, rms_at + 8 * bar, out.constant(totals[bar]), out.run(stats[0, mine]), len(mine))
        else:
            out.op(CONST, rms_at + 8 * bar, out.constant(np.nan))
    top_at = out.value(plans.TAG_MAX_ABS, np.float64, (count,))
    for bar, mine in enumerate(runs):
        if len(mine):
            pairs = np.stack([stats[1, mine], stats[2, mine]], axis=1).reshape(-1)
            out.op(MAX_ABS, top_at + 8 * bar, 0, out.run(pairs), len(mine))
        else:
            out.op(CONST, top_at + 8 * bar, out.constant(np.nan))


class _Program:
    """Builds a Renderer: the template's bytes, value by value, and the
    instructions that fill them."""

    def __init__(self):
        self.tags, self.pieces, self.size = [], [], 0
        self.ops, self.runs, self.constants = [], [], []

    def value(self, tag, dtype, shape):
        """Adds `tag`'s entry; returns the byte offset of its numbers."""
        prefix = sink.value_prefix(tag, dtype, shape)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.tags.append(tag)
        self.pieces += (prefix, bytes(nbytes))
        self.size += len(prefix) + nbytes
        return self.size - nbytes

    def op(self, kind, dst, a=0, b=0, c=0, d=0):
        self.ops.append((kind, dst, int(a), int(b), int(c), int(d)))

    def constant(self, value):
        self.constants.append(float(value))
        return len(self.constants) - 1

    def run(self, indices):
        start = len(self.runs)
        self.runs += [int(index) for index in indices]
        return start

    def renderer(self, scales):
        return Renderer(
            tuple(self.tags), b"".join(self.pieces),
            np.array(self.ops, np.int64).reshape(-1, 6), np.array(self.runs, np.int64),
            np.array(self.constants, np.float64), np.ascontiguousarray(scales),
        )
