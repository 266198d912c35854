"""Device-side reductions: big tensors shrink where they live.

Nothing here copies a whole tensor to the host; callers move only the small
results (one device-to-host copy per call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_MAX_CELLS = (64, 64)


def check_tensor_dtype(tag, tensor):
    """Raises `TypeError` unless `tensor` holds real integers or floats."""
    dtype = tensor.dtype
    if dtype.is_complex or dtype == torch.bool or not (
        dtype.is_floating_point or _is_integer(dtype)
    ):
        raise TypeError(
            "%r: values must be real numbers (integer or floating), got dtype %s"
            % (tag, dtype)
        )


def _is_integer(dtype):
    return dtype in (
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
    )


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


def as_matrix(tensor):
    """Views a rank >= 1 tensor as 2-D, the way the heatmap shows it.

    1-D is one row; 2-D stays; higher ranks (conv weights `[out, in, kh, kw]`)
    become `[out, in*kh*kw]`.
    """
    if tensor.dim() == 1:
        return tensor.reshape(1, -1)
    return tensor.reshape(tensor.shape[0], -1)


def heatmap_grid(tag, tensor, max_cells=DEFAULT_MAX_CELLS):
    """Reduces a weight-like tensor to a bounded 2-D grid on its own device.

    Args:
      tag: Named in errors.
      tensor: A torch tensor of rank >= 1 (any device, any real dtype).
      max_cells: Largest grid kept, `(rows, cols)` or an int for both.

    Returns:
      `(grid, reduction)`: a float32 tensor on the input's device with at most
      `max_cells` cells per side, and "none" or "mean_pool". Cells of a pooled
      grid are means over adaptive-pooling bins (bins overlap by at most one
      element when sizes do not divide), so NaN/Inf in a bin stay visible.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError("%r: expected a torch.Tensor, got %s" % (tag, type(tensor).__name__))
    check_tensor_dtype(tag, tensor)
    if tensor.dim() == 0:
        raise ValueError("%r: a heatmap needs a tensor of rank >= 1, got a 0-d tensor" % tag)
    if tensor.numel() == 0:
        raise ValueError("%r: tensor is empty (shape %s)" % (tag, list(tensor.shape)))
    max_rows, max_cols = parse_max_cells(max_cells)
    with torch.no_grad():
        matrix = as_matrix(tensor.detach())
        if matrix.dtype != torch.float32:
            matrix = matrix.float()
        rows, cols = matrix.shape
        if rows <= max_rows and cols <= max_cols:
            return matrix, "none"
        out = (min(rows, max_rows), min(cols, max_cols))
        if not matrix.is_contiguous() and matrix.t().is_contiguous():
            # A transposed weight (e.g. `W.t()`): pooling it directly would
            # first copy it whole; the bins are separable, so pool the
            # contiguous transpose and transpose the small grid instead.
            grid = F.adaptive_avg_pool2d(matrix.t()[None, None], out[::-1])[0, 0].t()
        else:
            grid = F.adaptive_avg_pool2d(matrix[None, None], out)[0, 0]
        return grid, "mean_pool"


GRADIENT_STATS = ("norm", "mean_abs", "max_abs")


