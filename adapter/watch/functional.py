"""Zero fractions of ReLU-family activations called as functions (logging steps only).

`F.relu(x)`, `torch.relu(x)`, `x.relu()` (and their in-place forms),
`F.relu6`, and `F.hardtanh` / `F.threshold` when their lower output is 0 have
no module to hook: a `TorchFunctionMode` sees them. Only functions whose
exact zeros mean dead units are measured; a zero fraction of GELU, SiLU,
ELU or LeakyReLU outputs (never exactly zero) would mean nothing.

Call sites are found ONCE, on the first measured forward of the model: the
mode runs over that whole forward, with pre/post hooks on every module of
the model keeping a stack of the modules in progress; each call is
attributed to the innermost module running and numbered within that
module's forward, which gives its label: `blocks.3.mlp/relu`, then
`blocks.3.mlp/relu#2` for a second relu in one forward of that module (the
model itself is named by its class). Calls made inside an activation module
(`nn.ReLU` calls `F.relu`) are skipped: the module is measured already.
That first forward is measured too, so the first event has the values.

Afterwards, on logging steps only, the mode is on only inside the modules
where calls were found (hooks on them and on the activation modules nested
in them), so a model without functional ReLUs pays nothing after its first
logging step, and a non-logging step stays one integer check. The labels
join `activations/zero_fraction`, among the activation modules' in model
order (their counts come after the modules' in a packet), fixed at its
first event. Under DDP/FSDP the ranks check once that they found the same
sites (`agree_across_ranks`). Under `torch.compile` nothing is done.
"""

from __future__ import annotations

import hashlib
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_RELU = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.Tensor.relu: "relu",
    torch.relu_: "relu",
    torch.Tensor.relu_: "relu",
    F.relu6: "relu6",
    F.hardtanh: "hardtanh",
    F.threshold: "threshold",
}


def _compiling():
    return torch.compiler.is_compiling()


def relu_kind(func, args, kwargs):
    """The label stem of a ReLU-family call whose exact zeros mean dead
    units (`"relu"`, `"relu6"`, ...), or None for any other call."""
    try:
        kind = _RELU.get(func)
    except TypeError:  # an unhashable callable is no ReLU
        return None
    if kind == "hardtanh":  # a clipped ReLU only when its floor is 0
        low = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        return kind if low == 0 else None
    if kind == "threshold":  # x if x > t else value: dead units give value
        value = kwargs.get("value", args[2] if len(args) > 2 else None)
        return kind if value == 0 else None
    return kind


class Sites:
    """The functional call sites of one watch (the plan holds it).

    Attributes:
      labels: The sites' labels, published (as a tuple) when the first
        measured forward ends; empty before.
      positions: Per site, `(position of its module in model order, call
        order)`: where its bar goes among the activation modules'.
      discovered: Whether that forward has ended.
      seen: Torch calls the function mode has seen (how much it ran).

    Args:
      names: Every module's name (the root named by its class), in model
        order (`plan.py` names activation modules the same way).
    """

    def __init__(self, names=()):
        self.labels = ()
        self.positions = ()
        self.discovered = False
        self.agreed = False
        self.seen = 0
        self._order = {name: position for position, name in enumerate(names)}
        self._found = []  # (label, position) while discovering
        self._index = {}  # (module name, kind, ordinal) -> site index

    def position(self, name):
        """A module's position in model order (-1: unknown)."""
        return self._order.get(name, -1)

    def callers(self):
        """Names of the modules whose forward makes the calls found."""
        return {name for name, _, _ in self._index}

    def index(self, key, discovering):
        """The site index of a call `(module name, kind, ordinal)` (added
        while discovering), or None."""
        index = self._index.get(key)
        if index is None and discovering:
            index = self._index[key] = len(self._found)
            name, kind, ordinal = key
            label = "%s/%s" % (name, kind) + ("" if ordinal == 1 else "#%d" % ordinal)
            self._found.append((label, (self.position(name), index)))
        return index

    def publish(self):
        """Ends discovery: the labels found so far are the sites."""
        # Positions first: the writer thread reads labels, then positions.
        self.positions = tuple(position for _, position in self._found)
        self.labels = tuple(label for label, _ in self._found)
        self.discovered = True

    def disable(self):
        """No functional sites from now on (ranks that found different ones)."""
        self._index = {}
        self._found = []
        self.publish()


class ReluCounter(TorchFunctionMode):
    """While active, counts the zeros of every ReLU-family call (see module
    docstring); `on_call(kind, output)` does the rest."""

    def __init__(self, sites, on_call):
        super().__init__()
        self._sites = sites
        self._on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self._sites.seen += 1
        kind = relu_kind(func, args, kwargs)
        if kind is not None and isinstance(result, torch.Tensor) and not _compiling():
            self._on_call(kind, result)
        return result


