"""Distributed training: what `watch()` needs under DDP and FSDP2 / DTensor.

The rules (see README, "DDP / FSDP"):

- Rank 0 writes; no other rank builds protos or touches files.
- DDP: gradients are read after DDP's all-reduce (in the optimizer's step
  hook), so rank 0's gradients, weights and updates already are the global
  ones and need no communication. Only per-class output shares differ per
  rank (each rank sees its own batches): `sum_across_ranks` adds them up with
  one all_reduce per logging step.
- FSDP2 (`fully_shard`) / DTensor: each rank holds a shard of every
  parameter and gradient. `global_stats` turns per-shard partial sums into
  the statistics of the whole tensor with one all_reduce of a small buffer
  (plus one MAX all_reduce when `max_abs` is asked for); `heatmap_grids`
  pools each shard into its share of the bounded grid and all-reduces only
  that grid, so the full weight is never gathered.

Every function here that communicates is a COLLECTIVE: every rank of the
process group must call it, at the same logging step, with the same
parameters in the same order, or training hangs. Without `torch.distributed`
(or with a world of one) nothing communicates and the results equal those of
`torch_visualization.reduce`.
"""

from __future__ import annotations


import torch
import torch.distributed as dist

from torch_visualization import pooling, reduce

try:  # DTensor is missing from builds without distributed support.
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover - such builds have no FSDP2 either
    DTensor = Replicate = Shard = None

STATS = ("norm", "sq_sum", "mean_abs", "abs_sum", "max_abs", "nonfinite")


def is_distributed():
    """True when a default process group with more than one rank exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's global rank; 0 without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_writer():
    """True on the one process that writes events (global rank 0)."""
    return rank() == 0


def is_sharded(tensor):
    """True for a DTensor that is sharded on at least one mesh dimension."""
    return DTensor is not None and isinstance(tensor, DTensor) and bool(_shard_dims(tensor))


def needs_collectives(tensors):
    """True when statistics of `tensors` need communication (some are sharded).

    `watch()` can call this once at `watch` time: under plain DDP or a single
    process it is False and `global_stats` / `heatmap_grids` reduce to local
    work; under FSDP2 it is True and every rank must reach each logging step.
    """
    return any(is_sharded(t) for t in tensors if t is not None)


def sum_across_ranks(tensor, group=None):
    """Sums `tensor` over all ranks, in place, with one all_reduce (COLLECTIVE).

    Used for per-class output shares: stack the per-class sums and the sample
    count into ONE buffer and call this once per logging step.

    Args:
      tensor: A tensor on the device the process group's backend serves
        (CPU for gloo, CUDA for NCCL).
      group: Process group (the default group when None).

    Returns:
      `tensor`, now holding the sum over ranks (unchanged when not
      distributed).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError("sum_across_ranks expects a torch.Tensor, got %s" % type(tensor).__name__)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def _shard_dims(tensor):
    """Mesh dimensions on which a DTensor is sharded, validating placements."""
    dims = []
    for mesh_dim, placement in enumerate(tensor.placements):
        if isinstance(placement, Shard):
            dims.append(mesh_dim)
        elif not isinstance(placement, Replicate):
            # Partial values or strided (FSDP+TP) shards are not contiguous
            # blocks of the global tensor; reducing them needs other maths.
            raise ValueError(
                "unsupported DTensor placement %r of a %s tensor (supported: Shard, "
                "Replicate; FSDP+TP strided shards and Partial values are not)"
                % (placement, list(tensor.shape))
            )
    return tuple(dims)


def _reduce_key(tensor):
    """Which groups a tensor's partial sums must be reduced over (or None)."""
    if DTensor is None or not isinstance(tensor, DTensor):
        return None
    dims = _shard_dims(tensor)
    return (tensor.device_mesh, dims) if dims else None


def _local(tensor):
    if DTensor is not None and isinstance(tensor, DTensor):
        return tensor.to_local()
    return tensor


def _all_reduce(buffer, key, op):
    mesh, dims = key
    for mesh_dim in dims:
        dist.all_reduce(buffer, op=op, group=mesh.get_group(mesh_dim))


