"""Device-side reductions: big tensors shrink where they live.

Nothing here copies a whole tensor to the host; callers move only the small
results (one device-to-host copy per call).
"""

from __future__ import annotations

import threading

import torch

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
    by_device = {}
    for index, grad in enumerate(grads):
        grad = dense_values(grad)
        if grad is not None:
            by_device.setdefault(grad.device, []).append((index, grad))
    with torch.no_grad():
        for found in by_device.values():
            tensors = [grad for _, grad in found]
            rows = split_statistics(gradient_statistics(tensors), len(tensors))
            if stat == "norm":
                stats = rows["sq_sum"].sqrt()
            elif stat == "max_abs":
                stats = rows["abs_max"]
            else:
                numels = [float(t.numel()) for t in tensors]
                stats = rows["abs_sum"] / torch.tensor(numels, device=rows["abs_sum"].device)
            index = torch.tensor([i for i, _ in found], device=device)
            values.index_copy_(0, index, stats.to(device))
    return names, values


def dense_values(grad):
    """What a gradient's statistics are taken over: a dense gradient as it
    is, a sparse one's stored values (embedding rows that were looked up),
    None for a missing or empty gradient."""
    if grad is None:
        return None
    if grad.requires_grad:  # create_graph=True: statistics stay out of that graph
        grad = grad.detach()
    if grad.is_sparse:
        grad = grad.coalesce().values()
    return grad if grad.numel() else None


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
# aim at the fewest kernel launches, memory passes and Python calls. ONE path
# computes gradient statistics for every caller (watch on the CPU and on
# accelerators, add_gradient_bars, and distributed.py for the local shards of
# FSDP), always as 1-D float32 vectors: a vector costs one stack where
# hundreds of 0-d tensors cost hundreds of host-side ops.

# Rows of `gradient_statistics`, in order.
STAT_ROWS = ("sq_sum", "abs_sum", "abs_max")


def norm_dtype(tensors):
    """The `dtype=` of a norm of `tensors`: float32 accumulation for float32
    and narrower types; None (each tensor's own) where one is float64, which
    a norm cannot be asked to narrow."""
    if any(t.dtype == torch.float64 for t in tensors):
        return None
    return torch.float32


def _cpu_float32(tensors):
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def stack_scalars(values):
    """0-d tensors on one device -> one 1-D float32 tensor.

    One launch when their dtypes agree; a stack of mixed dtypes takes
    PyTorch's slow path, one copy launch per element (milliseconds of host
    time for a few hundred on CUDA), so mixed ones are converted first.
    """
    if len({value.dtype for value in values}) > 1:
        values = [value.float() for value in values]
    return torch.stack(values).float()


def squared_l2_norms(tensors, fused=None):
    """Sum of squares of each tensor, as one 1-D float32 tensor.

    Args:
      tensors: Non-empty dense floating tensors on one device.
      fused: One `_foreach_norm` launch (True: the accelerator path) or, for
        CPU float32 tensors, one BLAS dot product each (False: about twice as
        fast as the generic norm kernel there); None picks by device.
    """
    if fused is None:
        fused = not _cpu_float32(tensors)
    with torch.no_grad():
        if not fused and _cpu_float32(tensors):
            flat = [t if t.dim() == 1 else t.reshape(-1) for t in tensors]
            return torch.stack([torch.dot(f, f) for f in flat])
        norms = torch._foreach_norm(tensors, 2, dtype=norm_dtype(tensors))
        return stack_scalars(norms).square_()


def gradient_statistics(tensors, *, fused=None, scratch=None):
    """Sums of squares, |x| sums and |x| maxima of each tensor.

    NaN and Inf propagate into every statistic of their tensor, so a
    non-finite input is visible (count them with `nonfinite_counts`).

    Args:
      tensors: Non-empty dense, non-empty floating tensors on one device.
      fused: Three `_foreach_norm` launches (True: the accelerator path) or
        CPU-tuned passes (False); None picks by device.
      scratch: Optional 1-D float32 CPU tensor at least as large as the
        largest tensor. With it, each CPU float32 tensor is visited once
        (absolute values into the scratch, dot product, sum and maximum
        back to back while it is in cache) instead of once per statistic,
        and no fresh multi-MB buffer page-faults.

    Returns:
      A 1-D float32 tensor `[sq_sum... | abs_sum... | abs_max...]` (see
      `STAT_ROWS`) on the tensors' device.
    """
    if fused is None:
        fused = any(t.device.type != "cpu" for t in tensors)
    with torch.no_grad():
        if fused:
            dtype = norm_dtype(tensors)
            sums = torch._foreach_norm(tensors, 1, dtype=dtype)
            maxes = torch._foreach_norm(tensors, float("inf"), dtype=dtype)
            return torch.cat([squared_l2_norms(tensors, fused=True), stack_scalars(sums + maxes)])
        squares, sums, maxes = [], [], []
        for tensor in tensors:
            flat = tensor if tensor.dim() == 1 else tensor.reshape(-1)
            if scratch is not None and flat.dtype == torch.float32 and flat.device.type == "cpu":
                absolute = torch.abs(flat, out=scratch[: flat.numel()])
            else:
                absolute = flat.abs()
            # The CPU kernel behind ord=1 norms is unvectorised (10x slower
            # than one abs pass followed by sum and max).
            squares.append(torch.dot(flat, flat) if flat.dtype == torch.float32
                           else flat.float().square().sum())
            sums.append(absolute.sum(dtype=torch.float32))
            maxes.append(absolute.amax().float())  # amax: vectorised, ~2x max() here
        return stack_scalars(squares + sums + maxes)


