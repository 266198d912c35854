"""`SummaryWriter.watch()`: hook-based logging of a whole model at near-zero cost.

Every `log_every` counted steps it logs (tags are part of the contract):

- `weights/<param name>`: heatmap of each parameter, pooled on its device to
  at most `max_cells` (64x64 by default);
- `gradients/norm`, `gradients/mean_abs`, `gradients/max_abs`: bars, one per
  parameter that requires gradients (a missing gradient counts as zero);
  NaN/Inf stay in the values so the tab marks them;
- `gradients/nonfinite`: bars, the number of NaN/Inf gradient elements per
  parameter; the first time any appear a `RuntimeWarning` names the first
  offending parameters (once; likewise once for NaN/Inf weights);
- `updates/ratio` (with an optimizer): bars, ||w_after - w_before|| /
  ||w_before|| per parameter over the optimizer step (0/0 counts as 0, x/0 as
  Inf);
- `activations/zero_fraction`: bars, the fraction of exactly-zero outputs of
  each activation module (`ACTIVATION_TYPES`; functional calls such as
  `F.relu` have no module to hook), NaN for a module that did not run;
- `outputs/classes`: pie, the mean softmax of a `[batch, classes]` model
  output (or of its `"logits"` entry, as in Hugging Face's `ModelOutput`),
  labelled with `class_names` when given.

What counts as a step: with an optimizer, its steps (step hooks), so gradient
accumulation is counted right. Gradients are read in the step post-hook:
after `GradScaler.step` unscaled them, and after a closure (LBFGS,
Lightning's automatic optimization) ran backward inside `optimizer.step()`;
PyTorch's optimizers leave `.grad` unchanged. A step the scaler skips
(Inf/NaN gradients) is not counted. Without an
optimizer, forward passes of the model in training mode count; gradients are
then read when that step's backward pass ends. Eval-mode forwards never
count. Step `s` (0-based) logs when `s % log_every == 0`, under global step
`s`.

When things are measured, and why (the cost rules of DESIGN.md):

- A step that does not log runs one Python integer check in the optimizer
  hooks (or the model's forward hook without an optimizer): no device work,
  no host sync, no allocation. The forward hooks on activation modules and
  on the model output exist only while a logging step is in progress (added
  when the previous step ends, removed when the logging step ends; with
  `log_every=1` they stay), so other steps keep PyTorch's hook-free fast path.
- Activations and outputs are therefore measured on the forward passes of
  the logging step itself (every micro-batch of it under gradient
  accumulation), not summed over the whole interval: a running softmax sum on
  every step costs about 1% of a small model's step, the whole budget for
  non-logging steps.
- A logging step reduces on the device: one `torch._foreach_*` launch per
  statistic on accelerators (BLAS dot products and a kept scratch buffer on
  the CPU), one pooling per parameter shape, a nonzero count per activation;
  every number goes into one float32 buffer copied to the host once
  (`non_blocking` into pinned memory on CUDA; the background thread waits on
  a CUDA event). For `updates/ratio` the trainable weights are copied before
  the step (on the CPU into buffers kept between logging steps: one extra
  copy of them in memory; fresh multi-MB CPU allocations page-fault).
- Protos are built and events written on one daemon thread per writer, behind
  a bounded queue (a full queue makes the training thread wait rather than
  drop data). Its errors are reported once (logging + warnings) and never
  reach training; `writer.flush()` and `writer.close()` drain it. Each
  logging step is ONE event; only a tag's first event carries metadata (all
  TensorBoard keeps), later values are spliced from cached serialised
  prefixes; the writer's record writer checksums with google-crc32c
  (`event_records.py`) instead of TensorBoard's pure-Python CRC.

`torch.compile`: hooks inside a compiled region do nothing
(`torch.compiler.is_compiling()`), so compiled graphs gain no graph break
and no recompilation; weights, gradients and updates are logged from the
optimizer hooks as usual. Activation fractions are not available inside a
compiled region; pass the compiled module itself to `watch` to keep
`outputs/classes` (its hooks run eagerly around the compiled call).

Distributed (`torch.distributed` initialised with more than one rank): call
`watch` on EVERY rank, after wrapping the model (DDP) or sharding it
(`fully_shard`). Only global rank 0 owns the tags, the background thread
and the event files; the other ranks need no writer (pass `None` to
`torch_visualization.watch.watch`). A logging step is a COLLECTIVE: its
hooks run on every rank and end in collectives that every rank must reach,
at the same step, with the same model and the same `log_every` (a rank that
skips a logging step, or calls `remove()` alone, hangs the others):

- every rank: ONE all_reduce adds the ranks' class sums, sample counts and
  activation counts, so `outputs/classes` and `activations/zero_fraction`
  are those of the global batch (as one process training on all of it);
- DDP: gradients are read after DDP's all-reduce (step post-hook), so rank
  0's gradients, weights and updates already are the global ones; the other
  ranks skip those statistics;
- FSDP2 / DTensor (`fully_shard`, parameters sharded when `watch` is
  called): every rank reduces its local shards and
  `torch_visualization.distributed` combines them: norms, |g| sums and
  NaN/Inf counts from one SUM all_reduce of partial sums (plus one MAX
  all_reduce for `max_abs`), `updates/ratio` from one more, and heatmaps
  pooled shard by shard with only the pooled grids all-reduced (a full
  weight is never gathered).

Ranks other than 0 stop after their share of the collectives: no copy to
the host, no proto, no file. Pass the optimizer: without one, gradients are
read when the backward pass ends, possibly before DDP/FSDP has reduced them. Without a process group (or with a world of
one) none of this runs: the single-process path is unchanged.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import logging
import queue
import threading
import time
import warnings
import weakref

import numpy as np
import torch
from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)

from torch_visualization import distributed, event_records, reduce, summary

logger = logging.getLogger(__name__)

TAG_WEIGHTS = "weights/"
TAG_GRAD_NORM = "gradients/norm"
TAG_GRAD_MEAN_ABS = "gradients/mean_abs"
TAG_GRAD_MAX_ABS = "gradients/max_abs"
TAG_GRAD_NONFINITE = "gradients/nonfinite"
TAG_UPDATE_RATIO = "updates/ratio"
TAG_ZERO_FRACTION = "activations/zero_fraction"
TAG_CLASSES = "outputs/classes"

# Modules whose outputs are measured for exact zeros ("dead units").
ACTIVATION_TYPES = (
    torch.nn.ReLU,
    torch.nn.ReLU6,
    torch.nn.LeakyReLU,
    torch.nn.PReLU,
    torch.nn.RReLU,
    torch.nn.ELU,
    torch.nn.SELU,
    torch.nn.CELU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Mish,
    torch.nn.Hardswish,
    torch.nn.Hardsigmoid,
    torch.nn.Hardtanh,
    torch.nn.Threshold,
    torch.nn.Sigmoid,
    torch.nn.Tanh,
)

# How many logging steps may wait for the background thread before the
# training thread blocks (bounds host memory).
MAX_PENDING = 8

# Names shown in the non-finite warning.
_WARN_NAMES = 5

# Models currently watched (by any writer): a second watch is an error.
_watched = weakref.WeakKeyDictionary()
_watched_lock = threading.Lock()


# -- what a watch logs, fixed when it starts ---------------------------------


@dataclasses.dataclass
class _Plan:
    """Tags and labels of one watch (labels are frozen per tag)."""

    param_names: list
    grad_names: list
    grad_numels: np.ndarray
    activation_names: list
    class_names: list
    updates: bool
    max_cells: tuple
    # Tags already warned about (non-finite values); touched by the worker.
    warned: set = dataclasses.field(default_factory=set)

    @property
    def bar_extra(self):
        return {"labels": self.grad_names}

    def bar_tags(self):
        tags = [TAG_GRAD_NORM, TAG_GRAD_MEAN_ABS, TAG_GRAD_MAX_ABS, TAG_GRAD_NONFINITE]
        return tags + ([TAG_UPDATE_RATIO] if self.updates else [])


@dataclasses.dataclass
class _Packet:
    """One logging step, handed from the training thread to the worker.

    `buffer` holds, in order: squared L2 norms, |g| sums and |g| maxima of
    the present gradients; with updates, squared norms of the weights before
    the step and of the update (one per trainable parameter each); one
    nonzero count per activation entry; NaN/Inf counts per present gradient
    (when counted on the device); the class sums; the heatmaps (block sums,
    scaled to means by `heatmap_scales`), in the order of `heatmaps`:
    `(tag, grid shape, first-event metadata)` per weight, grouped by shape
    on accelerators (see `reduce.HeatmapPlan.order`).
    """

    plan: _Plan
    step: int
    walltime: float
    buffer: torch.Tensor
    ready: object
    grad_present: list
    nonfinite_host: dict
    updates: bool
    activation_entries: list
    class_samples: int
    class_width: int
    heatmaps: list
    heatmap_scales: np.ndarray


# -- host side: numbers back into summaries (runs on the worker) -------------


_varint = event_records.varint

_foreach_clone = getattr(torch, "_foreach_clone", None)

# Test seam: run the accelerator path (the one CUDA takes) on CPU tensors, so
# that CI, which has no GPU, exercises it too. Never set in production.
_ACCELERATOR_PATH_ON_CPU = False


class _ValueEncoder:
    """Serialises `Summary.Value`s of tags whose metadata is already written.

    Per logging step only the tensor bytes change, so each (tag, dtype,
    shape) gets its serialised prefix once from protobuf and every later
    value is a few byte concatenations (protobuf wire format: Value.tag = 1,
    Value.tensor = 8, TensorProto.tensor_content = 4; fields may come in any
    order). Building ~15 protos per step in Python would otherwise hold the
    GIL long enough to slow the training thread.
    """

    def __init__(self):
        self._prefixes = {}

    def summary_parts(self, tag, array):
        """The `Summary.value` entry (field 1) for `array` under `tag`, as
        `(prefix, data)`: bytes, and a view of the contiguous `array` (joined
        once with the whole event, no copy here).

        Every byte before the data depends only on the tag, dtype and shape,
        so the prefix is built once per tag.
        """
        key = (tag, array.dtype.str, array.shape)
        prefix = self._prefixes.get(key)
        if prefix is None:
            dtype = types_pb2.DT_DOUBLE if array.dtype == np.float64 else types_pb2.DT_FLOAT
            shape = tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
            )
            tensor_head = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape).SerializeToString()
            tensor_head += b"\x22" + _varint(array.nbytes)
            tensor_size = len(tensor_head) + array.nbytes
            value_head = summary_pb2.Summary.Value(tag=tag).SerializeToString()
            value_head += b"\x42" + _varint(tensor_size) + tensor_head
            value_size = len(value_head) + array.nbytes
            prefix = self._prefixes[key] = b"\x0a" + _varint(value_size) + value_head
        return prefix, memoryview(array).cast("B")


def _first_entry(tag, kind, values, extra):
    """`Summary.value` entry bytes with full metadata, via the pure builders."""
    if kind == "heatmap":
        proto = summary.heatmap_summary(
            tag, values, original_shape=extra["original_shape"], reduction=extra["reduction"]
        )
    elif kind == "pie":
        proto = summary.pie_summary(tag, values, class_names=extra["class_names"] or None)
    else:
        proto = summary.bars_summary(tag, values, labels=extra["labels"])
    value = proto.value[0].SerializeToString()
    return b"\x0a" + _varint(len(value)) + value


def _step_values(packet, array):
    """Splits one packet's host array into `[(tag, kind, values, extra)]`.

    Pure: numpy in, plain values out. `extra` holds what the first event of a
    tag needs for its metadata (labels, original shape, reduction).
    """
    plan = packet.plan
    present = packet.grad_present
    grads = len(present) if present is not None else 0
    count = len(plan.grad_names)
    updates = 2 * count if packet.updates else 0
    activations = len(packet.activation_entries)
    device_counts = grads if present is not None and packet.nonfinite_host is None else 0
    classes = packet.class_width if packet.class_samples else 0
    scalars = array[: 3 * grads + updates + activations + device_counts + classes]
    scalars = scalars.astype(np.float64)
    out = []
    if present is not None:
        # L2 norms travel as sums of squares (see reduce.squared_l2_norms).
        squares, sums, maxes = scalars[:grads], scalars[grads : 2 * grads], scalars[2 * grads : 3 * grads]
        norm, mean_abs, max_abs, nonfinite = np.zeros((4, count))
        norm[present] = np.sqrt(squares)
        mean_abs[present] = sums / plan.grad_numels[present]
        max_abs[present] = maxes
        if device_counts:
            start = 3 * grads + updates + activations
            nonfinite[present] = scalars[start : start + grads]
        else:
            for position, value in packet.nonfinite_host.items():
                nonfinite[present[position]] = value
        labels = plan.bar_extra
        out += [
            (TAG_GRAD_NORM, "bars", norm, labels),
            (TAG_GRAD_MEAN_ABS, "bars", mean_abs, labels),
            (TAG_GRAD_MAX_ABS, "bars", max_abs, labels),
            (TAG_GRAD_NONFINITE, "bars", nonfinite, labels),
        ]
    if updates:
        before = np.sqrt(scalars[3 * grads : 3 * grads + count])
        delta = np.sqrt(scalars[3 * grads + count : 3 * grads + updates])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(before == 0, np.where(delta == 0, 0.0, np.inf), delta / before)
        out.append((TAG_UPDATE_RATIO, "bars", ratio, plan.bar_extra))
    if activations:
        start = 3 * grads + updates
        nonzero, total = np.zeros((2, len(plan.activation_names)))
        for (index, numel), value in zip(packet.activation_entries, scalars[start : start + activations]):
            nonzero[index] += value
            total[index] += numel
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(total > 0, 1.0 - nonzero / total, np.nan)
        out.append((TAG_ZERO_FRACTION, "bars", fraction, {"labels": plan.activation_names}))
    if classes:
        shares = scalars[len(scalars) - classes :] / packet.class_samples
        out.append((TAG_CLASSES, "pie", shares, {"class_names": plan.class_names}))
    offset = len(scalars)
    # Heatmaps arrive as block sums; one multiply turns them all into means.
    grids = array[offset : offset + len(packet.heatmap_scales)] * packet.heatmap_scales
    offset = 0
    for tag, grid_shape, extra in packet.heatmaps:
        size = grid_shape[0] * grid_shape[1]
        out.append((tag, "heatmap", grids[offset : offset + size].reshape(grid_shape), extra))
        offset += size
    return out


def _warn_nonfinite(plan, step, values):
    """Warns once about NaN/Inf gradients and once about NaN/Inf weights."""
    bad = {}
    for tag, kind, array, _ in values:
        if tag == TAG_GRAD_NONFINITE and TAG_GRAD_NONFINITE not in plan.warned:
            names = ["%s (%d)" % (name, count) for name, count in zip(plan.grad_names, array) if count]
            if names:
                bad[TAG_GRAD_NONFINITE] = names
        elif kind == "heatmap" and TAG_WEIGHTS not in plan.warned and not np.isfinite(array).all():
            bad.setdefault(TAG_WEIGHTS, []).append(tag[len(TAG_WEIGHTS) :])
    for key, names in bad.items():
        plan.warned.add(key)
        what, where = (
            ("gradients with NaN/Inf values (count)", "%r and the gradient bars" % key)
            if key == TAG_GRAD_NONFINITE
            else ("weights with NaN/Inf values", "'weights/<name>'")
        )
        more = "" if len(names) <= _WARN_NAMES else " and %d more" % (len(names) - _WARN_NAMES)
        warnings.warn(
            "torch_visualization watch: %s at step %d: %s%s; logged as-is in %s "
            "(warned once)" % (what, step, ", ".join(names[:_WARN_NAMES]), more, where),
            RuntimeWarning,
            stacklevel=2,
        )


# -- the background thread ---------------------------------------------------


class _Worker:
    """Builds summaries and writes events on a daemon thread, one per writer."""

    _STOP = object()

    def __init__(self, writer, max_pending=MAX_PENDING):
        self._writer = writer
        self._queue = queue.Queue(max_pending)
        self._seen_tags = set()
        self._file_writer = None
        self._encoder = _ValueEncoder()
        self._failures = 0
        self._thread = threading.Thread(
            target=self._run, name="torch-visualization-watch", daemon=True
        )
        self._thread.start()

    def submit(self, packet):
        if not self._thread.is_alive():
            return
        self._queue.put(packet)

    def drain(self):
        """Blocks until every submitted packet is written (or failed)."""
        if self._thread.is_alive():
            self._queue.join()

    def close(self):
        """Drains the queue, then stops the thread."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is self._STOP:
                    return
                self._write(item)
            except Exception:  # noqa: BLE001 -- training must never see it
                self._report()
            finally:
                self._queue.task_done()

    def _report(self):
        self._failures += 1
        _report_first_failure(self._failures, "writing a logging step")

    def _write(self, packet):
        if packet.ready is not None:
            packet.ready.synchronize()
        file_writer = self._writer._get_file_writer()
        if file_writer is not self._file_writer:
            # A new event file (after close() torch opens another) needs the
            # metadata again.
            self._file_writer = file_writer
            self._seen_tags = set()
        array = packet.buffer.numpy()
        values = _step_values(packet, array)
        if not np.isfinite(array).all():
            _warn_nonfinite(packet.plan, packet.step, values)
        entries = []
        for tag, kind, data, extra in values:
            data = np.ascontiguousarray(data, dtype=np.float32 if kind == "heatmap" else np.float64)
            if tag in self._seen_tags:
                entries += self._encoder.summary_parts(tag, data)
            else:
                entries.append(_first_entry(tag, kind, data, extra))
        data = event_records.event_bytes(packet.walltime, packet.step, b"".join(entries))
        if not event_records.write_event_bytes(file_writer, data):
            file_writer.add_event(event_pb2.Event.FromString(data))
        # Only after a successful write: a failed first event must carry the
        # metadata again next time.
        self._seen_tags.update(tag for tag, _, _, _ in values)


