"""Heatmap pooling: ONE rule for every caller, on the tensor's own device.

The rule (used by `SummaryWriter.add_weight_heatmap`, by `watch()` for every
parameter, and by `distributed` for FSDP shards):

- The matrix view: a 0-d tensor is one cell `[1, 1]`; 1-D is one row
  `[1, n]`; 2-D stays; higher ranks (conv weights `[out, in, kh, kw]`) are
  `[out, in*kh*kw]` (`matrix_shape`).
- The grid has at most `max_cells` rows and columns (`grid_shape`); each cell
  is the mean over the bins of adaptive average pooling (`bins`: the bins
  PyTorch's `adaptive_avg_pool2d` uses; neighbouring bins overlap by at most
  one element when sizes do not divide), so NaN/Inf stay inside the bins that
  hold them. The reduction is "none" when the grid is the matrix itself,
  "mean_pool" otherwise.

Nothing here copies a whole tensor to the host, and a transposed weight is
pooled through its contiguous transpose, never copied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from torch_visualization import reduce

DEFAULT_MAX_CELLS = (64, 64)


def parse_max_cells(max_cells):
    """Normalises `max_cells` (an int N or a `(rows, cols)` pair) to a pair."""
    if isinstance(max_cells, bool):
        raise TypeError("max_cells must be an int or a (rows, cols) pair, got a bool")
    if isinstance(max_cells, int):
        max_cells = (max_cells, max_cells)
    try:
        rows, cols = max_cells
    except (TypeError, ValueError):
        raise TypeError(
            "max_cells must be an int or a (rows, cols) pair, got %r" % (max_cells,)
        ) from None
    for value in (rows, cols):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("max_cells must be positive integers, got %r" % (max_cells,))
    return rows, cols


def matrix_shape(shape):
    """`(rows, cols)` of the matrix view of a tensor of `shape` (see above)."""
    shape = tuple(shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def as_matrix(tensor):
    """The tensor viewed as its matrix (a view wherever reshape allows one)."""
    return tensor.reshape(matrix_shape(tensor.shape))


def grid_shape(shape, max_cells=DEFAULT_MAX_CELLS):
    """`(rows, cols, reduction)` of the heatmap of a tensor of `shape`."""
    max_rows, max_cols = parse_max_cells(max_cells)
    rows, cols = matrix_shape(shape)
    out = (min(rows, max_rows), min(cols, max_cols))
    return out + ("none" if out == (rows, cols) else "mean_pool",)


def bins(size, out):
    """`(starts, ends)` of the adaptive-pooling bins of an axis, exactly as
    PyTorch computes them."""
    starts = [(i * size) // out for i in range(out)]
    ends = [-((-(i + 1) * size) // out) for i in range(out)]
    return starts, ends


def check_heatmap_tensor(tag, tensor):
    """Raises `TypeError`/`ValueError` naming `tag` for what cannot be a heatmap."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError("%r: expected a torch.Tensor, got %s" % (tag, type(tensor).__name__))
    reduce.check_tensor_dtype(tag, tensor)
    if tensor.numel() == 0:
        raise ValueError("%r: tensor is empty (shape %s)" % (tag, list(tensor.shape)))


def heatmap_grid(tag, tensor, max_cells=DEFAULT_MAX_CELLS):
    """Reduces one tensor to its bounded grid on its own device.

    Args:
      tag: Named in errors.
      tensor: A torch tensor of any rank (0-d is one cell), any device, any
        real dtype.
      max_cells: Largest grid kept, `(rows, cols)` or an int for both.

    Returns:
      `(grid, reduction)`: a float32 tensor on the input's device and "none"
      or "mean_pool" (see the module docstring).
    """
    check_heatmap_tensor(tag, tensor)
    # A grid that needs no pooling is a view of its tensor: keep it out of
    # autograd (the plan itself skips per-tensor detaches).
    tensor = tensor.detach()
    plan = HeatmapPlan([tensor], max_cells)
    (flat,) = plan.flat_grids([tensor])
    rows, cols, reduction = plan.shapes[0]
    grid = flat.reshape(rows, cols)
    if plan.scales[0] != 1.0:
        grid = grid * plan.scales[0]
    return grid, reduction


def pool_stack(stack, max_cells=DEFAULT_MAX_CELLS):
    """`[n, rows, cols]` -> float32 `[n, out_rows, out_cols]` means, each
    matrix pooled by the module's rule (attention maps: one per head)."""
    n, rows, cols = stack.shape
    out_rows, out_cols, _ = grid_shape((rows, cols), max_cells)
    with torch.no_grad():
        grid = _pool_batch(stack, out_rows, out_cols)
    scale = _block_scale(rows, out_rows) * _block_scale(cols, out_cols)
    return grid * scale if scale != 1.0 else grid


