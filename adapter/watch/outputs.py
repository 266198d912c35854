"""The forward side's measurements of a logging step, made packet rows.

capture.py adds, per measured output, 0-d device tensors or (on the CPU,
read in one pass by fused.py) Python floats; at the end of the logging step
they become a few 1-D float32 tensors here, stacked once, not per module.
Under DDP/FSDP the counts and statistics are first combined over the ranks
(COLLECTIVES every rank joins).
"""

from __future__ import annotations

import numpy as np
import torch

from torch_visualization import distributed, reduce
from torch_visualization.watch import functional


def _as_tensor(value, device):
    """A Python float (a one-pass kernel's result) as a 0-d float32 tensor;
    tensors as they are."""
    return torch.tensor(value, dtype=torch.float32, device=device) if type(value) is float else value


def _from_floats(values, device):
    """Python floats (nested lists too) as one float32 array: numpy for the
    CPU (see `vector`), a tensor on `device` elsewhere."""
    if device.type == "cpu":
        return np.array(values, dtype=np.float32)
    return torch.tensor(values, dtype=torch.float32, device=device)


def vector(values, device):
    """0-d tensors and Python floats -> one 1-D float32 tensor on `device`
    (Python floats for the CPU: a numpy array, which the packet takes as
    it is; a torch call costs several times more between a backward and
    an optimizer step than in a loop, its code being cold)."""
    if all(type(value) is float for value in values):
        return _from_floats(values, device)
    tensors = [_as_tensor(value, device) for value in values]
    return reduce.stack_scalars([t if t.device == device else t.to(device) for t in tensors])


def module_rows(state, device):
    """`(indices, rows, numels)`: the sums of squares, minima and maxima of
    the measured module outputs as a `[3, entries]` float32 tensor (numpy
    array for Python floats on the CPU, see `vector`) and their
    element counts on the host; once combined over ranks, `[4, modules]`
    rows with the counts as the fourth, and numels None."""
    if state.module_rows is not None:
        return state.module_rows + (None,)
    if not state.module_stats:
        return [], None, None
    columns = list(zip(*state.module_stats))
    if all(type(norm) is float for norm in columns[1]):  # read in one pass (fused.py)
        rows = _from_floats([[norm * norm for norm in columns[1]], columns[2], columns[3]], device)
        return list(columns[0]), rows, list(columns[4])
    squares = vector(columns[1], device).square_()  # one op, not one per module
    rows = torch.stack([squares] + [vector(column, device) for column in columns[2:4]])
    return list(columns[0]), rows, list(columns[4])


def combine_across_ranks(plan, state, class_width, device):
    """Class shares, activation counts, block-output and sequence statistics
    of the global batch in `state` (COLLECTIVE: every rank calls it)."""
    _floats_to_tensors(state, device)  # collectives take tensors
    _sum_counts(plan, state, class_width, device)
    _combine_statistics(plan, state, device)


def _floats_to_tensors(state, device):
    state.activations = [(index, _as_tensor(count, device), numel)
                         for index, count, numel in state.activations]
    state.module_stats = [(index, _as_tensor(norm, device), _as_tensor(low, device),
                           _as_tensor(high, device), numel)
                          for index, norm, low, high, numel in state.module_stats]


def _sum_counts(plan, state, class_width, device):
    """This rank's output and activation counts -> the global batch's.

    ONE all_reduce on every rank (COLLECTIVE); the results stay on the
    device. Afterwards `class_sum` holds the global mean softmax
    (`class_samples` 1) and each activation module has one entry whose
    count is its global nonzero fraction (numel 1).
    """
    # With the functional ReLU sites (a COLLECTIVE the first time).
    modules = functional.zero_counts_across_ranks(plan, state, device)
    class_sum = None
    # Every rank decides this the same way (same model, same outputs).
    if class_width:
        class_sum = state.class_sum
        if class_sum is None:
            class_sum = torch.zeros(class_width, device=device)
    else:
        state.class_samples = 0  # never log one rank's share alone
    if class_sum is None and not modules:
        return
    class_mean, nonzero = distributed.sum_step_counts(
        class_sum, state.class_samples, state.activations, modules, device=device
    )
    if class_mean is not None:
        state.class_sum, state.class_samples = class_mean, 1
    state.activations = [(index, nonzero[index], 1) for index in range(modules)]


def _combine_statistics(plan, state, device):
    """Block outputs and sequence statistics of the global batch: sums of
    squares, counts and entropies added, maxima taken (COLLECTIVE: one SUM
    and one MAX all_reduce), one entry per module afterwards."""
    count = len(plan.stat_names)
    if not count and not plan.classes:
        return
    per_module, sequence = distributed.combine_output_statistics(
        state.module_stats, count, state.sequence, device=device
    )
    state.module_rows = (list(range(count)), per_module)
    state.sequence = sequence