# -- the training-thread side ------------------------------------------------


def _report_first_failure(failures, what):
    """Logs (with the current traceback) and warns for the first failure only.

    Called from an `except` block; failures of logging never reach training,
    but the user must hear of them once.
    """
    if failures == 1:
        logger.exception("torch_visualization watch: %s failed", what)
        warnings.warn(
            "torch_visualization watch: %s failed (traceback logged to %r); training "
            "goes on, later failures are not reported" % (what, logger.name),
            RuntimeWarning,
        )


def _unwrap(model):
    """The module that owns the parameters, inside compile/DDP/DataParallel wrappers."""
    inner = model
    for _ in range(8):
        original = getattr(inner, "_orig_mod", None)
        if isinstance(original, torch.nn.Module):
            inner = original
        elif isinstance(
            inner, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
        ):
            inner = inner.module
        else:
            break
    return inner


def _inactive_rank():
    """True on every rank but 0 of an initialised process group."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _grid_shape(shape, max_cells):
    """`(rows, cols, reduction)` of a heatmap of a tensor of `shape`, as
    `reduce.HeatmapPlan` and `distributed.heatmap_grids` lay it out."""
    if not len(shape):
        raise ValueError("heatmap plan: a 0-d tensor has no heatmap")
    rows = 1 if len(shape) == 1 else shape[0]
    cols = shape[0] if len(shape) == 1 else int(np.prod(shape[1:]))
    out = (min(rows, max_cells[0]), min(cols, max_cells[1]))
    return out + ("none" if out == (rows, cols) else "mean_pool",)


def _tensor_requiring_grad(output):
    """The first tensor in a (nested) model output that will get a gradient."""
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _tensor_requiring_grad(item)
            if found is not None:
                return found
    return None


def _to_host(flat):
    """Starts the one device-to-host copy; returns `(host tensor, event or None)`."""
    if flat.device.type == "cpu":
        return flat, None
    if flat.device.type == "cuda":
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(flat.device))
        return host, ready
    return flat.cpu(), None


class _StepState:
    """What the logging step in progress has measured so far (device tensors)."""

    __slots__ = ("activations", "class_sum", "class_samples", "gradients", "before")

    def __init__(self):
        self.activations = []  # (activation index, 0-d nonzero count, numel)
        self.class_sum = None
        self.class_samples = 0
        self.gradients = None
        self.before = None  # (norms of the weights, copies of the weights)


class Watch:
    """Handle of one watched model, returned by `SummaryWriter.watch`.

    `remove()` takes every hook away; the model and optimizer then behave
    exactly as before. The handle is also a context manager that removes the
    hooks on exit.
    """

    def __init__(self, writer, model, inner, optimizer, plan, log_every, active):
        self._writer = writer
        self._model = model
        self._inner = inner
        self._optimizer = optimizer
        self._plan = plan
        self._every = log_every
        self._active = active
        # Distributed roles (set by watch()): only rank 0 writes; with a
        # process group every rank sums the step's counts, and with sharded
        # parameters every rank joins the statistics' collectives too.
        self._writes = active
        self._sync = False
        self._sharded = False
        self._count = 0
        self._permanent = []
        self._armed = []
        self._params = []
        self._grad_params = []
        self._activation_modules = []
        self._device = None
        self._multi_device = False
        self._accelerated = False
        self._before_buffers = None
        self._segment_lengths = {}  # present gradients -> their numels on the device
        self._abs_buffer = None
        self._heatmaps = None
        self._heatmap_entries = []
        self._heatmap_scales = None
        self._worker = None
        self._state = _StepState()
        self._class_width = None
        self._class_off = False
        self._failures = 0

    # -- public ----------------------------------------------------------

    @property
    def active(self):
        """True while hooks are installed (False after `remove()`).

        Under `torch.distributed` every rank keeps its hooks (logging steps
        are collectives); only rank 0 writes.
        """
        return self._active

    @property
    def step(self):
        """Steps counted so far (optimizer steps, or training forwards)."""
        return self._count

    @property
    def log_every(self):
        """Steps between two logging steps."""
        return self._every

    def remove(self):
        """Removes every hook of this watch; calling it again does nothing.

        Pending logging steps already handed to the background thread are
        still written (`writer.flush()` waits for them).
        """
        for handle in self._permanent + self._armed:
            handle.remove()
        self._permanent.clear()
        self._armed.clear()
        self._active = False
        self._state = _StepState()
        with _watched_lock:
            for key in (self._model, self._inner):
                if _watched.get(key) is self:
                    del _watched[key]
        handles = getattr(self._writer, "_watch_handles", [])
        if self in handles:
            handles.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()

    def __repr__(self):
        return "<torch_visualization Watch of %s, log_every=%d, step=%d, %s>" % (
            type(self._inner).__name__,
            self._every,
            self._count,
            "active" if self._active else "inactive",
        )

    # -- hooks -----------------------------------------------------------

    def _start(self, named, grad_named, activations, worker):
        self._params = [param for _, param in named]
        self._grad_params = [param for _, param in grad_named]
        self._activation_modules = [module for _, module in activations]
        self._device = self._params[0].device
        self._multi_device = any(param.device != self._device for param in self._params)
        # Kernels for accelerators (fused launches, counts on the device) or
        # tuned for the CPU (BLAS dots, kept buffers, NaN/Inf read on the host).
        self._accelerated = self._device.type != "cpu" or _ACCELERATOR_PATH_ON_CPU
        if self._sharded:
            # distributed.heatmap_grids pools the shards at logging steps and
            # returns means (scale 1); planning touches no DTensor op here.
            shapes = [_grid_shape(param.shape, self._plan.max_cells) for param in self._params]
            scales = [1.0] * len(shapes)
            order = range(len(shapes))
        else:
            self._heatmaps = reduce.HeatmapPlan(
                self._params, self._plan.max_cells, batch=self._accelerated
            )
            shapes, scales = self._heatmaps.shapes, self._heatmaps.scales
            order = self._heatmaps.order
        # (tag, grid shape, what its first event's metadata needs), in the
        # order the grids lie in a packet.
        self._heatmap_entries = [
            (
                TAG_WEIGHTS + self._plan.param_names[index],
                shapes[index][:2],
                {"original_shape": tuple(self._params[index].shape), "reduction": shapes[index][2]},
            )
            for index in order
        ]
        self._heatmap_scales = np.concatenate([
            np.full(shapes[index][0] * shapes[index][1], scales[index], dtype=np.float32)
            for index in order
        ])
        self._worker = worker
        if self._optimizer is not None:
            self._permanent.append(self._optimizer.register_step_pre_hook(self._on_step_pre))
            self._permanent.append(self._optimizer.register_step_post_hook(self._on_step_post))
        else:
            self._permanent.append(self._model.register_forward_hook(self._on_forward_counted))
        self._arm()

    def _arm(self):
        """Adds the forward hooks that measure the coming logging step."""
        if self._armed or not self._active:
            return
        for index, module in enumerate(self._activation_modules):
            self._armed.append(module.register_forward_hook(self._activation_hook(index)))
        if self._optimizer is not None:
            self._armed.append(self._model.register_forward_hook(self._on_output))

    def _disarm(self):
        for handle in self._armed:
            handle.remove()
        self._armed.clear()

    def _activation_hook(self, index):
        def hook(module, inputs, output):
            if torch.compiler.is_compiling() or not module.training:
                return
            if isinstance(output, torch.Tensor) and output.numel():
                with torch.no_grad():
                    count = reduce.nonzero_count(output)
                self._state.activations.append((index, count, output.numel()))

        return hook

    def _on_output(self, module, inputs, output):
        if torch.compiler.is_compiling() or not module.training:
            return
        self._guarded(self._add_outputs, output)

    def _on_step_pre(self, optimizer, args, kwargs):
        if self._count % self._every:
            return
        self._guarded(self._before_step)

    def _on_step_post(self, optimizer, args, kwargs):
        step = self._count
        self._count += 1
        logs_next = self._count % self._every == 0
        if step % self._every == 0:
            if not logs_next:
                self._disarm()
            state, self._state = self._state, _StepState()
            self._guarded(self._finish, step, state)
        if logs_next:
            self._arm()

    def _on_forward_counted(self, module, inputs, output):
        # Without an optimizer: each training forward is a step.
        if torch.compiler.is_compiling() or not module.training:
            return
        step = self._count
        self._count += 1
        if step % self._every == 0:
            if self._count % self._every:
                self._disarm()
            self._guarded(self._add_outputs, output)
            state, self._state = self._state, _StepState()
            tensor = _tensor_requiring_grad(output) if torch.is_grad_enabled() else None
            if tensor is None:
                self._guarded(self._finish, step, state)
            else:
                self._finish_after_backward(tensor, step, state)
        if self._count % self._every == 0:
            self._arm()

    def _finish_after_backward(self, tensor, step, state):
        """Reads gradients once the backward pass through `tensor` has ended."""
        pending = [True]

        def at_end():
            self._guarded(self._collect_gradients, state)
            self._guarded(self._finish, step, state)

        def on_grad(grad):
            if pending and self._active:
                pending.clear()
                # Runs when the whole backward pass is done, every .grad set.
                torch.autograd.Variable._execution_engine.queue_callback(at_end)

        tensor.register_hook(on_grad)

    def _guarded(self, function, *args):
        """Runs `function`; an error is reported once and never reaches training."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001
            self._failures += 1
            _report_first_failure(self._failures, "a logging step")

    # -- device work of a logging step ----------------------------------

    def _add_outputs(self, output):
        if isinstance(output, collections.abc.Mapping):
            # Hugging Face models return a ModelOutput (a mapping) with logits.
            output = output.get("logits")
        if self._class_off or not isinstance(output, torch.Tensor):
            return
        names = self._plan.class_names
        if output.dim() != 2 or not output.is_floating_point() or output.shape[1] < 2:
            # Once a [batch, classes] output was seen, other outputs are
            # skipped, not fatal: under a DDP strategy Lightning calls
            # training_step through the module's __call__ (hooks see the loss).
            if names and self._class_width is None:
                self._disable_classes("the model output has shape %s, not [batch, classes]"
                                      % list(output.shape))
            return
        width = output.shape[1]
        if names and width != len(names):
            self._disable_classes("the model output has %d classes but %d class_names were given"
                                  % (width, len(names)))
            return
        if self._class_width is None:
            self._class_width = width
        elif width != self._class_width:
            return
        with torch.no_grad():
            sums = torch.softmax(output, 1, dtype=torch.float32).sum(0)
        state = self._state
        state.class_sum = sums if state.class_sum is None else state.class_sum.add_(sums)
        state.class_samples += output.shape[0]

    def _disable_classes(self, why):
        self._class_off = True
        warnings.warn("torch_visualization watch: %r is not logged: %s" % (TAG_CLASSES, why),
                      RuntimeWarning, stacklevel=4)

    def _before_step(self):
        state = self._state
        if self._plan.updates and self._measures_parameters():
            with torch.no_grad():
                state.before = self._copy_weights()

    def _measures_parameters(self):
        """Whether this rank takes gradient, update and weight statistics.

        DDP: rank 0's gradients and weights already are the global ones, so
        the other ranks skip them; FSDP: every rank holds shards and joins.
        """
        return self._writes or self._sharded

    def _copy_weights(self):
        """The weights before the step: into kept buffers on the CPU (a fresh
        multi-MB allocation page-faults on every logging step), into fresh
        tensors elsewhere (the caching allocator reuses them)."""
        if self._sharded:
            # DTensors stay DTensors: the update norms combine across shards.
            return [param.detach().clone() for param in self._grad_params]
        if self._accelerated:
            # Fresh blocks from the caching allocator (free again between
            # logging steps) filled by fused copies: one call where PyTorch
            # has _foreach_clone (2.13 does, 2.11 does not), else
            # empty_like + _foreach_copy_.
            if _foreach_clone is not None:
                return _foreach_clone(self._grad_params)
            copies = [torch.empty_like(param) for param in self._grad_params]
            torch._foreach_copy_(copies, self._grad_params)
            return copies
        if self._before_buffers is None:
            self._before_buffers = [torch.empty_like(param) for param in self._grad_params]
        torch._foreach_copy_(self._before_buffers, self._grad_params)
        return self._before_buffers

    def _collect_gradients(self, state):
        """Gradient statistics as device scalars (nothing leaves the device).

        COLLECTIVE under FSDP (sharded gradients); skipped on DDP ranks != 0.
        """
        if not self._measures_parameters():
            return
        present, grads = [], []
        for index, param in enumerate(self._grad_params):
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                grad = grad.coalesce().values()
            if grad.numel() == 0:
                continue
            present.append(index)
            grads.append(grad)  # read under no_grad: nothing is recorded
        if self._sharded:
            # Whole-tensor statistics from the shards (the same gradients on
            # every rank, in the same order); NaN/Inf counted on the device.
            if grads:
                squares, sums, maxes, counts = distributed.gradient_stats(grads)
                pieces = [reduce.stack_scalars(squares + sums + maxes)]
                state.gradients = (present, pieces, counts, None)
            else:
                state.gradients = (present, [], None, {})
            return
        # `pieces`: 1-D float32 tensors on self._device, [squares|sums|maxes].
        pieces, counts, nonfinite_host = [], None, None
        with torch.no_grad():
            devices = {grad.device for grad in grads}
            if devices == {torch.device("cpu")} and not self._accelerated:
                stats = reduce.gradient_stat_vector(grads, self._scratch(grads), foreach=False)
                pieces.append(stats)
                # CPU results are already there (no sync to read them), so
                # only gradients whose max |g| is not finite get counted.
                nonfinite_host = {}
                maxes = stats[2 * len(grads):].numpy()
                for position in np.flatnonzero(~np.isfinite(maxes)):
                    nonfinite_host[int(position)] = int(
                        torch.isfinite(grads[position]).logical_not_().sum()
                    )
            elif len(devices) == 1:
                pieces.append(_on(reduce.gradient_stat_vector(grads, foreach=True), self._device))
                key = tuple(present)
                if key not in self._segment_lengths:
                    self._segment_lengths = {key: reduce.segment_lengths(grads)}
                counts = reduce.nonfinite_counts(grads, self._segment_lengths[key])
            elif devices:
                squares, sums, maxes = reduce.gradient_stats(grads)
                pieces.append(self._vector(squares + sums + maxes))
                counts = torch.stack([
                    torch.isfinite(grad).logical_not_().sum().to(self._device) for grad in grads
                ]).float()
            else:
                nonfinite_host = {}
        state.gradients = (present, pieces, counts, nonfinite_host)

    def _scratch(self, grads):
        """A kept CPU buffer as large as the largest gradient (or None)."""
        if not grads or grads[0].device.type != "cpu":
            return None
        size = max(grad.numel() for grad in grads)
        if self._abs_buffer is None or self._abs_buffer.numel() < size:
            self._abs_buffer = torch.empty(size, dtype=torch.float32)
        return self._abs_buffer

    def _finish(self, step, state):
        """Ends a logging step: device work here, the rest on the worker."""
        if not self._active:
            return
        if self._optimizer is not None:
            # Read after the step, not before: a closure (LBFGS, Lightning)
            # runs backward inside optimizer.step(); GradScaler has unscaled
            # them before the step; PyTorch's optimizers leave .grad as is.
            self._collect_gradients(state)
        if self._sync:
            self._sum_across_ranks(state)  # COLLECTIVE
            if not self._measures_parameters():
                return  # DDP ranks != 0: their share is done
        packet = self._reduce(step, time.time(), state)
        if packet is not None:
            self._worker.submit(packet)

    def _sum_across_ranks(self, state):
        """This rank's output and activation counts -> the global batch's.

        ONE all_reduce on every rank (COLLECTIVE); the results stay on the
        device. Afterwards `class_sum` holds the global mean softmax
        (`class_samples` 1) and each activation module has one entry whose
        count is its global nonzero fraction (numel 1), so the packet layout
        and the worker's arithmetic stay as they are.
        """
        modules = len(self._plan.activation_names)
        class_sum = None
        # Every rank decides this the same way (same model, same outputs).
        if self._class_width and not self._class_off:
            class_sum = state.class_sum
            if class_sum is None:
                class_sum = torch.zeros(self._class_width, device=self._device)
        else:
            state.class_samples = 0  # never log one rank's share alone
        if class_sum is None and not modules:
            return
        class_mean, nonzero = distributed.sum_step_counts(
            class_sum, state.class_samples, state.activations, modules, device=self._device
        )
        if class_mean is not None:
            state.class_sum, state.class_samples = class_mean, 1
        state.activations = [(index, nonzero[index], 1) for index in range(modules)]

    def _vector(self, values):
        """0-d tensors (any of the model's devices) -> 1-D float32 on ours."""
        if self._multi_device:
            values = [_on(value, self._device) for value in values]
        return reduce.stack_scalars(values)

    def _reduce(self, step, walltime, state):
        """The rest of the device work of one logging step; returns the packet
        (None on FSDP ranks != 0, once their collectives are done).

        On accelerators the kernels are only queued here and the one copy to
        the host is non-blocking; on the CPU this is where the time goes.
        """
        device = self._device
        # 1-D float32 pieces in packet order (see _Packet).
        pieces = []
        present = counts = nonfinite_host = None
        with torch.no_grad():
            if state.gradients is not None:
                present, gradient_pieces, counts, nonfinite_host = state.gradients
                pieces += gradient_pieces
            updates = state.before is not None
            if updates:
                before = state.before
                if self._sharded:
                    # Weights before the step and the update, whole-tensor
                    # norms from the shards in one all_reduce (COLLECTIVE).
                    deltas = [old - new for old, new in zip(before, self._grad_params)]
                    pieces.append(reduce.stack_scalars(distributed.squared_l2_norms(before + deltas)))
                elif self._multi_device:
                    pieces.append(self._vector(reduce.squared_l2_norms(before)))
                    torch._foreach_sub_(before, self._grad_params)
                    pieces.append(self._vector(reduce.squared_l2_norms(before)))
                else:
                    foreach = self._accelerated
                    pieces.append(reduce.squared_l2_norm_vector(before, foreach))
                    torch._foreach_sub_(before, self._grad_params)
                    pieces.append(reduce.squared_l2_norm_vector(before, foreach))
            activation_counts = [count for _, count, _ in state.activations]
            if activation_counts:
                # int64 counts (float32 ones under DDP), stacked apart from the
                # float32 statistics: see reduce.stack_scalars.
                pieces.append(self._vector(activation_counts))
            if self._sharded:
                # Means pooled shard by shard; only the grids are all-reduced
                # (COLLECTIVE). Their entries carry scale 1 (see _start).
                grids = [grid.reshape(-1) for grid, _ in distributed.heatmap_grids(
                    zip(self._plan.param_names, self._params), self._plan.max_cells
                )]
                if not self._writes:
                    return None  # FSDP ranks != 0: no host copy, no worker
            else:
                # Block sums, one piece per group of same-shaped parameters in
                # the plan's order; the worker scales them to means.
                grids = self._heatmaps.flat_grids(self._params)
            if counts is not None:
                pieces.append(counts)
            if state.class_samples:
                pieces.append(state.class_sum)
            pieces += grids
            if self._multi_device:
                pieces = [_on(piece, device) for piece in pieces]
            flat = torch.cat(pieces)
        host, ready = _to_host(flat)
        return _Packet(
            plan=self._plan,
            step=step,
            walltime=walltime,
            buffer=host,
            ready=ready,
            grad_present=present,
            nonfinite_host=nonfinite_host,
            updates=updates,
            activation_entries=[(index, numel) for index, _, numel in state.activations],
            class_samples=state.class_samples,
            class_width=self._class_width or 0,
            heatmaps=self._heatmap_entries,
            heatmap_scales=self._heatmap_scales,
        )


