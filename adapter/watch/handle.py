"""The `Watch` handle: hooks that count steps and measure the logging ones.

What counts as a step: with optimizers, the steps of the first one (step
hooks), so gradient accumulation is counted right; a step the GradScaler
skips (Inf/NaN gradients) is not counted. Without an optimizer, forward
passes of the model in training mode count. Eval-mode forwards never count.
Step `s` logs when `s % log_every == 0`, under global step `s` (counting
starts at `start_step`, e.g. the global step of a resumed run).

A logging step is a window: it opens when the step before it ends and closes
when it ends. While it is open:

- forward hooks on the activation modules and on the model measure the
  forward passes OF THE MODEL in training mode (every micro-batch under
  gradient accumulation); an activation module measures whenever the model's
  own forward is in progress, whatever its own mode (a frozen eval-mode
  backbone inside a training model counts), and never outside it (the
  recomputation of activation checkpointing runs during backward: it is not
  counted again);
- each watched optimizer's step is measured around itself: its parameters'
  weights before, their gradients (after GradScaler unscaled them) and the
  update. The CPU pass reads the gradients as the step begins, while they
  are in cache (cpu_pass.py), the other paths after it; after it always
  where a closure runs backward inside `step()`. PyTorch's optimizers leave
  `.grad` as it is: both read the same values. Parameters
  that no watched optimizer holds are read when the first optimizer's step
  ends; without an optimizer every gradient is read when the backward pass of
  the logging step has set the last one (backward.py).

Outside a window only the first optimizer's step post-hook runs (one integer
check), or the model's forward hook without an optimizer: no device work, no
host sync, no allocation. The forward hooks exist only while a window is open
(with `log_every=1`, always).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
import weakref

import torch

from torch_visualization.watch import backward, capture, decode
from torch_visualization.watch.reducer import StepState

logger = logging.getLogger(__name__)

# Models currently watched (by any writer): a second watch is an error.
watched = weakref.WeakKeyDictionary()
watched_lock = threading.Lock()


def _compiling():
    return torch.compiler.is_compiling()


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


class Watch:
    """Handle of one watched model, returned by `SummaryWriter.watch`.

    `remove()` takes every hook away; the model and optimizers then behave
    exactly as before. The handle is also a context manager that removes the
    hooks on exit.
    """

    def __init__(self, *, model, inner, optimizers, plan, reducer, sink, log_every, start_step,
                 grad_params, modules, owner=None):
        self._model = model
        self._inner = inner
        self._optimizers = optimizers
        self._plan = plan
        self._reducer = reducer
        self._sink = sink
        self._every = log_every
        self._count = start_step
        self._grad_params = grad_params
        self._owner = owner  # the writer whose close() removes this watch
        self._active = True
        self._permanent = []
        self._state = None  # StepState of the open window, None outside one
        self._capture = capture.ForwardCapture(
            model, plan, modules, lambda: self._state, outputs_on_end=bool(optimizers),
            guarded=self._guarded, defer=reducer.accelerated,
        )
        self._after_backward = None
        self._memory = decode.Memory(freeze=None if sink is None else sink.freeze)
        self._failures = 0
        if optimizers:
            for index, optimizer in enumerate(optimizers):
                self._permanent.append(optimizer.register_step_pre_hook(self._pre_step_hook(index)))
                self._permanent.append(optimizer.register_step_post_hook(self._post_step_hook(index)))
        else:
            self._permanent.append(model.register_forward_hook(self._on_forward_counted))
        if self._count % self._every == 0:
            self._open_window()

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
        """The next step's number (`start_step` plus the steps counted)."""
        return self._count

    @property
    def log_every(self):
        """Steps between two logging steps."""
        return self._every

    def remove(self):
        """Removes every hook of this watch; calling it again does nothing.

        Pending logging steps already handed to the writer thread are still
        written (`writer.flush()` waits for them).
        """
        if self._after_backward is not None:
            self._after_backward.cancel()
            self._after_backward = None
        for handle in self._permanent:
            handle.remove()
        self._permanent.clear()
        self._capture.disarm()
        self._active = False
        self._state = None
        with watched_lock:
            for key in (self._model, self._inner):
                if watched.get(key) is self:
                    del watched[key]
        if self._owner is not None and self in self._owner._watch_handles:
            self._owner._watch_handles.remove(self)

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

    # -- windows -----------------------------------------------------------

    def _open_window(self):
        """A logging step begins: fresh state, forward hooks in place."""
        self._state = StepState()
        if self._active:
            self._capture.arm()

    def _close_window(self):
        """The state of the logging step that ends; hooks go unless the next
        step logs too."""
        state, self._state = self._state, None
        if self._count % self._every:
            self._capture.disarm()
        return state

    def _guarded(self, function, *args):
        """Runs `function`; an error is reported once and never reaches training."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001
            self._failures += 1
            _report_first_failure(self._failures, "a logging step")

    # -- optimizer hooks -----------------------------------------------------

    def _pre_step_hook(self, index):
        def hook(optimizer, args, kwargs):
            state = self._state
            if state is not None:
                # `step(closure)` runs backward inside the step: its
                # gradients are read after it; otherwise they are final now.
                # (PyTorch passes the step's own args, `self` first.)
                given = args[1:] if args and args[0] is optimizer else args
                final = not given and kwargs.get("closure") is None
                self._guarded(self._reducer.copy_weights, state, index, final)

        return hook

    def _post_step_hook(self, index):
        def hook(optimizer, args, kwargs):
            state = self._state
            if state is not None:
                self._guarded(self._measure_optimizer, state, index)
            if index == 0:
                step = self._count
                self._count += 1
                if state is not None:
                    self._close_window()
                    self._guarded(self._finish, step, state)
                if self._count % self._every == 0:
                    self._open_window()

        return hook

    def _measure_optimizer(self, state, index):
        # Read after the step, not before: a closure (LBFGS, Lightning) runs
        # backward inside optimizer.step(); GradScaler has unscaled the
        # gradients before it; PyTorch's optimizers leave .grad as is.
        self._reducer.measure_optimizer(state, index)

    # -- without an optimizer ------------------------------------------------

    def _on_forward_counted(self, module, inputs, output):
        # Without an optimizer: each training forward is a step.
        if _compiling() or not module.training:
            return
        if self._after_backward is not None:
            # The previous logging step's backward never came (or is done):
            # its hooks go now, outside the autograd engine.
            self._after_backward.cancel()
            self._after_backward = None
        step = self._count
        self._count += 1
        state = self._state
        if state is not None:
            self._capture.flush(state)  # before the window closes (this hook runs first)
            self._close_window()
            self._guarded(self._capture.add_outputs, state, output)
            if torch.is_grad_enabled() and self._grad_params:
                done = lambda: self._guarded(self._finish_after_backward, step, state)  # noqa: E731
                self._after_backward = backward.AfterBackward(self._grad_params, done)
            else:
                self._guarded(self._finish, step, state)
        if self._count % self._every == 0:
            self._open_window()

    def _finish_after_backward(self, step, state):
        self._reducer.measure_gradients(state)
        self._finish(step, state)

    # -- the end of a logging step ----------------------------------------------

    def _finish(self, step, state):
        """Ends a logging step: device work here, the rest on the writer thread."""
        if not self._active:
            return
        if self._optimizers:
            self._reducer.measure_gradients(state)  # those no optimizer holds
        packet = self._reducer.finish(step, time.time(), state, self._class_width_to_sync())
        if packet is not None and self._sink is not None:
            plan, memory = self._plan, self._memory
            self._sink.submit(lambda: decode.event_values(packet.built(), plan, memory),
                              packet.step, packet.walltime)

    def _class_width_to_sync(self):
        """Class count every rank exchanges (0: the pie is not logged)."""
        return self._capture.class_width or 0 if self._capture.logs_classes else 0
