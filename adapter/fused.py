"""One-pass CPU statistics: the `_fused` C kernels behind a torch-facing API.

On the CPU a logging step is bound by passes over memory and by calls, not
by arithmetic: eager PyTorch reads a gradient once for its dot product, once
for |g|, once for the sum, once for the max, each a dispatched call.
`_fused` (adapter/_fused.c, plain C built at install time) reads each
float32 tensor once for all its statistics, a whole list per call, with the
GIL released; a logging step's parameter pass and each large output are
split into tasks that PyTorch's own intra-op threads share (awake right
after a training op; results independent of the thread count). The thread
count is PyTorch's (`torch.set_num_threads`).

Each function returns None when it does not apply (the extension was not
built, `ENABLED` is off, or a tensor is not a contiguous float32 CPU tensor);
the caller then computes the same values with PyTorch (reduce.py), and the
tests compare both paths.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from torch_visualization import _fused
except ImportError:  # built without a C compiler: PyTorch ops do the work
    _fused = None


class _NeverRaised(Exception):
    """Stands in for `Unreadable` where the extension is not built."""


# Raised by the kernels for data they do not read (not float32, not
# C-contiguous): the caller takes its PyTorch path. A TypeError.
Unreadable = _fused.Unreadable if _fused is not None else _NeverRaised

# Test seam and switch: off, every caller takes its PyTorch path.
ENABLED = True


def available():
    """Whether the one-pass kernels are built and switched on."""
    return _fused is not None and ENABLED


def readable(tensor):
    """A contiguous, non-empty float32 CPU tensor: what the kernels read."""
    return (tensor.dtype is torch.float32 and tensor.device.type == "cpu"
            and tensor.layout is torch.strided and tensor.is_contiguous() and tensor.numel() > 0)


def applies(tensors):
    """Whether the kernels are on and read every tensor (other dtypes,
    layouts and devices go to PyTorch)."""
    return available() and all(readable(t) for t in tensors)


def _arrays(tensors):
    return [t.detach().numpy() for t in tensors]


def gradient_statistics(tensors):
    """`(statistics, nonfinite)` of non-empty tensors, or None.

    `statistics` is `reduce.gradient_statistics`'s 1-D float32 layout
    `[sq_sum... | abs_sum... | abs_max...]`, `nonfinite` the NaN/Inf count of
    each tensor (what `reduce.nonfinite_counts` returns): two views of one
    fresh tensor, each tensor read once.
    """
    if not tensors or not applies(tensors):
        return None
    count = len(tensors)
    out = torch.empty(4 * count, dtype=torch.float32)
    _fused.gradient_statistics(_arrays(tensors), out.numpy())
    return out[:3 * count], out[3 * count:]


def update_statistics(before, after, grids=None):
    """`[sum of squares of before... | of (before - after)...]` (float32,
    2 n values; `before` is left as it is), or None. The pairs must match
    in shape.

    `grids`: None or, per pair, None or `(rows, out_rows, out_cols)`: `after`
    viewed as a `rows`-row matrix is also pooled into an `out_rows x
    out_cols` grid by pooling.py's rule (block sums where an axis divides
    evenly, adaptive-pooling means otherwise) in the same pass. Returns
    `(statistics, {pair index: 1-D grid})` then.
    """
    if not before or len(before) != len(after) or not applies(before) or not applies(after):
        return None
    if any(old.shape != new.shape for old, new in zip(before, after)):
        return None
    out = torch.empty(2 * len(before), dtype=torch.float32)
    if grids is None:
        _fused.update_statistics(_arrays(before), _arrays(after), out.numpy())
        return out
    # Every grid is a slice of one fresh buffer (one allocation per call).
    cells = torch.empty(sum(grid[1] * grid[2] for grid in grids if grid is not None),
                        dtype=torch.float32)
    flat = cells.numpy()
    pooled, specs, offset = {}, [], 0
    for index, grid in enumerate(grids):
        if grid is None:
            specs.append(None)
            continue
        rows, out_rows, out_cols = grid
        size = out_rows * out_cols
        pooled[index] = cells[offset:offset + size]
        specs.append((flat[offset:offset + size], rows, out_rows, out_cols))
        offset += size
    _fused.update_statistics(_arrays(before), _arrays(after), out.numpy(), specs)
    return out, pooled


# parameter_statistics' stages: all of it after the optimizer step, or the
# pass split around the step.
WHOLE, BEFORE_STEP, AFTER_STEP = 0, 1, 2


def parameter_statistics(grads, olds, news, out, grids, pools=(), stage=WHOLE):
    """A logging step's parameter side in one call (numpy arrays in; the
    caller checked `available()`): writes into `out` the gradient
    statistics `[sq_sum | abs_sum | abs_max | nonfinite]` (4 n values), the
    update norms `[squares of olds | of olds - news]` (2 n), and pools
    `news[k]` into the cells `grids[k] = (offset, rows, out_rows, out_cols)`
    places in `out` (None: no grid), each array read once. `pools`: further
    `(array, offset, rows, out_rows, out_cols)` only pooled.

    `stage`: `WHOLE`, all of it after the optimizer step; or the same split in
    two calls around the step that write the same values: `BEFORE_STEP`
    writes the gradient statistics and copies each `news[k]` (the weights
    about to be stepped) into `olds[k]`; `AFTER_STEP` writes the update
    norms and the grids.

    Raises `Unreadable` for arrays that are not C-contiguous float32 (or
    read-only where written), ValueError for sizes that do not match.
    """
    _fused.parameter_statistics(grads, olds, news, out, grids, pools, stage)


# Largest scores (rows x classes) for class_statistics: its exp is scalar C,
# PyTorch's softmax is vectorised and wins on big outputs (LM logits).
CLASS_SCORES_MAX = 1 << 16


def class_statistics(scores):
    """`(softmax summed over rows, entropy sum, largest score)` of a small
    `[rows, classes]` float32 CPU tensor: a 1-D float32 tensor and two
    Python floats, in one call; None where it does not apply (another
    dtype or device, more than `CLASS_SCORES_MAX` scores)."""
    if _fused is None or not ENABLED or scores.numel() > CLASS_SCORES_MAX:
        return None
    sums = np.empty(scores.shape[1], dtype=np.float32)
    try:  # asked, not checked first (see output_statistics)
        entropy, top = _fused.class_statistics(scores.detach().numpy(), sums)
    except (TypeError, RuntimeError):
        return None
    return torch.from_numpy(sums), entropy, top


def output_statistics(tensor):
    """`(L2 norm, min, max, nonzero count, element count)` of a non-empty
    tensor as Python numbers (the CPU has them at once: no tensor per
    module), or None. NaN counts as nonzero and makes the norm, min and max
    NaN, as PyTorch's reductions do."""
    if _fused is None or not ENABLED:
        return None
    # Asked instead of checked first (readable(), numel()): a forward
    # measures several outputs per logging step and the checks cost more
    # than the kernel on small ones.
    try:
        return _fused.output_statistics(tensor.detach().numpy())
    except (TypeError, RuntimeError, ValueError):  # Unreadable (a TypeError), empty (ValueError), or
        return None  # no numpy view: another device, dtype (bfloat16), layout (sparse), a conj/neg view


def render_event(array, program, runs, constants, scales, class_samples, template):
    """An event's Summary bytes: `template` with the numbers of the float32
    packet vector `array` written in as `program` says (watch/render.py
    builds it), or None where the packet takes the general decoding (a NaN
    or Inf in it, a heatmap float16 cannot hold, the kernels off)."""
    if not available():
        return None
    return _fused.render_event(array, program, runs, constants, scales, float(class_samples), template)


def copy_arrays(sources, targets):
    """Copies each float32 numpy array of `sources` into the one of `targets`
    of the same size, in chunks PyTorch's threads share (the caller checked
    `available()`). Raises ValueError for sizes that do not match."""
    _fused.copy_arrays(sources, targets)