def split_statistics(vector, count):
    """`gradient_statistics` output -> `{row name: 1-D tensor of count}`."""
    return {name: vector[i * count:(i + 1) * count] for i, name in enumerate(STAT_ROWS)}


# CPU elements counted per block: nonzero marks go into a kept float32 buffer
# of this size (4 MB, one per thread).
_COUNT_BLOCK = 1 << 20
_count_buffers = threading.local()


def nonzero_count(tensor, fused=False):
    """Number of nonzero (NaN counts as nonzero) elements, as a 0-d float
    tensor (exact up to 2**24, as the packet is). `fused`: the one-kernel
    count accelerators take, also on CPU tensors."""
    if tensor.device.type == "cpu" and not fused:
        return _cpu_nonzero_count(tensor)
    # An order-0 norm counts in one reduction over the tensor as it lies;
    # count_nonzero writes a boolean copy first (and copies a channels-last
    # tensor).
    return torch.linalg.vector_norm(tensor, 0, dtype=norm_dtype([tensor]))


def _cpu_nonzero_count(tensor):
    """A fresh multi-MB temporary page-faults on every call (bool().sum() of
    a 2 MB activation took 0.2-5 ms on a 2-core VM, against ~70 µs for marks
    written into a kept buffer and summed)."""
    buffer = getattr(_count_buffers, "buffer", None)
    if buffer is None:
        buffer = _count_buffers.buffer = torch.empty(_COUNT_BLOCK, dtype=torch.float32)
    numel = tensor.numel()
    if numel <= _COUNT_BLOCK:
        marks = buffer[:numel].view(tensor.shape)
        torch.ne(tensor, 0, out=marks)
        # float32: exact up to 2**24, as the packet is (a float64 sum would
        # convert the marks first: 10x slower).
        return marks.sum()
    if not tensor.is_contiguous():
        return tensor.bool().sum()
    flat, total = tensor.view(-1), None
    for start in range(0, numel, _COUNT_BLOCK):
        part = flat[start:start + _COUNT_BLOCK]
        marks = buffer[:part.numel()]
        torch.ne(part, 0, out=marks)
        count = marks.sum()  # exact: a block holds 2**20 marks
        total = count.double() if total is None else total.add_(count)
    return total


def nonfinite_counts(tensors, only=None, lengths=None):
    """Number of NaN/Inf elements of each tensor.

    Args:
      tensors: Non-empty sequence of dense floating tensors on one device.
      only: Optional positions of the tensors that may hold NaN/Inf (known
        from statistics already on the host, e.g. a non-finite max |x|):
        only those are counted, one by one, and the others are 0. Without
        it, every tensor is counted by two list-level calls, whatever the
        number of tensors (`x * 0` is 0 where x is finite and NaN where it
        is not; an order-0 norm counts the NaNs, as nonzeros).
      lengths: Optional numels of `tensors` as an int64 tensor on their
        device: the tensors are then counted laid end to end, in a few
        kernels whatever their number (the list-level calls launch a few per
        tensor: in a CUDA graph those are device time), at the cost of a
        copy of them all.

    Returns:
      A 1-D float32 tensor of counts on that device (exact up to 2**24 per
      tensor).
    """
    if only is not None:
        counts = torch.zeros(len(tensors), dtype=torch.float32, device=tensors[0].device)
        for position in only:
            counts[position] = torch.isfinite(tensors[position]).logical_not_().sum()
        return counts
    with torch.no_grad():
        if lengths is not None:
            flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
            bad = torch.isfinite(flat).logical_not_().float()
            # unsafe: lengths are the numels by construction (the safe path
            # reads them back to the host).
            return torch.segment_reduce(bad, "sum", lengths=lengths, unsafe=True)
        marks = torch._foreach_mul(list(tensors), 0.0)
        return stack_scalars(torch._foreach_norm(marks, 0, dtype=norm_dtype(marks)))


def by_device(tensors):
    """`{device: (positions, tensors)}` of a list of tensors."""
    groups = {}
    for position, tensor in enumerate(tensors):
        positions, members = groups.setdefault(tensor.device, ([], []))
        positions.append(position)
        members.append(tensor)
    return groups


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


_foreach_clone = getattr(torch, "_foreach_clone", None)


def clone_all(tensors):
    """Copies of `tensors` (strides kept) in one list-level call where
    PyTorch has one (`_foreach_clone`), else fresh tensors and one
    `_foreach_copy_`: two host calls, not one per tensor."""
    with torch.no_grad():
        if _foreach_clone is not None:
            return list(_foreach_clone(tensors))
        copies = [torch.empty_like(tensor) for tensor in tensors]
        torch._foreach_copy_(copies, tensors)
        return copies
