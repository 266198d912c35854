"""What the installed `watch()` supports, probed by behaviour (for xfail marks).

Issue 6's integrations need three things from adapter/watch.py that it may
not have yet; tests that depend on them are marked
`xfail(condition=not probe(), strict=True)`: while the feature is missing
they report as "xfailed" with the reason, and once it lands they run as
normal tests (no mark to remove).
"""

from __future__ import annotations

import functools
import tempfile

import torch


def _logged_gradient_norms(model, optimizer, train_step):
    from torch_visualization import SummaryWriter, read

    with tempfile.TemporaryDirectory() as logdir:
        writer = SummaryWriter(logdir)
        handle = writer.watch(model, optimizer, log_every=1)
        train_step()
        handle.remove()
        writer.close()
        (tags,) = read(logdir).values()
        return tags


@functools.lru_cache(maxsize=None)
def reads_gradients_after_closure():
    """True when gradients computed inside `optimizer.step(closure)` are logged.

    Lightning's automatic optimization runs backward inside the closure, after
    the optimizer's step pre-hooks.
    """
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def closure():
        optimizer.zero_grad()
        loss = model(torch.ones(1, 2)).sum()
        loss.backward()
        return loss

    tags = _logged_gradient_norms(model, optimizer, lambda: optimizer.step(closure))
    # d(sum(w x + b))/dw = x = [1, 1] (norm sqrt 2), d/db = 1.
    norms = tags["gradients/norm"].values[0]
    return abs(norms[0] - 2 ** 0.5) < 1e-6 and abs(norms[1] - 1.0) < 1e-6


class _DictOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)

    def forward(self, x):
        return {"logits": self.linear(x)}


@functools.lru_cache(maxsize=None)
def logs_classes_of_dict_outputs():
    """True when `outputs/classes` is logged for `{"logits": ...}` outputs (HF)."""
    model = _DictOutput()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def step():
        optimizer.zero_grad()
        model(torch.ones(4, 2))["logits"].sum().backward()
        optimizer.step()

    return "outputs/classes" in _logged_gradient_norms(model, optimizer, step)


def joins_collectives():
    """True when watch() runs its DDP/FSDP collectives (torch_visualization.distributed)."""
    from torch_visualization import watch

    return getattr(watch, "distributed", None) is not None


CLOSURE_REASON = (
    "adapter/watch.py reads gradients in the optimizer's step PRE-hook, before "
    "a closure (Lightning's) runs backward: read them in the post-hook "
    "(/tmp/issue6_watch_patch.py integrations)"
)
DICT_OUTPUT_REASON = (
    "adapter/watch.py logs outputs/classes only for tensor outputs, not "
    "Hugging Face ModelOutput.logits (/tmp/issue6_watch_patch.py integrations)"
)
COLLECTIVES_REASON = (
    "adapter/watch.py does not call torch_visualization.distributed yet: ranks "
    "!= 0 do no logging work, so class/activation counts are rank 0's only "
    "and FSDP statistics are not combined (/tmp/issue6_watch_patch.py distributed)"
)
