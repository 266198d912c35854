"""A CPU logging step's packet in one numpy call.

The common CPU logging step ends with its parameter side in one vector
(cpu_pass.py) and its forward side as Python floats (the one-pass kernels'
rows, capture.py). Its packet is then one array of those floats followed by
the vector: the segments `PacketBuilder` would lay out (`activations`,
`module_stats`, `classes`, then the vector's own), made in a few calls
instead of a builder's per-piece ones, which after a backward pass and an
optimizer step cost several times their cost in a loop (~120 -> ~50 µs a
logging step on the MLP). Anything else (tensors among the values,
attention maps, token ids, sequence statistics, rows combined across ranks)
is left to `StepReducer.finish`'s builder; the tests compare the two.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_visualization.watch import packet as packets


def build(step, walltime, state, heatmaps, heatmap_scales):
    """The `Packet` of `state` (a `StepState`), or None where the general
    builder must make it. `heatmaps`, `heatmap_scales`: the reducer's."""
    if state.replayed is None or state.attention or state.tokens is not None \
            or state.sequence is not None or state.module_rows is not None:
        return None
    if any(group[2] is not None for group in state.gradient_groups) \
            or any(group[2] is not None for group in state.update_groups):
        return None  # gradients or updates measured beside the vector
    counts = [count for _, count, _ in state.activations]
    stats = state.module_stats
    squares = [norm * norm for _, norm, _, _, _ in stats if type(norm) is float]
    if len(squares) != len(stats) or not all(type(count) is float for count in counts):
        return None  # tensors: the general builder's
    head = np.array(counts + squares + [row[2] for row in stats] + [row[3] for row in stats],
                    dtype=np.float32)
    segments, offset = {}, 0
    if counts:
        segments["activations"] = (0, len(counts))
        offset = len(counts)
    if stats:
        segments["module_stats"] = (offset, 3 * len(stats))
        offset += 3 * len(stats)
    pieces = [head]
    if state.class_samples:
        classes = state.class_sum
        if classes.dtype is not torch.float32 or classes.device.type != "cpu" or classes.dim() != 1:
            return None
        classes = classes.detach().numpy()
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