def _buffer_dtype(device):
    # float64 keeps squared sums from overflowing and partial sums exact
    # enough to match single-process results; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def global_stats(tensors, stats=("norm",)):
    """Statistics of whole tensors, computed from the local shards.

    Plain tensors (single process, DDP, replicated DTensors) are their own
    whole; sharded DTensors contribute partial sums that are combined with
    ONE SUM all_reduce per distinct mesh (one in practice), plus one MAX
    all_reduce when "max_abs" is requested. COLLECTIVE when any tensor is
    sharded.

    Args:
      tensors: Sequence of tensors, DTensors or None (None counts as a zero
        tensor: a parameter without a gradient).
      stats: Any of "norm" (L2), "sq_sum" (its square), "mean_abs",
        "abs_sum" (sum of |x|), "max_abs", "nonfinite" (count of NaN/Inf
        elements).

    Returns:
      `{stat: 1-D float32 tensor [len(tensors)]}` on the tensors' device,
      equal (up to float rounding) to the statistic of the unsharded tensor.
    """
    stats = tuple(stats)
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise ValueError("stats must be some of %s, got %r" % (", ".join(STATS), stats))
    tensors = list(tensors)
    present = [i for i, t in enumerate(tensors) if t is not None]
    device = _local(tensors[present[0]]).device if present else torch.device("cpu")
    dtype = _buffer_dtype(device)
    n = len(tensors)
    sum_rows = ["sq", "abs", "nonfinite"]
    sum_rows = [row for row in sum_rows if _wants(stats, row)]
    sums = torch.zeros(len(sum_rows), n, dtype=dtype, device=device)
    maxes = torch.zeros(1 if "max_abs" in stats else 0, n, dtype=dtype, device=device)
    # A DTensor's numel() is the global one; one host-to-device copy.
    numels = reduce.device_tensor(
        [max(t.numel(), 1) if t is not None else 1 for t in tensors], device, dtype
    )

    locals_ = {i: _local(tensors[i]).detach() for i in present}
    # Empty shards (a small tensor split over many ranks) contribute zeros;
    # _foreach_norm has no identity for max over nothing.
    nonempty = [i for i in present if locals_[i].numel() > 0]
    with torch.no_grad():
        if nonempty:
            # The local partials come from the one statistics path of
            # reduce.py (the same kernels as a single process).
            index = reduce.device_tensor(nonempty, device)
            chunks = [locals_[i] for i in nonempty]
            rows = reduce.split_statistics(reduce.gradient_statistics(chunks), len(chunks))
            local = {"sq": rows["sq_sum"], "abs": rows["abs_sum"]}
            if "nonfinite" in stats:
                local["nonfinite"] = reduce.nonfinite_counts(chunks)
            for row in sum_rows:
                sums[sum_rows.index(row)].index_copy_(0, index, local[row].to(dtype))
            if "max_abs" in stats:
                maxes[0].index_copy_(0, index, rows["abs_max"].to(dtype))
        groups = {}
        for i in present:
            key = _reduce_key(tensors[i])
            if key is not None:
                groups.setdefault(key, []).append(i)
        # Same tensors in the same order on every rank, so every rank issues
        # the same collectives in the same order.
        for key, members in groups.items():
            if len(groups) == 1 and len(members) == n:
                _all_reduce(sums, key, dist.ReduceOp.SUM)
                if maxes.numel():
                    _all_reduce(maxes, key, dist.ReduceOp.MAX)
                continue
            index = reduce.device_tensor(members, device)
            part = sums.index_select(1, index)
            _all_reduce(part, key, dist.ReduceOp.SUM)
            sums.index_copy_(1, index, part)
            if maxes.numel():
                part = maxes.index_select(1, index)
                _all_reduce(part, key, dist.ReduceOp.MAX)
                maxes.index_copy_(1, index, part)

        result = {}
        if "sq" in sum_rows:
            result["sq_sum"] = sums[sum_rows.index("sq")]
            result["norm"] = result["sq_sum"].sqrt()
        if "abs" in sum_rows:
            result["abs_sum"] = sums[sum_rows.index("abs")]
            result["mean_abs"] = result["abs_sum"] / numels
        if "nonfinite" in stats:
            result["nonfinite"] = sums[sum_rows.index("nonfinite")]
        if "max_abs" in stats:
            result["max_abs"] = maxes[0]
        return {stat: result[stat].float() for stat in stats}


