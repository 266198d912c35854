"""Forward-side measurements batched at the end of a measured forward.

On an accelerator each measured output costs host-side calls: an L2 norm and
an inf-norm per block or activation output, an order-0 norm per activation
call (207 calls on ResNet-50, which a launch-bound step pays in wall time).
Outputs that autograd keeps anyway are instead held until the model's
forward ends and reduced there by three list-level `_foreach_norm` calls per
dtype, whatever their number. The CPU path measures at once (its kernels
are tuned per tensor; it is not launch-bound).

Held values must be the values the module returned:

- an in-place op on a tensor that requires grad gives it a new `grad_fn`, so
  each held output's `grad_fn` is compared at the end; a changed one (e.g. a
  block of a Sequential followed by `nn.ReLU(inplace=True)`) is not measured
  late: its module is measured at once from then on;
- a module is held only once a logging step has shown (a probe: measured at
  once, watched through a weak reference) that its outputs outlive the
  forward unchanged, so the first logging step loses nothing and holding
  never extends a tensor's life (an output freed during the forward, as
  under activation checkpointing, keeps being measured at once);
- outputs outside autograd (no grad, no `grad_fn`) are measured at once, and
  at most `MAX_FREE_MEMORY_SHARE` of the free device memory is held.

A module whose outputs are changed in place only on some later step loses
that step's value for it (NaN in its bar, never a wrong value); it is
measured at once afterwards.
"""

from __future__ import annotations

import weakref

import torch

from torch_visualization import reduce

# Held outputs, at most this share of the free device memory.
MAX_FREE_MEMORY_SHARE = 0.1
# Where the device cannot say (the CPU test seam, other accelerators).
DEFAULT_BUDGET_BYTES = 1 << 28

STATS, COUNTS = "stats", "counts"


class DeferredOutputs:
    """Which outputs are held, and their measurement at the forward's end.

    Args:
      enabled: Hold outputs at all (the accelerator path).
    """

    def __init__(self, enabled):
        self.enabled = enabled
        self._verdicts = {}  # (kind, index) -> True: hold; False: measure at once
        self._probes = []  # ((kind, index), weak ref, grad_fn)
        self._held = []  # ((kind, index), tensor, grad_fn)
        self._budget = None
        self._bytes = 0
        self.dropped = 0  # held outputs found changed in place (not measured)

    def offer(self, kind, index, tensor):
        """True when `tensor` is held (measured by `finish`), False when the
        caller measures it now."""
        if not self.enabled or not tensor.requires_grad or tensor.grad_fn is None:
            return False
        key = (kind, index)
        verdict = self._verdicts.get(key)
        if verdict is None:
            self._probes.append((key, weakref.ref(tensor), tensor.grad_fn))
            return False
        if not verdict:
            return False
        size = tensor.numel() * tensor.element_size()
        if self._budget is None:
            self._budget = _budget(tensor.device)
        if self._bytes + size > self._budget:
            return False
        self._bytes += size
        self._held.append((key, tensor, tensor.grad_fn))
        return True

    def finish(self, state):
        """Settles the probes and measures the held outputs into `state`
        (`module_stats`, `activations`)."""
        for key, ref, grad_fn in self._probes:
            tensor = ref()
            kept = tensor is not None and tensor.grad_fn is grad_fn
            self._verdicts[key] = self._verdicts.get(key, True) and kept
        self._probes.clear()
        held, self._held = self._held, []
        self._bytes = 0
        self._budget = None
        groups = {}
        for key, tensor, grad_fn in held:
            if tensor.grad_fn is not grad_fn:
                self._verdicts[key] = False  # changed in place: at once from now on
                self.dropped += 1
                continue
            groups.setdefault((key[0], tensor.device), []).append((key[1], tensor))
        if groups:
            try:
                with torch.no_grad():
                    for (kind, _), entries in groups.items():
                        _measure(state, kind, entries)
            except Exception:
                # This step's held values are lost (the failure is reported
                # once); every later output is measured at once.
                self.enabled = False
                raise

    def clear(self):
        """Forgets what a window that closed early held (never measured)."""
        self._probes.clear()
        self._held.clear()
        self._bytes = 0
        self._budget = None


def _measure(state, kind, entries):
    """The list-level reductions of one kind of held outputs on one device."""
    indices = [index for index, _ in entries]
    tensors = [tensor for _, tensor in entries]
    if kind == COUNTS:
        counts = torch._foreach_norm(tensors, 0, dtype=reduce.norm_dtype(tensors))
        state.activations.extend(
            (index, count, tensor.numel()) for index, count, tensor in zip(indices, counts, tensors))
        return
    dtype = reduce.norm_dtype(tensors)  # float64 outputs cannot narrow
    norms = torch._foreach_norm(tensors, 2, dtype=dtype)
    tops = torch._foreach_norm(tensors, float("inf"), dtype=dtype)
    # (index, L2 norm, low, high, numel) with low = high = max|x| (see
    # capture.add_module_stats: max(-low, high) is what is read).
    state.module_stats.extend(
        (index, norm, top, top, tensor.numel())
        for index, norm, top, tensor in zip(indices, norms, tops, tensors))


def _budget(device):
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(MAX_FREE_MEMORY_SHARE * free)
    return DEFAULT_BUDGET_BYTES