class FunctionalCapture:
    """The hooks and function mode that measure functional ReLU calls.

    Args:
      named: `[(name, module)]` of every module of the model (the root named
        by its class), in model order.
      sites: The plan's `Sites`.
      activations: The activation modules (measured as modules: calls inside
        them are not counted again).
      offset: Index of the first site among the zero-fraction counts (the
        number of activation modules).
      measuring: Returns whether a measured forward of the model runs.
      record: Called as `record(index, output)` to count a site's zeros.
    """

    def __init__(self, named, sites, activations, offset, measuring, record):
        # ScriptModules take no hooks (and run no Python function calls).
        self._named = [(name, module) for name, module in named
                       if not isinstance(module, torch.jit.ScriptModule)]
        self._sites = sites
        self._excluded = {id(module) for module in activations}
        self._skipped = set()  # activation modules whose own calls were seen
        self._offset = offset
        self._measuring = measuring
        self._record = record
        self._handles = []
        self._stack = []  # [module, name, {kind: calls so far}] of modules in progress
        self._mode = None
        self._mode_depth = 0  # stack depth at which the mode was entered
        self._hooked = []  # after discovery: (name, module, enters the mode)

    def arm(self):
        """Adds the hooks (idempotent): on every module until call sites are
        known, then on the modules that make or skip functional calls."""
        if self._handles:
            return
        if self._sites.discovered:
            hooked = self._hooked
        else:
            hooked = [(name, module, True) for name, module in self._named]
        for name, module, enters in hooked:
            # Pre-hooks after the capture's (the model's own marks the forward
            # measured), post-hooks before them: modes nest, LIFO, with the
            # attention capture's.
            self._handles.append(module.register_forward_pre_hook(self._start(name, module, enters)))
            self._handles.append(module.register_forward_hook(
                self._end(module), prepend=True, always_call=True))

    def disarm(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._mode is not None:  # a forward cut short: never leave the mode on
            self._exit_mode()
        self._stack.clear()

    def _start(self, name, module, enters):
        def hook(module_, args):
            if _compiling():
                return
            if self._mode is None:
                if not enters or not self._measuring() or (
                        self._sites.discovered and not self._sites.labels):
                    return
                self._mode = ReluCounter(self._sites, self._on_call)
                self._mode.__enter__()
                self._mode_depth = len(self._stack) + 1
            self._stack.append([module, name, {}])

        return hook

    def _end(self, module):
        def hook(module_, args, output):
            if _compiling() or not self._stack or self._stack[-1][0] is not module:
                return
            self._stack.pop()
            if self._mode is not None and len(self._stack) < self._mode_depth:
                self._exit_mode()
                if not self._sites.discovered:
                    self._discovered()

        return hook

    def _exit_mode(self):
        mode, self._mode = self._mode, None
        mode.__exit__(None, None, None)

    def _on_call(self, kind, output):
        if not self._stack:
            return
        module, name, calls = self._stack[-1]
        if id(module) in self._excluded:
            self._skipped.add(id(module))
            return
        calls[kind] = ordinal = calls.get(kind, 0) + 1
        index = self._sites.index((name, kind, ordinal), not self._sites.discovered)
        if index is not None and output.numel():
            self._record(self._offset + index, output)

    def _discovered(self):
        """The first measured forward ended: hooks only where calls were seen."""
        self._sites.publish()
        callers = self._sites.callers()
        # Activation modules call F.relu themselves: they stay hooked (never
        # entering the mode) so that their calls are skipped, not counted for
        # the module around them.
        self._hooked = [(name, module, name in callers) for name, module in self._named
                        if name in callers or (callers and id(module) in self._skipped)]
        for handle in self._handles:  # this post-hook's module iterates a copy
            handle.remove()
        self._handles.clear()
        self.arm()


def zero_fraction_layout(activation_names, sites):
    """`(labels, slots)` of `activations/zero_fraction`: the activation
    modules' labels and the functional sites' merged in model order, and per
    count index (modules first, then sites) its bar."""
    if not sites.labels:
        return list(activation_names), list(range(len(activation_names)))
    keys = [(sites.position(name), -1) for name in activation_names]
    keys += [tuple(position) for position in sites.positions]
    labels = list(activation_names) + list(sites.labels)
    ranked = sorted(range(len(keys)), key=lambda index: keys[index])
    slots = [0] * len(keys)
    for slot, index in enumerate(ranked):
        slots[index] = slot
    return [labels[index] for index in ranked], slots


def zero_counts_across_ranks(plan, state, device):
    """How many zero counts the ranks exchange: activation modules, then the
    functional sites every rank found (`agree_across_ranks`, a COLLECTIVE
    the first time); counts of sites dropped are dropped from `state`."""
    agree_across_ranks(plan.functional, device)
    width = len(plan.activation_names) + len(plan.functional.labels)
    state.activations = [entry for entry in state.activations if entry[0] < width]
    return width


def agree_across_ranks(sites, device):
    """Makes every rank keep the same sites (COLLECTIVE, once: at the first
    logging step after discovery). Ranks whose forwards took other paths
    would exchange buffers of other sizes; then none keeps any, with a
    warning."""
    if not sites.discovered or sites.agreed:
        return
    sites.agreed = True
    digest = int.from_bytes(hashlib.blake2b("\n".join(sites.labels).encode(), digest_size=6).digest(),
                            "big")  # 48 bits: exact in int64, negated too
    buffer = torch.tensor([digest, -digest], dtype=torch.int64, device=device)
    dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
    if int(buffer[0]) != -int(buffer[1]):
        sites.disable()
        warnings.warn(
            "torch_visualization watch: the ranks found different functional ReLU calls "
            "(their forwards took different paths); they are not logged in "
            "'activations/zero_fraction'", RuntimeWarning, stacklevel=2)