def _wants(stats, row):
    if row == "sq":
        return "norm" in stats or "sq_sum" in stats
    if row == "abs":
        return "mean_abs" in stats or "abs_sum" in stats
    return row in stats


def gradient_statistics(grads):
    """What `watch()` logs of gradients, right for sharded ones (COLLECTIVE).

    Args:
      grads: Non-empty list of present gradients (tensors or DTensors).

    Returns:
      `(vector, nonfinite)`: the statistics of the whole tensors laid out as
      `reduce.gradient_statistics` lays them out, and a 1-D float32 tensor of
      NaN/Inf counts.
    """
    stats = global_stats(grads, ("sq_sum", "abs_sum", "max_abs", "nonfinite"))
    vector = torch.cat([stats["sq_sum"], stats["abs_sum"], stats["max_abs"]])
    return vector, stats["nonfinite"]


def squared_l2_norms(tensors):
    """`reduce.squared_l2_norms` of whole tensors from their shards (COLLECTIVE)."""
    return global_stats(tensors, ("sq_sum",))["sq_sum"]


def sum_step_counts(class_sum, class_samples, activations, modules, device=None):
    """Adds every rank's output and activation counts with ONE all_reduce.

    For `watch()` under DDP/FSDP (COLLECTIVE): each rank measured its own
    micro-batches; the logged shares must be those of the global batch, as
    one process training on all the data would log.

    Args:
      class_sum: 1-D tensor of per-class softmax sums on this rank, or None
        when the output is not logged (then no class numbers are exchanged;
        every rank decides this the same way).
      class_samples: Samples behind `class_sum` on this rank (int).
      activations: `[(module index, 0-d nonzero count, numel)]` of this rank.
      modules: Number of activation modules watched.
      device: Where the exchanged buffer lives when neither `class_sum` nor
        `activations` says (the model's device: NCCL cannot reduce a CPU
        tensor); the CPU when None.

    Returns:
      `(class_mean, nonzero_fraction)`: the global mean softmax (1-D float32
      or None) and, per module, the global fraction of NONZERO outputs (1-D
      float32; NaN for a module that ran on no rank). Both stay on the
      device: no host sync.
    """
    if class_sum is not None:
        device = class_sum.device
    elif activations:
        device = activations[0][1].device
    elif device is None:
        device = torch.device("cpu")
    dtype = _buffer_dtype(device)
    width = 0 if class_sum is None else class_sum.numel()
    buffer = torch.zeros(width + 1 + 2 * modules, dtype=dtype, device=device)
    if class_sum is not None:
        buffer[:width] = class_sum.to(dtype)
        buffer[width] = class_samples
    if activations:
        index = reduce.device_tensor([i for i, _, _ in activations], device)
        counts = torch.stack([c.to(device=device, dtype=dtype) for _, c, _ in activations])
        numels = reduce.device_tensor([float(n) for _, _, n in activations], device, dtype)
        start = width + 1
        buffer[start:start + modules].index_add_(0, index, counts)
        buffer[start + modules:].index_add_(0, index, numels)
    sum_across_ranks(buffer)
    class_mean = None
    if class_sum is not None:
        class_mean = (buffer[:width] / buffer[width]).float()
    start = width + 1
    fraction = (buffer[start:start + modules] / buffer[start + modules:]).float()
    return class_mean, fraction