class HeatmapPlan:
    """Pooling of a fixed list of tensors to bounded grids, planned once.

    Cells follow the module's rule; the pooling is separable, so rows are
    reduced first (block sums when they divide evenly) and columns second,
    which costs a fraction of `adaptive_avg_pool2d` on the CPU. Grids are left
    as block sums where an axis divides evenly: multiply by `scales[i]` (e.g.
    on the host, for free) for means.

    Args:
      tensors: The tensors (their shapes, dtypes and devices are planned for).
      max_cells: Largest grid, `(rows, cols)` or an int for both.
      batch: Pool tensors of one whole shape, dtype and device together (one
        launch per shape; worth it on accelerators, a needless copy on the
        CPU). Defaults to True unless every tensor is on the CPU.
    """

    def __init__(self, tensors, max_cells=DEFAULT_MAX_CELLS, batch=None):
        max_cells = parse_max_cells(max_cells)
        if batch is None:
            batch = any(t.device.type != "cpu" for t in tensors)
        self.count = len(tensors)
        self.shapes = []  # (rows, cols, reduction) of each grid
        self._groups = []  # (indices, rows, cols, out_rows, out_cols)
        keyed = {}
        for index, tensor in enumerate(tensors):
            if tensor.numel() == 0:
                raise ValueError("heatmap plan: tensor %d is empty (shape %s)"
                                 % (index, list(tensor.shape)))
            rows, cols = matrix_shape(tensor.shape)
            out_rows, out_cols, reduction = grid_shape(tensor.shape, max_cells)
            self.shapes.append((out_rows, out_cols, reduction))
            # Whole shapes, not just the matrix view: members are stacked as
            # they are (a 1x1 conv and a linear layer may share a view).
            key = (tuple(tensor.shape), tensor.dtype, tensor.device) if batch else index
            if key not in keyed:
                keyed[key] = len(self._groups)
                self._groups.append(([], rows, cols, out_rows, out_cols))
            self._groups[keyed[key]][0].append(index)
        # Tensor indices in the order `flat_grids` lays their grids out.
        self.order = [index for indices, *_ in self._groups for index in indices]
        self._alone = {indices[0]: (rows, cols, out_rows, out_cols)
                       for indices, rows, cols, out_rows, out_cols in self._groups if len(indices) == 1}
        self.scales = [1.0] * self.count
        for indices, rows, cols, out_rows, out_cols in self._groups:
            scale = _block_scale(rows, out_rows) * _block_scale(cols, out_cols)
            for index in indices:
                self.scales[index] = scale

    def flat_grids(self, tensors, pooled_already=None):
        """Pools `tensors` (same shapes as planned) into float32 1-D pieces,
        one per group of same-shaped tensors; concatenated, they hold each
        tensor's grid, row-major, in `self.order` (block sums: see `scales`).
        `pooled_already`: `{index: grid}` of tensors pooled elsewhere by this
        rule (fused.py), used as they are.

        No per-tensor views or selects: on a launch-bound accelerator every
        host-side op counts (ResNet-50 has 161 parameters).
        """
        if len(tensors) != self.count:
            raise ValueError("heatmap plan: %d tensors given, %d planned" % (len(tensors), self.count))
        pooled_already = pooled_already or {}
        pieces = []
        with torch.no_grad():
            for indices, rows, cols, out_rows, out_cols in self._groups:
                if len(indices) == 1 and indices[0] in pooled_already:
                    pooled = pooled_already[indices[0]]
                elif len(indices) == 1:
                    # A view where reshape allows one (a 2-D tensor, even a
                    # transposed one, stays itself).
                    matrix = tensors[indices[0]].reshape(rows, cols)
                    pooled = _pool_matrix(matrix, out_rows, out_cols)
                else:
                    # Members share their whole shape (see __init__).
                    stacked = torch.stack([tensors[i] for i in indices])
                    pooled = _pool_batch(stacked.reshape(-1, rows, cols), out_rows, out_cols)
                pieces.append(pooled.reshape(-1))
        return pieces

    def alone(self, index):
        """`(rows, cols, out_rows, out_cols)` of tensor `index` when it is
        pooled alone (a group of one, as on the CPU), else None."""
        return self._alone.get(index)

    def pool_spec(self, index):
        """`(rows, out_rows, out_cols)` of tensor `index` pooled alone (what
        the one-pass kernels of fused.py take), else None."""
        shape = self._alone.get(index)
        return None if shape is None else (shape[0], shape[2], shape[3])


def _block_scale(size, out):
    """1/block for an evenly divided axis (summed, not averaged), else 1."""
    return 1.0 / (size // out) if size != out and size % out == 0 else 1.0


def _pool_matrix(matrix, out_rows, out_cols):
    """One matrix -> float32 grid (block sums where an axis divides evenly).

    A transposed weight (e.g. `W.t()`) is pooled through its contiguous
    transpose: pooling it directly would first copy it whole, and the bins
    are separable.
    """
    if not matrix.is_contiguous() and matrix.t().is_contiguous():
        return _pool_batch(matrix.t()[None], out_cols, out_rows)[0].t()
    return _pool_batch(matrix[None], out_rows, out_cols)[0]


def _pool_batch(batch, out_rows, out_cols):
    """`[n, rows, cols]` -> float32 `[n, out_rows, out_cols]` adaptive pooling.

    Axes that divide evenly are block SUMS (a middle-axis sum runs vectorised
    along the contiguous rows; an innermost sum of a few elements is cheap on
    the small row-pooled matrix); others are adaptive means.
    """
    n, rows, cols = batch.shape
    if out_rows != rows:
        if rows % out_rows == 0:
            batch = batch.reshape(n, out_rows, rows // out_rows, cols).sum(2, dtype=torch.float32)
        else:
            batch = F.adaptive_avg_pool2d(batch.float().unsqueeze(1), (out_rows, cols)).squeeze(1)
    if batch.dtype != torch.float32:
        batch = batch.float()
    if out_cols != cols:
        if cols % out_cols == 0:
            batch = batch.reshape(n, out_rows, out_cols, cols // out_cols).sum(3)
        else:
            batch = F.adaptive_avg_pool1d(batch.reshape(n * out_rows, 1, cols), out_cols)
            batch = batch.reshape(n, out_rows, out_cols)
    return batch
