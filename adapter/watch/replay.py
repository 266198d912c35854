"""The parameter side of a logging step, planned once and replayed.

In the common case — one watched optimizer stepping every trainable
parameter, all of them on one accelerator, dense gradients — a logging step's
parameter reductions (gradient statistics, NaN/Inf counts, update norms,
heatmap pooling) are one fixed function of fixed tensors, `reductions()`.
`ParameterReplay` runs it with a host-side cost that does not grow with the
number of parameters:

- before the optimizer step, one `_foreach_copy_` keeps the weights in
  buffers of its own;
- after it, on CUDA, one `_foreach_copy_` brings the gradients into buffers
  of its own and one CUDA graph replay runs every reduction into one output
  vector. The graph is captured at the second logging step (the first runs
  the same function eagerly, which also warms up what the kernels need) and
  captured again whenever a parameter's storage moved.

Elsewhere (the CPU test seam of the accelerator path, a failed capture, not
enough free device memory for the gradient buffers) the same function runs
eagerly on the live tensors. Cases outside the common one never get here:
StepReducer's eager path handles them (several optimizers, sharded or
sparse gradients, parameters on several devices).
"""

from __future__ import annotations

import logging

import torch

from torch_visualization import reduce

logger = logging.getLogger(__name__)

# The graph path keeps memory between logging steps (the weights before the
# step, a copy of every gradient, the graph's own temporaries): only while
# that takes at most this share of the device's free memory.
MAX_FREE_MEMORY_SHARE = 0.25
# Bytes per gradient element the graph's NaN/Inf count keeps (the gradients
# laid end to end as float32, their marks as bool and as float32).
_COUNT_BYTES_PER_ELEMENT = 9

# Segments of the output vector, in order (packet.py names them).
SEGMENTS = ("grads.g0", "nonfinite.g0", "updates.u0", "heatmaps")


def reductions(grads, params, before, heatmaps, heat_params, lengths=None):
    """Every parameter-side reduction of a logging step, as one function of
    its tensors (what a graph captures).

    Args:
      grads: The gradients of `params`, dense, same order.
      params: The parameters the optimizer stepped (after its step).
      before: Their values before the step; overwritten with the update.
      heatmaps: The `pooling.HeatmapPlan` of `heat_params`.
      heat_params: Every watched parameter (the heatmaps').
      lengths: The gradients' numels (an int64 device tensor), for a graph:
        see `reduce.nonfinite_counts`.

    Returns:
      `[1-D float32 tensor]`, one per `SEGMENTS` entry.
    """
    with torch.no_grad():
        stats = reduce.gradient_statistics(grads, fused=True)
        nonfinite = reduce.nonfinite_counts(grads, lengths=lengths)
        norms_before = reduce.squared_l2_norms(before, fused=True)
        torch._foreach_sub_(before, params)
        norms_update = reduce.squared_l2_norms(before, fused=True)
        grids = heatmaps.flat_grids(heat_params)
        return [stats, nonfinite, torch.cat([norms_before, norms_update]), torch.cat(grids)]