def parameter_gradient_stats(named_parameters, stat="norm"):
    """One statistic of each parameter's gradient, computed on the device.

    Args:
      named_parameters: Iterable of `(name, parameter)`; parameters that do not
        require gradients are skipped.
      stat: "norm" (L2), "mean_abs" or "max_abs".

    Returns:
      `(names, values)`: the parameter names and a 1-D float32 tensor on the
      parameters' device (a `None` gradient counts as zero, as in PyTorch's
      `zero_grad(set_to_none=True)` convention).
    """
    if stat not in GRADIENT_STATS:
        raise ValueError(
            "unknown gradient stat %r; expected one of %s" % (stat, ", ".join(GRADIENT_STATS))
        )
    names, grads, params = [], [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        names.append(name)
        params.append(param)
        grads.append(param.grad)
    if not names:
        raise ValueError("the module has no parameters that require gradients")
    device = params[0].device
    values = torch.zeros(len(names), dtype=torch.float32, device=device)
    present = [i for i, g in enumerate(grads) if g is not None]
    if present:
        tensors = [grads[i].detach() for i in present]
        with torch.no_grad():
            if stat == "norm":
                stats = torch._foreach_norm(tensors)
            elif stat == "max_abs":
                stats = torch._foreach_norm(tensors, ord=float("inf"))
            else:
                stats = [t.abs().float().mean() for t in tensors]
            found = dict(zip(present, stats))
            zero = values[0]
            # Assembled on the device: indexing with a host list would copy
            # it over and, on CUDA, wait for the whole queue.
            values = torch.stack([
                found[i].to(device=device, dtype=torch.float32) if i in found else zero
                for i in range(len(names))
            ])
    return names, values


def confusion_counts(tag, predictions, targets, num_classes=None):
    """Counts (true class, predicted class) pairs on the tensors' device.

    Args:
      tag: Named in errors.
      predictions: `[N]` integer class indices, or `[N, classes]` logits or
        probabilities (the arg-max is the prediction).
      targets: `[N]` integer true classes.
      num_classes: Number of classes; inferred from logits when omitted.

    Returns:
      A `[classes, classes]` int64 tensor on the predictions' device; rows
      are true classes, columns predicted classes.
    """
    for name, tensor in (("predictions", predictions), ("targets", targets)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError("%r: %s must be a torch.Tensor, got %s" % (tag, name, type(tensor).__name__))
        check_tensor_dtype(tag, tensor)
    if predictions.dim() == 2:
        if num_classes is None:
            num_classes = predictions.shape[1]
        elif num_classes != predictions.shape[1]:
            raise ValueError(
                "%r: logits have %d classes but num_classes is %d"
                % (tag, predictions.shape[1], num_classes)
            )
        predictions = predictions.argmax(dim=1)
    elif predictions.dim() != 1 or predictions.dtype.is_floating_point:
        raise ValueError(
            "%r: predictions must be [N] integer class indices or [N, classes] logits, "
            "got %s of shape %s" % (tag, predictions.dtype, list(predictions.shape))
        )
    if targets.dim() != 1 or targets.dtype.is_floating_point:
        raise ValueError(
            "%r: targets must be [N] integer class indices, got %s of shape %s"
            % (tag, targets.dtype, list(targets.shape))
        )
    if targets.shape[0] != predictions.shape[0]:
        raise ValueError(
            "%r: %d predictions but %d targets" % (tag, predictions.shape[0], targets.shape[0])
        )
    if targets.numel() == 0:
        raise ValueError("%r: predictions and targets are empty" % tag)
    if num_classes is None:
        raise ValueError("%r: give num_classes or class_names for class-index predictions" % tag)
    targets = targets.to(predictions.device).long()
    predictions = predictions.long()
    # One reduction and one host sync for the range check.
    low = torch.minimum(predictions.min(), targets.min())
    high = torch.maximum(predictions.max(), targets.max())
    low, high = torch.stack([low, high]).tolist()
    if low < 0 or high >= num_classes:
        raise ValueError(
            "%r: class indices must be in [0, %d), got values in [%d, %d]"
            % (tag, num_classes, low, high)
        )
    flat = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


# -- batched reductions for writer.watch() ---------------------------------
#
# watch() reduces every parameter of a model on each logging step, so these
# helpers aim at the fewest kernel launches, memory passes and Python calls:
# the pooling of each parameter shape is planned once, tensors of one shape
# are pooled together on accelerators, and on the CPU squared L2 norms come
# from BLAS dot products (about twice as fast as the generic norm kernel).


class HeatmapPlan:
    """Pooling of a fixed list of tensors to bounded grids, planned once.

    Cells are the bins of adaptive average pooling, as in `heatmap_grid`;
    the pooling is separable, so rows are averaged first (block means when
    they divide evenly) and columns second, which costs a fraction of
    `adaptive_avg_pool2d` on the CPU. Results equal `heatmap_grid` up to
    float rounding.

    Args:
      tensors: The tensors (their shapes, dtypes and devices are planned for).
      max_cells: Largest grid, `(rows, cols)` or an int for both.
      batch: Pool tensors of one shape, dtype and device together (one
        launch per shape; worth it on accelerators, a needless copy on the
        CPU). Defaults to True unless every tensor is on the CPU.
    """

    def __init__(self, tensors, max_cells=DEFAULT_MAX_CELLS, batch=None):
        max_rows, max_cols = parse_max_cells(max_cells)
        if batch is None:
            batch = any(t.device.type != "cpu" for t in tensors)
        self.count = len(tensors)
        self.shapes = []  # (rows, cols, reduction) of each grid
        self._groups = []  # (indices, rows, cols, out_rows, out_cols)
        keyed = {}
        for index, tensor in enumerate(tensors):
            if tensor.dim() == 0 or tensor.numel() == 0:
                raise ValueError("heatmap plan: tensor %d has shape %s" % (index, list(tensor.shape)))
            rows, cols = as_matrix(tensor).shape
            out = (min(rows, max_rows), min(cols, max_cols))
            self.shapes.append(out + ("none" if out == (rows, cols) else "mean_pool",))
            # Whole shapes, not just the matrix view: members are stacked as
            # they are (a 1x1 conv and a linear layer may share a view).
            key = (tuple(tensor.shape), tensor.dtype, tensor.device) if batch else index
            if key not in keyed:
                keyed[key] = len(self._groups)
                self._groups.append(([], rows, cols) + out)
            self._groups[keyed[key]][0].append(index)
        # Tensor indices in the order `flat_grids` lays their grids out.
        self.order = [index for indices, *_ in self._groups for index in indices]

    def flat_grids(self, tensors):
        """Pools `tensors` (same shapes as planned) into float32 grids, left
        as block sums where an axis divides evenly (multiply by `scales[i]`,
        e.g. on the host, for means), as 1-D pieces, one per group of
        same-shaped tensors; concatenated, they hold each tensor's grid,
        row-major, in `self.order`.

        No per-tensor views or selects: on a launch-bound accelerator every
        host-side op counts (ResNet-50 has 161 parameters).
        """
        if len(tensors) != self.count:
            raise ValueError("heatmap plan: %d tensors given, %d planned" % (len(tensors), self.count))
        pieces = []
        with torch.no_grad():
            for indices, rows, cols, out_rows, out_cols in self._groups:
                if len(indices) == 1:
                    stacked = tensors[indices[0]].reshape(1, rows, cols)
                else:
                    # Members share their whole shape (see __init__).
                    stacked = torch.stack([tensors[i] for i in indices]).reshape(-1, rows, cols)
                pooled, _ = _pool_batch(stacked, rows, cols, out_rows, out_cols)
                pieces.append(pooled.reshape(-1))
        return pieces

    @property
    def scales(self):
        """Per tensor: the factor turning an unscaled grid into means."""
        scales = [1.0] * self.count
        for indices, rows, cols, out_rows, out_cols in self._groups:
            scale = _block_scale(rows, out_rows) * _block_scale(cols, out_cols)
            for index in indices:
                scales[index] = scale
        return scales


def _block_scale(size, out):
    """1/block for an evenly divided axis (summed, not averaged), else 1."""
    return 1.0 / (size // out) if size != out and size % out == 0 else 1.0


def _pool_batch(batch, rows, cols, out_rows, out_cols):
    """`[n, rows, cols]` -> float32 `[n, out_rows, out_cols]` adaptive pooling.

    Axes that divide evenly are block SUMS (a middle-axis sum runs vectorised
    along the contiguous rows; an innermost sum of a few elements is cheap on
    the small row-pooled matrix); others are adaptive means.

    Returns:
      `(grid, scale)`: multiplying by `scale` turns the sums into means.
    """
    n = batch.shape[0]
    scale = 1.0
    if out_rows != rows:
        if rows % out_rows == 0:
            batch = batch.reshape(n, out_rows, rows // out_rows, cols).sum(2, dtype=torch.float32)
            scale /= rows // out_rows
        else:
            batch = F.adaptive_avg_pool2d(batch.float().unsqueeze(1), (out_rows, cols)).squeeze(1)
    if batch.dtype != torch.float32:
        batch = batch.float()
    if out_cols != cols:
        if cols % out_cols == 0:
            batch = batch.reshape(n, out_rows, out_cols, cols // out_cols).sum(3)
            scale /= cols // out_cols
        else:
            batch = F.adaptive_avg_pool1d(batch.reshape(n * out_rows, 1, cols), out_cols)
            batch = batch.reshape(n, out_rows, out_cols)
    return batch, scale


def _norm_dtype(tensors):
    """Accumulate half-precision tensors in float32 (wider types cannot be
    asked to narrow)."""
    if all(t.dtype in (torch.float16, torch.bfloat16) for t in tensors):
        return torch.float32
    return None


def _cpu_float32(tensors):
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def squared_l2_norms(tensors):
    """Sum of squares of each tensor, as 0-d float32 tensors on their devices.

    On the CPU, one BLAS dot product per tensor; elsewhere one fused
    `_foreach_norm` launch (squared after). Callers take the square root on
    the host, where it is free.

    Args:
      tensors: Sequence of dense, contiguous-or-not floating tensors.
    """
    if not tensors:
        return []
    with torch.no_grad():
        if _cpu_float32(tensors):
            flat = [t if t.dim() == 1 else t.reshape(-1) for t in tensors]
            return [torch.dot(f, f) for f in flat]
        norms = [n.float() for n in torch._foreach_norm(tensors, 2, dtype=_norm_dtype(tensors))]
        return list(torch._foreach_mul(norms, norms))


def stack_scalars(values):
    """0-d tensors on one device -> one 1-D float32 tensor.

    One launch when their dtypes agree; a stack of mixed dtypes takes
    PyTorch's slow path, one copy launch per element (milliseconds of host
    time for a few hundred on CUDA), so mixed ones are converted first.
    """
    if len({value.dtype for value in values}) > 1:
        values = [value.float() for value in values]
    return torch.stack(values).float()


def squared_l2_norm_vector(tensors, foreach=None):
    """`squared_l2_norms` as one 1-D float32 tensor (tensors on one device).

    Vectors keep the host work of a logging step independent of 0-d tensor
    bookkeeping: one stack and one square, where a `_foreach_mul` over
    0-d tensors costs ~0.7 ms of host time for ResNet-50's 161 on CUDA.

    Args:
      tensors: Dense floating tensors on one device.
      foreach: Use `_foreach_norm` (True) or, for CPU float32 tensors, one
        BLAS dot product each (False); None picks by device.
    """
    with torch.no_grad():
        if not foreach and _cpu_float32(tensors):
            return torch.stack(squared_l2_norms(tensors))
        norms = torch._foreach_norm(tensors, 2, dtype=_norm_dtype(tensors))
        return stack_scalars(norms).square_()


def gradient_stat_vector(tensors, scratch=None, foreach=None):
    """`gradient_stats` as one 1-D float32 tensor `[squares | sums | maxes]`
    (non-empty tensors on one device).

    Args:
      foreach: Three `_foreach_norm` launches (True: the accelerator path)
        or CPU-tuned passes (False: see `gradient_stats`); None picks by
        device.
    """
    if foreach is None:
        foreach = any(t.device.type != "cpu" for t in tensors)
    with torch.no_grad():
        if not foreach:
            squares, sums, maxes = gradient_stats(tensors, scratch)
            return stack_scalars(squares + sums + maxes)
        dtype = _norm_dtype(tensors)
        sums = torch._foreach_norm(tensors, 1, dtype=dtype)
        maxes = torch._foreach_norm(tensors, float("inf"), dtype=dtype)
        squares = squared_l2_norm_vector(tensors, foreach=True)
        return torch.cat([squares, stack_scalars(sums + maxes)])


def abs_sums_and_maxes(tensors, scratch=None):
    """Sum and maximum of the absolute values of each tensor.

    NaN and Inf propagate into both results, so a non-finite input is visible.

    Args:
      tensors: Sequence of dense, non-empty floating tensors.
      scratch: Optional 1-D float32 CPU tensor at least as large as the
        largest tensor: CPU float32 tensors then take their absolute values
        into it, one after the other, instead of into fresh memory (a fresh
        multi-MB CPU allocation page-faults every time).

    Returns:
      `(sums, maxes)`: two lists of 0-d float32 tensors.
    """
    if not tensors:
        return [], []
    with torch.no_grad():
        if all(t.device.type == "cpu" for t in tensors):
            # The CPU kernel behind ord=1 norms is unvectorised (10x slower
            # than one abs pass followed by sum and max).
            sums, maxes = [], []
            for tensor in tensors:
                if scratch is not None and tensor.dtype == torch.float32:
                    absolute = torch.abs(tensor, out=scratch[: tensor.numel()].view(tensor.shape))
                else:
                    absolute = tensor.abs()
                sums.append(absolute.sum(dtype=torch.float32))
                maxes.append(absolute.max().float())
            return sums, maxes
        dtype = _norm_dtype(tensors)
        sums = torch._foreach_norm(tensors, 1, dtype=dtype)
        maxes = torch._foreach_norm(tensors, float("inf"), dtype=dtype)
        return [s.float() for s in sums], [m.float() for m in maxes]


def gradient_stats(tensors, scratch=None):
    """Sums of squares, |x| sums and |x| maxima of each tensor, in one pass
    per tensor where it pays.

    The same values as `squared_l2_norms(tensors)` and
    `abs_sums_and_maxes(tensors, scratch)`. With a scratch buffer and CPU
    float32 tensors, each tensor is visited once (absolute values, dot
    product, sum and maximum back to back while it is in cache) instead of
    once per statistic.

    Returns:
      `(squares, sums, maxes)`: three lists of 0-d float32 tensors.
    """
    if scratch is None or not _cpu_float32(tensors):
        sums, maxes = abs_sums_and_maxes(tensors, scratch)
        return squared_l2_norms(tensors), sums, maxes
    squares, sums, maxes = [], [], []
    with torch.no_grad():
        for tensor in tensors:
            flat = tensor if tensor.dim() == 1 else tensor.reshape(-1)
            absolute = torch.abs(flat, out=scratch[: flat.numel()])
            squares.append(torch.dot(flat, flat))
            sums.append(absolute.sum())
            maxes.append(absolute.max())
    return squares, sums, maxes


def nonzero_count(tensor):
    """Number of nonzero (NaN counts as nonzero) elements, as a 0-d int64
    tensor."""
    if tensor.device.type == "cpu":
        # bool().sum() is about twice as fast as count_nonzero on the CPU.
        return tensor.bool().sum()
    return torch.count_nonzero(tensor)  # one launch


def nonfinite_counts(tensors, lengths=None):
    """Number of NaN/Inf elements of each tensor, in a few fused launches.

    Args:
      tensors: Non-empty sequence of dense floating tensors on one device.
      lengths: Optional `segment_lengths(tensors)`, kept by the caller: made
        once, it spares a host-to-device copy per call.

    Returns:
      A 1-D float32 tensor of counts on that device (exact up to 2**24 per
      tensor).
    """
    with torch.no_grad():
        flat = torch.cat([t.reshape(-1) for t in tensors])
        bad = torch.isfinite(flat).logical_not_().float()
        if lengths is None:
            lengths = segment_lengths(tensors)
        # unsafe: the lengths are the numels by construction; the safe path
        # checks them with .item(), i.e. waits for the device.
        return torch.segment_reduce(bad, "sum", lengths=lengths, unsafe=True)


def segment_lengths(tensors):
    """The numels of `tensors` as an int64 tensor on their device."""
    return device_tensor([t.numel() for t in tensors], tensors[0].device, torch.int64)


def device_tensor(values, device, dtype=None):
    """`torch.tensor(values, dtype=dtype, device=device)` without waiting.

    A copy from pageable host memory to a CUDA device waits until the
    device has run everything queued before it (a stall of the training
    pipeline at every logging step); from pinned memory, non-blocking, it
    does not.
    """
    host = torch.tensor(values, dtype=dtype)
    device = torch.device(device)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
