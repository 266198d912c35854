"""Knowing when a backward pass has set every gradient (public autograd APIs).

Without an optimizer a watch reads gradients when the backward pass of the
logging step ends. Hooking one output tensor is not enough: a model with
several outputs may train on any of them (the first one that carries
gradients need not be part of the loss). Every backward that trains the
model reaches some of its parameters, so the end is found on them:

- a multi-grad hook (`torch.autograd.graph.register_multi_grad_hook`, mode
  "all") fires once the gradients of every parameter THIS backward reaches
  are computed, and tells which ones those are;
- post-accumulate-grad hooks fire once each of those has been added to
  `.grad`; when the last one has, the step is complete.
"""

from __future__ import annotations

import torch


class AfterBackward:
    """Calls `done()` once, after the next backward pass through `params` has
    accumulated every gradient it computes.

    Args:
      params: Parameters that require gradients (leaf tensors).
      done: Called with no arguments, inside the backward pass, after the
        last `.grad` is set.

    The owner calls `cancel()` at a safe point afterwards (e.g. the next
    forward pass): removing hooks from inside the autograd engine's call of
    them is not safe, so after firing they only do nothing.
    """

    def __init__(self, params, done):
        self._params = list(params)
        self._done = done
        self._accumulated = set()
        self._pending = None
        self._fired = False
        self._handles = [
            param.register_post_accumulate_grad_hook(self._on_accumulated) for param in self._params
        ]
        self._handles.append(
            torch.autograd.graph.register_multi_grad_hook(self._params, self._on_computed, mode="all")
        )

    @property
    def waiting(self):
        """True until `done` was called or `cancel()` ran."""
        return not self._fired

    def cancel(self):
        """Removes every hook; `done` will not be called any more."""
        self._fired = True
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_computed(self, grads):
        if self._fired:
            return
        reached = {id(param) for param, grad in zip(self._params, grads) if grad is not None}
        self._pending = reached - self._accumulated
        if not self._pending:
            self._fire()

    def _on_accumulated(self, param):
        if self._fired:
            return
        key = id(param)
        if self._pending is None:
            self._accumulated.add(key)
            return
        self._pending.discard(key)
        if not self._pending:
            self._fire()

    def _fire(self):
        self._fired = True
        self._done()
