"""Forward-side measurements held until the forward ends (watch/deferred.py),
on CPU tensors through the accelerator path's test seam: the values equal
the CPU path's (which measures every output at once), outputs changed in
place or freed during the forward are measured at once, and a value that
cannot be right is left out, never written wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from test_watch_replay import _assert_same_values, _two_runs
from torch_visualization import SummaryWriter, read
from torch_visualization.watch import deferred
from torch_visualization.watch import reducer as watch_reducer


class _Branchy(nn.Module):
    """A Sequential stem whose block output an in-place ReLU changes, a
    side branch whose output dies in the forward (as ResNet's downsample),
    and a checkpointed block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True))
        self.side = nn.Sequential(nn.Linear(16, 16))
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(2)])
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks[0](x) + self.side(x)
        x = checkpoint(self.blocks[1], x, use_reentrant=False)
        return self.head(x)


def _build_branchy(optimizer=True):
    def build():
        torch.manual_seed(0)
        model = _Branchy()
        opt = torch.optim.SGD(model.parameters(), lr=0.1) if optimizer else None
        inputs = torch.randn(4, 8, 6, generator=torch.Generator().manual_seed(3))

        def step(index):
            if opt is not None:
                opt.zero_grad()
            F.softplus(model(inputs[index])).mean().backward()
            if opt is not None:
                opt.step()

        return model, opt, step

    return build


@pytest.mark.parametrize("optimizer", [True, False])
def test_held_outputs_give_the_values_of_immediate_measurement(tmp_path, monkeypatch, optimizer):
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, _build_branchy(optimizer))
    verdicts = accelerated._capture._deferred._verdicts
    names = accelerated._plan.stat_names
    held = {names[index] for (kind, index), ok in verdicts.items() if kind == deferred.STATS and ok}
    at_once = {names[index] for (kind, index), ok in verdicts.items()
               if kind == deferred.STATS and not ok}
    # The stem's Linear output is changed by the in-place ReLU after it; the
    # side branch's and the first block's outputs die in their add (which
    # keeps neither); inside the checkpointed block the first output is not
    # kept (its last one is the block's output, kept by the head). Outputs
    # that later ops keep outlive the forward unchanged.
    assert {"stem.0", "side.0", "blocks.0.1", "blocks.1.0"} <= at_once
    assert {"stem.1", "blocks.0.0", "blocks.1.1"} <= held
    assert accelerated._capture._deferred.dropped == 0
    _assert_same_values(got, want)


def test_everything_is_measured_at_once_beyond_the_memory_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(deferred, "DEFAULT_BUDGET_BYTES", 0)
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, _build_branchy())
    _assert_same_values(got, want)


class _LateInPlace(nn.Module):
    """Changes its first block's output in place from the third step on."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 3))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.blocks[0](x)
        if self.calls >= 3:
            h.mul_(2.0)  # after its hook measured (or held) it
        return self.blocks[1](h)


def test_an_output_changed_in_place_later_is_left_out_never_wrong(tmp_path, monkeypatch):
    monkeypatch.setattr(watch_reducer, "ACCELERATOR_PATH_ON_CPU", True)
    torch.manual_seed(0)
    model = _LateInPlace()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1)
    expected = []
    for step in range(4):
        x = torch.randn(5, 6, generator=torch.Generator().manual_seed(step))
        with torch.no_grad():  # what the module returned, before any later change
            expected.append(float(model.blocks[0](x).square().mean().sqrt()))
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    writer.close()
    rms = read(str(tmp_path))["run"]["activations/rms"]
    first = rms.labels.index("blocks.0")
    got = [values[first] for values in rms.values]
    # Step 0 probes (measured at once), step 1 holds, step 2 finds the held
    # output changed: left out (NaN); step 3 measures at once.
    np.testing.assert_allclose([got[0], got[1], got[3]], [expected[0], expected[1], expected[3]],
                               rtol=1e-5)
    assert np.isnan(got[2])
    assert handle._capture._deferred.dropped == 1


def test_a_failing_batched_reduction_turns_holding_off(tmp_path, monkeypatch):
    calls = []

    def failing(state, kind, entries):
        calls.append(kind)
        raise RuntimeError("no such kernel here")

    monkeypatch.setattr(deferred, "_measure", failing)
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, _build_branchy())
    assert calls  # step 1 held outputs and failed to reduce them
    assert not accelerated._capture._deferred.enabled
    # Steps 0, 2 and 3 measured every output at once: their values are right.
    for tag in ("activations/rms", "activations/max_abs"):
        for step in (0, 2, 3):
            np.testing.assert_allclose(got[tag].values[step], want[tag].values[step],
                                       rtol=1e-5, atol=1e-6, err_msg=tag)