def _on(tensor, device):
    return tensor if tensor.device == device else tensor.to(device)


# -- starting a watch ----------------------------------------------------------


def _check_arguments(model, optimizer, log_every, class_names):
    if not isinstance(model, torch.nn.Module):
        raise TypeError("watch: model must be a torch.nn.Module, got %s" % type(model).__name__)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "watch: optimizer must be a torch.optim.Optimizer or None, got %s"
            % type(optimizer).__name__
        )
    if isinstance(log_every, bool) or not isinstance(log_every, int):
        raise TypeError("watch: log_every must be an int, got %r" % (log_every,))
    if log_every < 1:
        raise ValueError("watch: log_every must be >= 1, got %d" % log_every)
    if class_names is None:
        return []
    if isinstance(class_names, str):
        raise TypeError("watch: class_names must be a sequence of strings, not one string")
    names = list(class_names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError("watch: class_names must be strings, got %s" % type(name).__name__)
    if len(names) < 2:
        raise ValueError("watch: class_names needs at least 2 names, got %d" % len(names))
    return names


def _freeze_tags(writer, plan):
    """Claims every tag with its labels now, so a clash fails at watch() time."""
    for name in plan.param_names:
        writer._freeze(TAG_WEIGHTS + name, "heatmap")
    if plan.grad_names:
        for tag in plan.bar_tags():
            writer._freeze(tag, "bars", plan.grad_names)
    if plan.activation_names:
        writer._freeze(TAG_ZERO_FRACTION, "bars", plan.activation_names)
    writer._freeze(TAG_CLASSES, "pie", plan.class_names)


def watch(
    writer,
    model,
    optimizer=None,
    *,
    log_every=100,
    class_names=None,
    max_cells=reduce.DEFAULT_MAX_CELLS,
):
    """Starts logging `model` through `writer` (what `SummaryWriter.watch` calls).

    Args:
      writer: A `torch_visualization.SummaryWriter` (or None on distributed
        ranks != 0, which write nothing).
      model: The `torch.nn.Module` to watch.
      optimizer: Optional `torch.optim.Optimizer` whose steps are counted.
      log_every: Log on steps 0, log_every, 2*log_every, ...
      class_names: Optional names for the `outputs/classes` pie.
      max_cells: Largest weight heatmap, an int or `(rows, cols)`.

    Under `torch.distributed` call it on every rank (with the same model and
    arguments): each logging step is a collective that every rank must reach
    (see the module docstring). Ranks other than 0 measure and join the
    collectives but write nothing; they may pass `writer=None`.

    Returns:
      A `Watch` handle.

    Raises:
      TypeError, ValueError: bad arguments, a model already watched, a
        writer already watching, or a tag already used with other labels.
    """
    names = _check_arguments(model, optimizer, log_every, class_names)
    max_cells = reduce.parse_max_cells(max_cells)
    inner = _unwrap(model)
    named = [(name, param) for name, param in inner.named_parameters() if param.numel()]
    if not named:
        raise ValueError("watch: %s has no parameters to watch" % type(inner).__name__)
    grad_named = [(name, param) for name, param in named if param.requires_grad]
    if optimizer is not None:
        owned = {id(param) for group in optimizer.param_groups for param in group["params"]}
        if not any(id(param) in owned for _, param in named):
            raise ValueError("watch: the optimizer holds none of the model's parameters")
    activations = [
        (name or type(module).__name__, module)
        for name, module in inner.named_modules()
        if isinstance(module, ACTIVATION_TYPES)
    ]
    plan = _Plan(
        param_names=[name for name, _ in named],
        grad_names=[name for name, _ in grad_named],
        grad_numels=np.array([param.numel() for _, param in grad_named], dtype=np.float64),
        activation_names=[name for name, _ in activations],
        class_names=names,
        updates=optimizer is not None and bool(grad_named),
        max_cells=max_cells,
    )
    with _watched_lock:
        for key in (model, inner):
            if key in _watched:
                raise ValueError(
                    "watch: this %s is already watched; call remove() on its handle first"
                    % type(inner).__name__
                )
        if any(handle.active for handle in getattr(writer, "_watch_handles", [])):
            raise ValueError(
                "watch: this writer already watches a model and the tags would clash; "
                "use one SummaryWriter (log_dir) per watched model"
            )
        writes = not _inactive_rank()
        if writes and writer is None:
            raise TypeError("watch: writer is None (only distributed ranks != 0 may pass None)")
        # Under DDP/FSDP every rank keeps its hooks: logging steps end in
        # collectives that every rank must reach. Only rank 0 owns the tags,
        # the worker and the files.
        sync = distributed.is_distributed()
        handle = Watch(writer, model, inner, optimizer, plan, log_every, writes or sync)
        handle._writes = writes
        handle._sync = sync
        handle._sharded = sync and distributed.needs_collectives([param for _, param in named])
        if writes:
            _freeze_tags(writer, plan)
            worker = getattr(writer, "_watch_worker", None)
            if worker is None:
                worker = writer._watch_worker = _Worker(writer)
            handle._start(named, grad_named, activations, worker)
            writer._watch_handles.append(handle)
        elif sync:
            handle._start(named, grad_named, activations, None)
            if writer is not None:
                # So that writer.close() removes the hooks here too.
                writer._watch_handles.append(handle)
        _watched[model] = handle
        _watched[inner] = handle
    return handle
