"""The parameter side of a CPU logging step, planned once: one kernel call.

The CPU counterpart of `replay.ParameterReplay`, for the same common case
(one watched optimizer stepping every trainable parameter, not sharded) when
the parameters are contiguous float32 CPU tensors and the one-pass kernels
(fused.py) are built:

- before the optimizer step, one call keeps the weights in buffers of its
  own and, where the gradients are final then (no closure runs backward
  inside `step()`), reads each gradient in the same call, while backward
  has just left it in cache (after the step it had to come back from
  memory: MLP logging every 10 steps, ~1.04x -> ~1.03x of training for
  the pass alone);
- after it, one call reads each weight and kept copy once (and the
  gradients, where they were not read before) and writes the gradient
  statistics, NaN/Inf counts, update norms and every weight's heatmap grid
  straight into their slots of one fresh vector laid out as
  `replay.SEGMENTS`, which the packet takes whole
  (`PacketBuilder.add_block`).

Everything that does not change between logging steps is worked out once:
the numpy views of the parameters and copies (again when a parameter's
storage moved), the grids' places in the vector, the call's arguments. What
is left per logging step is a view of each gradient (a fresh tensor each
step) and the one call, so the Python work grows with the parameter count
only by that.

`run` returns None when this step's tensors do not suit the kernels (a
missing, sparse, non-float32 or non-contiguous gradient, parameters that
became non-float32): the caller then measures the step on StepReducer's
general path, with the copies this pass kept.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_visualization import fused
from torch_visualization.watch import replay as replays


def applies(grad_params, heat_params):
    """Whether the pass can serve these parameters (the kernels are built,
    every parameter is a non-empty contiguous float32 CPU tensor)."""
    return fused.available() and all(fused.readable(param) for param in list(grad_params) + list(heat_params))


class CpuParameterPass:
    """Runs the parameter side of each logging step in one kernel call
    (training thread).

    Args:
      grad_params: The trainable parameters, all stepped by the one watched
        optimizer.
      heat_params: Every watched parameter (heatmaps).
      heatmaps: Their `pooling.HeatmapPlan`, planned with `batch=False`
        (every grid pooled alone).
    """

    def __init__(self, grad_params, heat_params, heatmaps):
        self._grad_params = grad_params
        self._heat_params = heat_params
        count = len(grad_params)
        # The grids' places in the vector, in the heatmap plan's order.
        cells_at, offset = {}, 6 * count
        for index in heatmaps.order:
            out_rows, out_cols = heatmaps.shapes[index][:2]
            cells_at[index] = offset
            offset += out_rows * out_cols
        self._size = offset
        # The segments of a replayed vector (decode.py reads them by name).
        self._layout = dict(zip(replays.SEGMENTS, [
            (0, 3 * count), (3 * count, count), (4 * count, 2 * count), (6 * count, offset - 6 * count),
        ]))
        position_of = {id(param): index for index, param in enumerate(heat_params)}
        stepped = set()
        self._grids = []  # per trainable parameter: (offset, rows, out_rows, out_cols) or None
        for param in grad_params:
            index = position_of.get(id(param))
            if index is None:
                self._grids.append(None)
                continue
            stepped.add(index)
            self._grids.append((cells_at[index],) + heatmaps.pool_spec(index))
        # Watched parameters no optimizer steps (a frozen backbone): pooled only.
        self._pooled_only = [index for index in range(len(heat_params)) if index not in stepped]
        self._pool_specs = [(cells_at[index],) + heatmaps.pool_spec(index) for index in self._pooled_only]
        self.before = [torch.empty_like(param) for param in grad_params]
        # Every parameter the views show, each once (the copies are ours:
        # replacing them drops the views, see copy_weights).
        trainable = {id(param) for param in grad_params}
        self._viewed = list(grad_params) + [param for param in heat_params if id(param) not in trainable]
        self._pointers = None  # the storages the cached views show
        self._arguments = None  # (before views, weight views, grids, pools)
        self._early = None  # (vector, gradients, their views) read before this step
        self.runs = 0  # logging steps this pass served

    def copy_weights(self, grads=None):
        """Keeps the weights the optimizer is about to step (one call).

        `grads`: the gradients as they are when the step begins, where
        they are final (None where a closure runs backward inside the
        step): read in the same call (the first half of the split pass,
        see the module doc); `run` then reads only the weights.

        One kernel call over the kept numpy views, its chunks on PyTorch's
        threads (fused.copy_arrays; the MLP's 2.3 MB: ~195 -> ~145 µs
        logging every 10 steps, where `_foreach_copy_`'s per-tensor calls
        are cold, ~120 -> ~90 µs at every step); PyTorch's copy where the
        views are not planned (a parameter moved or re-typed) or a size
        changed."""
        self._early = None
        arguments = self._planned()
        if arguments is not None:
            try:
                if grads is None or not self._read_early(grads, arguments):
                    fused.copy_arrays(arguments[1], arguments[0])
                return self.before
            except ValueError:  # a parameter resized in place: new buffers below
                pass
        with torch.no_grad():
            if any(copy.shape != param.shape or copy.dtype != param.dtype
                   for copy, param in zip(self.before, self._grad_params)):
                self.before = [torch.empty_like(param) for param in self._grad_params]
                self._pointers = None  # views of the new copies next time
            torch._foreach_copy_(self.before, self._grad_params)
        return self.before

    def run(self, grads):
        """`(vector, {segment: (offset, size)})` of this logging step (a
        float32 numpy vector), after
        `copy_weights` and the optimizer step, or None where the kernels do
        not take this step's tensors. `grads`: the `.grad` of each trainable
        parameter, in order."""
        early, self._early = self._early, None
        arguments = self._planned()
        if arguments is None:
            return None
        before_views, weight_views, grids, pools = arguments
        if early is not None and len(early[1]) == len(grads) \
                and all(now is then for now, then in zip(grads, early[1])):
            # The gradients were read before the step (the same tensors).
            vector, _, grad_views = early
            stage = fused.AFTER_STEP
        else:
            grad_views = _views(grads)
            if grad_views is None:
                return None
            vector, stage = np.empty(self._size, dtype=np.float32), fused.WHOLE
        try:
            fused.parameter_statistics(grad_views, before_views, weight_views, vector, grids, pools, stage)
        except fused.Unreadable:  # a float16 or non-contiguous gradient
            return None
        self.runs += 1
        return vector, self._layout  # numpy: the CPU packet is built with numpy

    def _read_early(self, grads, arguments):
        """The gradient statistics and the copy of the weights in one call
        (before the step); False where the kernels do not read these
        gradients (nothing was copied then)."""
        grad_views = _views(grads)
        if grad_views is None:
            return False
        vector = np.empty(self._size, dtype=np.float32)
        before_views, weight_views, grids, pools = arguments
        try:
            fused.parameter_statistics(grad_views, before_views, weight_views, vector, grids, pools,
                                       fused.BEFORE_STEP)
        except fused.Unreadable:
            return False
        self._early = (vector, list(grads), grad_views)
        return True

    def _planned(self):
        """The call's arguments, made again whenever a parameter's storage
        moved (`param.data = ...`, `model.to(...)`); None where the kernels
        do not read the parameters any more."""
        if not fused.available():  # switched off since (fused.ENABLED)
            return None
        pointers = [param.data_ptr() for param in self._viewed]
        if pointers == self._pointers:
            return self._arguments
        self._pointers = pointers
        self._arguments = None
        if applies(list(self._grad_params) + list(self.before), self._heat_params):
            weights = [param.detach().numpy() for param in self._grad_params]
            pools = [(self._heat_params[index].detach().numpy(),) + spec
                     for index, spec in zip(self._pooled_only, self._pool_specs)]
            self._arguments = ([copy.numpy() for copy in self.before], weights, self._grids, pools)
        return self._arguments


def _views(grads):
    """Numpy views of the gradients, or None where one is missing (an
    unused parameter), sparse, of another dtype or requires grad
    (create_graph=True): the general path reads those."""
    try:
        return [grad.numpy() for grad in grads]
    except (AttributeError, TypeError, RuntimeError):
        return None
