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
            values[torch.tensor(present, device=device)] = torch.stack(
                [s.to(device=device, dtype=torch.float32) for s in stats]
            )
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
