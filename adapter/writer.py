"""`SummaryWriter`: PyTorch's writer plus our chart kinds and `watch()`.

The stock API (`add_scalar`, ...) is torch's own and writes torch's event
file; our charts go through the event sink (sink.py) into our own event file
in the same run directory.
"""

from __future__ import annotations

import collections.abc
import numbers

import numpy as np
import torch
from torch.utils import tensorboard as _torch_tensorboard

from torch_visualization import pooling, reduce, sink, summary


def _to_numpy(tag, values):
    """Converts tensors, arrays, lists and scalars to a numpy array.

    Torch tensors are detached and copied to the host in one transfer; callers
    reduce big tensors on the device first.
    """
    if isinstance(values, torch.Tensor):
        reduce.check_tensor_dtype(tag, values)
        values = values.detach()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()
        return values.cpu().numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise TypeError("%r: values are not numeric: %s" % (tag, e)) from None
    summary.check_numeric_dtype(tag, array.dtype)
    return array


class SummaryWriter(_torch_tensorboard.SummaryWriter):
    """`torch.utils.tensorboard.SummaryWriter` with model-insight charts.

    The stock API (`add_scalar`, `add_histogram`, ...) is torch's own,
    unchanged, writing torch's event file. Our charts and `watch()` go
    through an `EventSink` (sink.py) into our own event file in the same run
    directory: written on a background thread, guarded (a failed write never
    reaches training; `close()` reports what was lost), each tag's metadata
    once per file.

    Labels (class names, layer names) are stored once per tag, in the metadata
    of its first event, because that is the only metadata TensorBoard keeps.
    This writer therefore freezes them: a later call on the same tag with a
    different chart kind or different labels raises `ValueError`.

    Args:
      log_dir: Save directory (default `runs/CURRENT_DATETIME_HOSTNAME`).
      comment: Suffix of the default `log_dir` (ignored with `log_dir`).
      purge_step: As in torch: steps >= purge_step of a crashed run are
        hidden by TensorBoard.
      max_queue: Pending stock events before torch flushes.
      flush_secs: Longest time between a write and its flush to disk (both
        event files).
      filename_suffix: Appended to both event files' names.
    """

    def __init__(
        self,
        log_dir=None,
        comment="",
        purge_step=None,
        max_queue=10,
        flush_secs=120,
        filename_suffix="",
    ):
        try:
            super().__init__(
                log_dir=log_dir,
                comment=comment,
                purge_step=purge_step,
                max_queue=max_queue,
                flush_secs=flush_secs,
                filename_suffix=filename_suffix,
            )
        except OSError as e:
            # The bare OSError can mislead ("File exists" for a log_dir that is
            # a file, "No such file" for an unwritable /proc path): say what
            # was being done, keep the type and errno for callers.
            hint = " (a file of that name exists)" if isinstance(e, FileExistsError) else ""
            raise type(e)(
                e.errno,
                "SummaryWriter cannot create its event file in log_dir %r: %s%s"
                % (log_dir, e.strerror or e, hint),
                e.filename,
            ) from e
        self._sink = sink.EventSink(
            self.get_logdir(), filename_suffix=filename_suffix, flush_secs=flush_secs
        )
        self._watch_handles = []

    def _write(self, tag, kind, proto, global_step, walltime, labels=(), stat_names=()):
        """Freezes the tag's labels, then queues the value for our file."""
        self._sink.freeze(tag, kind, labels, stat_names)
        self._sink.add_summary(proto, global_step, walltime)

    # -- watch(): hooks over a whole model -----------------------------------

    def watch(
        self,
        model,
        optimizer=None,
        *,
        log_every=100,
        class_names=None,
        outputs=None,
        modules=None,
        attention=True,
        tokens=None,
        max_cells=pooling.DEFAULT_MAX_CELLS,
        start_step=0,
    ):
        """Logs weights, gradients, updates, activations and outputs of `model`.

        Hooks do the work: a step that does not log costs one integer check,
        a logging step runs fused reductions on the device, one
        device-to-host copy, and leaves proto building and file writes to a
        background thread (see `torch_visualization.watch` for the details,
        the tags and what is measured when).

        Args:
          model: The `torch.nn.Module` to watch (a `torch.compile`d,
            DistributedDataParallel or DataParallel wrapper is unwrapped for
            names).
          optimizer: Optional `torch.optim.Optimizer` stepping the model, or
            a list of them. With it, the first optimizer's steps are counted
            (right under gradient accumulation and `GradScaler`) and
            `updates/ratio` is logged for the parameters they step; without
            it, training-mode forward passes are counted.
          log_every: Log on steps divisible by log_every.
          class_names: Optional names of the classes of a `[batch, classes]`
            model output, for the `outputs/classes` pie.
          outputs: "classes" logs that pie without class names (the output
            holds class scores, also `[batch, seq, classes]` LM logits);
            "none" never logs it.
          modules: More module names whose outputs' rms and max |x| are
            logged (blocks of ModuleList/Sequential stacks always are).
          attention: Capture the attention maps of attention modules
            (`nn.MultiheadAttention`, scaled_dot_product_attention calls in
            modules named "...Attention") and their entropy; False: none.
          tokens: Token labels for the attention card: a tokenizer (Hugging
            Face's), a function `ids (list of int) -> list of str`, or a
            vocabulary (a sequence of strings indexed by id). The input ids
            of each logging step's first example (`input_ids=`, else the
            model's first integer tensor argument) are written as text under
            `attention/tokens`, one string per position.
          max_cells: Largest weight heatmap, an int or `(rows, cols)`.
          start_step: Number of the first step (a resumed run's global step,
            so that the tab's steps line up with its scalars).

        Returns:
          A `torch_visualization.watch.Watch` handle; `handle.remove()` takes
          every hook away.

        Raises:
          TypeError, ValueError: bad arguments; the model (or this writer) is
            already watched; a tag was already used with other labels.
        """
        from torch_visualization import watch as watch_module

        return watch_module.watch(
            self,
            model,
            optimizer,
            log_every=log_every,
            class_names=class_names,
            outputs=outputs,
            modules=modules,
            attention=attention,
            tokens=tokens,
            max_cells=max_cells,
            start_step=start_step,
        )

    def flush(self):
        """Writes pending charts and watch() steps, then flushes both event files."""
        self._sink.flush()
        super().flush()

    def close(self):
        """Removes watch() hooks, writes pending steps, closes both event files.

        Writing again afterwards opens new event files, as torch's writer does.
        """
        for handle in list(self._watch_handles):
            handle.remove()
        self._sink.close()
        super().close()

    # -- the four chart kinds ----------------------------------------------

    def add_weight_heatmap(
        self,
        tag,
        tensor,
        global_step=None,
        walltime=None,
        *,
        max_cells=pooling.DEFAULT_MAX_CELLS,
    ):
        """Logs a heatmap of a weight (or any rank >= 1 tensor).

        1-D tensors are one row, conv weights `[out, in, kh, kw]` are shown as
        `out x (in*kh*kw)`. Anything larger than `max_cells` is mean-pooled on
        the tensor's own device; the original shape is recorded.

        Args:
          tag: Tag of the chart.
          tensor: A torch tensor (or array-like) of real numbers, rank >= 1.
          global_step: Step to record.
          walltime: Optional override of the event time (seconds).
          max_cells: Largest grid stored, an int or `(rows, cols)`; 64x64 by
            default.
        """
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(_to_numpy(tag, tensor))
        grid, reduction = pooling.heatmap_grid(tag, tensor, max_cells)
        proto = summary.heatmap_summary(
            tag,
            grid.cpu().numpy(),
            original_shape=tuple(tensor.shape),
            reduction=reduction,
        )
        self._write(tag, "heatmap", proto, global_step, walltime)

    def add_class_pie(
        self, tag, values, global_step=None, walltime=None, *, class_names=None
    ):
        """Logs a pie of per-class shares.

        Args:
          tag: Tag of the chart.
          values: `[classes]` non-negative counts or probabilities, or
            `[batch, classes]` probabilities, averaged over the batch.
          global_step: Step to record.
          walltime: Optional override of the event time (seconds).
          class_names: Optional list of class names, fixed per tag.
        """
        if isinstance(values, torch.Tensor) and values.dim() == 2:
            reduce.check_tensor_dtype(tag, values)
            values = values.detach().float().mean(dim=0)
        array = _to_numpy(tag, values)
        if array.ndim == 2:
            array = array.astype(np.float64).mean(axis=0)
        proto = summary.pie_summary(tag, array, class_names=class_names)
        self._write(tag, "pie", proto, global_step, walltime, () if class_names is None else class_names)

    def add_gradient_bars(
        self, tag, source, global_step=None, walltime=None, *, stat="norm"
    ):
        """Logs one bar per layer.

        Args:
          tag: Tag of the chart.
          source: A `torch.nn.Module` (one bar per parameter that requires
            gradients, labelled by its name, valued by a statistic of its
            gradient computed on the device; a missing gradient counts as
            zero), or a mapping `{layer name: value}` plotted as given.
          global_step: Step to record.
          walltime: Optional override of the event time (seconds).
          stat: For a module: "norm" (L2, the default), "mean_abs" or
            "max_abs".
        """
        if isinstance(source, torch.nn.Module):
            names, values = reduce.parameter_gradient_stats(
                source.named_parameters(), stat
            )
            array = values.cpu().numpy()
        elif isinstance(source, collections.abc.Mapping):
            if not source:
                raise ValueError("%r: the mapping of bar values is empty" % tag)
            names = [str(name) for name in source]
            array = np.array(
                [self._bar_value(tag, name, value) for name, value in source.items()],
                dtype=np.float64,
            )
        else:
            raise TypeError(
                "%r: expected a torch.nn.Module or a mapping {layer: value}, got %s"
                % (tag, type(source).__name__)
            )
        proto = summary.bars_summary(tag, array, labels=names)
        self._write(tag, "bars", proto, global_step, walltime, names)

    @staticmethod
    def _bar_value(tag, name, value):
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    "%r: value of %r must be a single number, got shape %s"
                    % (tag, name, list(value.shape))
                )
            reduce.check_tensor_dtype(tag, value)
            return float(value.item())
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, np.generic) and value.dtype.kind in "iuf":
            return float(value)
        raise TypeError(
            "%r: value of %r must be a real number, got %s"
            % (tag, name, type(value).__name__)
        )

    def add_scatter(
        self,
        tag,
        points,
        global_step=None,
        walltime=None,
        *,
        labels=None,
        class_names=None,
    ):
        """Logs a 2-D scatter plot.

        Args:
          tag: Tag of the chart.
          points: `[N, 2]` coordinates (e.g. a PCA of features).
          global_step: Step to record.
          walltime: Optional override of the event time (seconds).
          labels: Optional `[N]` integer class index per point.
          class_names: Optional class names (fixed per tag); with them, each
            label must be in `[0, len(class_names))`.
        """
        array = _to_numpy(tag, points)
        classes = None if labels is None else _to_numpy(tag, labels)
        proto = summary.scatter_summary(
            tag, array, classes=classes, class_names=class_names
        )
        self._write(tag, "scatter", proto, global_step, walltime,
                    () if class_names is None else class_names)

    def add_confusion_matrix(
        self,
        tag,
        predictions,
        targets,
        global_step=None,
        walltime=None,
        *,
        class_names=None,
        num_classes=None,
    ):
        """Logs a confusion matrix computed on the tensors' device.

        Args:
          tag: Tag of the chart.
          predictions: `[N]` integer class indices, or `[N, classes]` logits
            or probabilities (arg-max taken).
          targets: `[N]` integer true classes.
          global_step: Step to record.
          walltime: Optional override of the event time (seconds).
          class_names: Optional class names (fixed per tag); they also give
            the number of classes.
          num_classes: Number of classes when neither logits nor names say.
        """
        if class_names is not None:
            class_names = list(class_names)
            if num_classes is None:
                num_classes = len(class_names)
        if not isinstance(predictions, torch.Tensor):
            predictions = torch.as_tensor(_to_numpy(tag, predictions))
        if not isinstance(targets, torch.Tensor):
            targets = torch.as_tensor(_to_numpy(tag, targets))
        counts = reduce.confusion_counts(tag, predictions.detach(), targets.detach(), num_classes)
        proto = summary.confusion_summary(tag, counts.cpu().numpy(), class_names=class_names)
        self._write(tag, "confusion", proto, global_step, walltime,
                    () if class_names is None else class_names)