def combine_output_statistics(module_stats, modules, sequence, device=None):
    """Adds every rank's output statistics (COLLECTIVE: one SUM and one MAX
    all_reduce), for `watch()` under DDP/FSDP: the block outputs' rms and
    max |x| and the sequence statistics of the global batch.

    Args:
      module_stats: `[(module index, L2 norm, min, max, count)]` of
        this rank (0-d device tensors and an int).
      modules: Number of stat modules watched.
      sequence: `[sum of entropies, max logit, positions]` of this rank's
        sequence outputs, or None.
      device: Where the buffers live when nothing else says.

    Returns:
      `(per_module, sequence)`: a `[4, modules]` float32 tensor (sums of
      squares, minima, maxima, counts; count 0 for a module that ran on no
      rank) and the global sequence statistics (positions 0 when there were
      none).
    """
    if module_stats:
        device = module_stats[0][1].device
    elif sequence is not None:
        device = sequence.device
    elif device is None:
        device = torch.device("cpu")
    dtype = _buffer_dtype(device)
    sums = torch.zeros(2 * modules + 2, dtype=dtype, device=device)
    # Maxima of [-min per module | max per module | max logit].
    maxes = torch.full((2 * modules + 1,), float("-inf"), dtype=dtype, device=device)
    if module_stats:
        index = reduce.device_tensor([i for i, *_ in module_stats], device)
        norms, lows, highs = (torch.stack(list(column)).to(dtype)
                              for column in list(zip(*module_stats))[1:4])
        squares = norms.square()
        counts = reduce.device_tensor([float(n) for *_, n in module_stats], device, dtype)
        sums[:modules].index_add_(0, index, squares)
        sums[modules:2 * modules].index_add_(0, index, counts)
        maxes[:modules].scatter_reduce_(0, index, -lows, "amax")
        maxes[modules:2 * modules].scatter_reduce_(0, index, highs, "amax")
    if sequence is not None:
        sums[2 * modules:] = sequence[0::2].to(dtype)
        maxes[2 * modules] = sequence[1].to(dtype)
    if is_distributed():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
    per_module = torch.stack([sums[:modules], -maxes[:modules], maxes[modules:2 * modules],
                              sums[modules:2 * modules]])
    combined = torch.stack([sums[2 * modules], maxes[2 * modules], sums[2 * modules + 1]])
    return per_module.float(), combined.float()


def _bin_pairs(global_index, size, out, device):
    """`(local positions, bin numbers)` of every (element, bin) membership."""
    starts, ends = pooling.bins(size, out)
    starts = torch.tensor(starts, device=device)
    ends = torch.tensor(ends, device=device)
    member = (global_index[:, None] >= starts[None]) & (global_index[:, None] < ends[None])
    local, bins = member.nonzero(as_tuple=True)
    counts = (ends - starts)
    return local, bins, counts


