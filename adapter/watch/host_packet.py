"""A CPU logging step's packet in one numpy call, made on the writer thread.

The common CPU logging step ends with its parameter side in one vector
(cpu_pass.py) and its forward side as Python floats (the one-pass kernels'
rows, capture.py). Its packet is then one array of those floats followed by
the vector: the segments `PacketBuilder` would lay out (`activations`,
`module_stats`, `classes`, then the vector's own). Nothing of such a step
changes once it has ended (the vector, the class sums and the float lists
are its own), so the training thread only checks that it `applies` and
hands the writer thread a `Later`, whose `built()` lays the packet out
there: between a backward pass and the next step the same work costs the
training thread several times what it costs the writer thread among its
other jobs (~100 µs a logging step on the MLP). Anything else (tensors
among the values, attention maps, token ids, sequence statistics, rows
combined across ranks) is built by `StepReducer.finish`'s builder on the
training thread; the tests compare the two.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_visualization.watch import packet as packets


def applies(state):
    """Whether `build` lays out `state` (a `StepState` whose parameter
    side is one vector and whose forward side is Python floats)."""
    if state.replayed is None or state.attention or state.tokens is not None \
            or state.sequence is not None or state.module_rows is not None:
        return False
    if any(group[2] is not None for group in state.gradient_groups) \
            or any(group[2] is not None for group in state.update_groups):
        return False  # gradients or updates measured beside the vector
    if not all(type(count) is float for _, count, _ in state.activations) \
            or not all(type(row[1]) is float for row in state.module_stats):
        return False  # tensors: the general builder's
    classes = state.class_sum
    return not state.class_samples or (
        isinstance(classes, torch.Tensor) and classes.dtype is torch.float32
        and classes.device.type == "cpu" and classes.dim() == 1)


def build(step, walltime, state, heatmaps, heatmap_scales):
    """The `Packet` of a `state` that `applies`. `heatmaps`,
    `heatmap_scales`: the reducer's."""
    counts = [count for _, count, _ in state.activations]
    stats = state.module_stats
    head = np.array(counts + [row[1] * row[1] for row in stats] + [row[2] for row in stats]
                    + [row[3] for row in stats], dtype=np.float32)
    segments, offset = {}, 0
    if counts:
        segments["activations"] = (0, len(counts))
        offset = len(counts)
    if stats:
        segments["module_stats"] = (offset, 3 * len(stats))
        offset += 3 * len(stats)
    pieces = [head]
    if state.class_samples:
        classes = state.class_sum.detach().numpy()
        segments["classes"] = (offset, classes.shape[0])
        offset += classes.shape[0]
        pieces.append(classes)
    vector, layout = state.replayed
    for name, (start, size) in layout.items():
        segments[name] = (offset + start, size)
    pieces.append(vector)
    return packets.Packet(
        step=step,
        walltime=walltime,
        buffer=np.concatenate(pieces),
        ready=None,
        segments=segments,
        gradient_groups=[(suffix, positions) for suffix, positions, _, _ in state.gradient_groups],
        update_groups=[(suffix, positions) for suffix, positions, _ in state.update_groups],
        activation_entries=[(index, numel) for index, _, numel in state.activations],
        module_entries=[row[0] for row in stats],
        module_numels=[row[4] for row in stats],
        attention_entries=[],
        class_samples=state.class_samples,
        heatmaps=heatmaps,
        heatmap_scales=heatmap_scales,
    )


class Later:
    """A logging step's packet, laid out by `built()` where it is asked
    for (the writer thread). Holds the ended step's state."""

    def __init__(self, step, walltime, state, heatmaps, heatmap_scales):
        self.step = step
        self.walltime = walltime
        self._arguments = (step, walltime, state, heatmaps, heatmap_scales)

    def built(self):
        """The `Packet`."""
        return build(*self._arguments)