class ParameterReplay:
    """Runs `reductions()` at each logging step (training thread).

    Args:
      grad_params: The trainable parameters, all stepped by the one watched
        optimizer, on one device.
      heat_params: Every watched parameter (heatmaps).
      heatmaps: Their `pooling.HeatmapPlan`.
      graphs: Capture a CUDA graph (on CUDA devices only).
    """

    def __init__(self, grad_params, heat_params, heatmaps, graphs=True):
        self._grad_params = grad_params
        self._heat_params = heat_params
        self._heatmaps = heatmaps
        self.device = grad_params[0].device
        self._graphs = graphs and self.device.type == "cuda"
        # The weights before the step: kept buffers while a graph reads them,
        # else fresh ones each logging step (free again between them).
        self.before = None
        self._grads = None  # the graph's gradient buffers
        self._graph = None
        self._output = None  # the graph's output vector
        self._lengths = None  # the gradients' numels, read by the graph
        self._pointers = None  # storages the graph reads
        self._runs = 0  # runs since the last (re)planning
        self._served = 0
        self.replays = 0  # logging steps served by a graph replay

    @property
    def runs(self):
        """Logging steps whose parameter side this replay served."""
        return self._served

    @property
    def captured(self):
        """Whether a graph is ready to replay."""
        return self._graph is not None

    def copy_weights(self, grads=None):
        """Keeps the weights the optimizer is about to step (one call).

        `grads` is not read here: the graph reads the gradients after the
        step, with the updates, in one replay (cpu_pass.py reads them
        before it)."""
        if self.before is None or not self._graphs:
            # Fresh each logging step without a graph (free between them), in
            # one call: one per parameter was 161 host calls on ResNet-50.
            self.before = reduce.clone_all(self._grad_params)
            return self.before
        with torch.no_grad():
            torch._foreach_copy_(self.before, self._grad_params)
        return self.before

    def run(self, grads):
        """`(vector, {segment: (offset, size)})` of this logging step, after
        `copy_weights` and the optimizer step, or None where a gradient is
        not `replayable` (the caller's general path measures the step);
        `grads`: the `.grad` of each of `grad_params`, in order."""
        if not all(replayable(grad, self.device) for grad in grads):
            return None
        self._runs += 1
        self._served += 1
        if self._graph is not None and self._pointers != self._storages():
            self._drop_graph("a parameter's storage moved")
        if self._graph is None and self._graphs and self._runs >= 2:
            self._capture(grads)
        if self._graph is not None:
            with torch.no_grad():
                torch._foreach_copy_(self._grads, grads)
            self._graph.replay()
            self.replays += 1
            return self._output, self._layout
        pieces = reductions(grads, self._grad_params, self.before, self._heatmaps, self._heat_params)
        with torch.no_grad():
            vector = torch.cat(pieces)
        if not self._graphs:
            self.before = None  # back to the caching allocator until the next logging step
        return vector, _layout(pieces)

    # -- the graph -------------------------------------------------------------

    def _storages(self):
        return [param.data_ptr() for param in self._grad_params] + \
            [param.data_ptr() for param in self._heat_params]

    def _capture(self, grads):
        """Captures `reductions()` over our gradient buffers (once; again
        after a parameter moved). A failure leaves the eager path on."""
        # Kept from now on: the gradient buffers and the count's temporaries
        # (the weights' buffers are already held).
        needed = sum(grad.numel() * (grad.element_size() + _COUNT_BYTES_PER_ELEMENT) for grad in grads)
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed > MAX_FREE_MEMORY_SHARE * free:
            logger.info("torch_visualization watch: a CUDA graph of the logging step would keep "
                        "%d bytes, over %d%% of the free device memory; the logging step runs "
                        "eagerly", needed, int(MAX_FREE_MEMORY_SHARE * 100))
            self._graphs = False
            return
        try:
            with torch.no_grad():
                self._grads = [torch.empty_like(grad) for grad in grads]
                lengths = reduce.device_tensor([grad.numel() for grad in grads], self.device,
                                               torch.int64)
                graph = torch.cuda.CUDAGraph()
                # thread_local: the writer thread may wait on an event meanwhile.
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    pieces = reductions(self._grads, self._grad_params, self.before,
                                        self._heatmaps, self._heat_params, lengths)
                    output = torch.cat(pieces)
        except Exception:  # noqa: BLE001 - any capture failure: stay eager
            logger.info("torch_visualization watch: capturing the logging step's reductions "
                        "in a CUDA graph failed; the logging step runs eagerly", exc_info=True)
            self._graphs = False
            self._grads = None
            return
        # Everything the graph reads must outlive it: the lengths too.
        self._graph, self._output, self._layout = graph, output, _layout(pieces)
        self._lengths = lengths
        self._pointers = self._storages()

    def _drop_graph(self, why):
        logger.info("torch_visualization watch: capturing the logging step again (%s)", why)
        self._graph = self._output = self._pointers = self._grads = self._lengths = None
        self._runs = 1  # this run is eager; the next one captures


def replayable(grad, device):
    """Whether the replayed reductions take this gradient as it is: dense,
    present, not empty, on `device`, outside any autograd graph."""
    return (grad is not None and not grad.is_sparse and grad.device == device
            and not grad.requires_grad and grad.numel() > 0)


def _layout(pieces):
    """`{segment: (offset, size)}` of `pieces` laid end to end."""
    layout, offset = {}, 0
    for name, piece in zip(SEGMENTS, pieces):
        layout[name] = (offset, piece.shape[0])
        offset += piece.shape[0]
    return layout