def _local_block(tensor, tag):
    """`(shape, offset)` of this rank's block of a sharded DTensor, from its
    public placements and mesh coordinate.

    `Shard(dim)` splits a dimension as `torch.chunk` does (chunks of
    ceil(size / ranks), the last ones smaller or empty), mesh dimension after
    mesh dimension; the result is checked against the local tensor's shape.
    """
    shape = list(tensor.shape)
    offset = [0] * len(shape)
    mesh = tensor.device_mesh
    coordinate = mesh.get_coordinate()
    for mesh_dim, placement in enumerate(tensor.placements):
        if not isinstance(placement, Shard):
            continue
        dim = placement.dim % len(shape)
        chunk = -(-shape[dim] // mesh.size(mesh_dim))
        start = min(coordinate[mesh_dim] * chunk, shape[dim])
        offset[dim] += start
        shape[dim] = max(0, min(chunk, shape[dim] - start))
    if tuple(shape) != tuple(tensor.to_local().shape):
        raise ValueError(
            "%r: the local shard has shape %s where torch.chunk's split gives %s; "
            "this sharding layout is not supported" % (tag, list(tensor.to_local().shape), shape)
        )
    return shape, offset


def _partial_grid(tag, tensor, max_cells):
    """This rank's share of the pooled grid of a sharded DTensor.

    Returns `(sums [R, C], counts [R, C], reduction)`: per-bin sums over the
    elements this rank holds, and the number of elements of each bin in the
    whole tensor.
    """
    shape = tuple(tensor.shape)
    pooling.check_heatmap_tensor(tag, tensor)
    rows, cols = pooling.matrix_shape(shape)
    out_rows, out_cols, reduction = pooling.grid_shape(shape, max_cells)

    local = tensor.to_local().detach()
    device = local.device
    dtype = _buffer_dtype(device)
    local_shape, offset = _local_block(tensor, tag)
    # Global coordinates of the local block, in the heatmap's matrix view.
    if len(shape) == 1:
        row_index = torch.zeros(1, dtype=torch.long, device=device)
        col_index = offset[0] + torch.arange(local_shape[0], device=device)
        matrix = local.reshape(1, local_shape[0])
    else:
        row_index = offset[0] + torch.arange(local_shape[0], device=device)
        # Row-major ravel of the trailing dims (Horner form), in the order
        # local.reshape(rows, -1) lays the local columns out.
        col_index = torch.zeros(1, dtype=torch.long, device=device)
        for dim in range(1, len(shape)):
            along = offset[dim] + torch.arange(local_shape[dim], device=device)
            col_index = (col_index[:, None] * shape[dim] + along[None, :]).reshape(-1)
        matrix = local.reshape(local_shape[0], col_index.numel())
    matrix = matrix.to(dtype)

    # index_add_ keeps a NaN or Inf inside the bins that contain it, as
    # adaptive_avg_pool2d does (a 0/1 matmul would spread NaN everywhere).
    col_local, col_bins, col_counts = _bin_pairs(col_index, cols, out_cols, device)
    by_cols = torch.zeros(matrix.shape[0], out_cols, dtype=dtype, device=device)
    by_cols.index_add_(1, col_bins, matrix.index_select(1, col_local))
    row_local, row_bins, row_counts = _bin_pairs(row_index, rows, out_rows, device)
    sums = torch.zeros(out_rows, out_cols, dtype=dtype, device=device)
    sums.index_add_(0, row_bins, by_cols.index_select(0, row_local))
    counts = row_counts[:, None].to(dtype) * col_counts[None, :].to(dtype)
    return sums, counts, reduction


def heatmap_grids(named_tensors, max_cells=pooling.DEFAULT_MAX_CELLS):
    """Heatmap grids of (possibly sharded) weights, never gathering a weight.

    A plain or replicated tensor goes through `pooling.heatmap_grid` locally.
    A sharded DTensor is pooled shard by shard into the same bins that
    `adaptive_avg_pool2d` uses on the whole matrix; the per-bin sums of all
    sharded tensors are concatenated and all-reduced ONCE per distinct mesh
    (COLLECTIVE), then divided by the bins' sizes. Only the grid crosses the
    network.

    Args:
      named_tensors: Sequence of `(tag, tensor)`; tags name errors.
      max_cells: Largest grid kept, as in `pooling.heatmap_grid`.

    Returns:
      A list of `(grid, reduction)`, as `pooling.heatmap_grid` returns for the
      unsharded tensor (grid: float32 on the tensor's device), identical on
      every rank up to float rounding.
    """
    named_tensors = list(named_tensors)
    results = [None] * len(named_tensors)
    groups = {}
    for i, (tag, tensor) in enumerate(named_tensors):
        key = _reduce_key(tensor) if isinstance(tensor, torch.Tensor) else None
        if key is None:
            results[i] = pooling.heatmap_grid(tag, _local(tensor), max_cells)
            continue
        groups.setdefault(key, []).append((i, _partial_grid(tag, tensor, max_cells)))
    with torch.no_grad():
        for key, parts in groups.items():
            flat = torch.cat([sums.reshape(-1) for _, (sums, _, _) in parts])
            _all_reduce(flat, key, dist.ReduceOp.SUM)
            start = 0
            for i, (sums, counts, reduction) in parts:
                size = sums.numel()
                total = flat[start:start + size].reshape(sums.shape)
                start += size
                results[i] = ((total / counts).float(), reduction)
    return results
