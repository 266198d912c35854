"""watch(): zero fractions of ReLU-family activations called as functions.

`F.relu(x)`, `torch.relu(x)`, `x.relu()`, their in-place forms, `F.relu6`,
and `F.hardtanh` / `F.threshold` with a floor of 0 join
`activations/zero_fraction` (labels `<module>/<function>[#k]`). The
reference fractions are computed here from the very tensors the model
produced (each site keeps a copy on a tape).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from torch_visualization import SummaryWriter, read

TAG = "activations/zero_fraction"

# Regression-style outputs here: the pie's one-time notice is not the subject.
pytestmark = pytest.mark.filterwarnings("ignore:torch_visualization watch. 'outputs/classes'")


def _read(tmp_path, run="run"):
    return read(str(tmp_path))[run]


class _Mlp(nn.Module):
    def __init__(self, tape, name, width=12):
        super().__init__()
        self.tape, self.name = tape, name
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = nn.ReLU()  # a module: measured as such, its own F.relu is not counted again
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        self.tape.append((self.name + "/relu", h))
        h = self.act(h - 0.1)
        self.tape.append((self.name + ".act", h))
        y = self.fc2(h)
        z = F.relu6(3 * y)
        self.tape.append((self.name + "/relu6", z))
        return z


class _Block(nn.Module):
    def __init__(self, tape, name, width=12):
        super().__init__()
        self.tape, self.name = tape, name
        self.norm = nn.LayerNorm(width)
        self.mlp = _Mlp(tape, name + ".mlp", width)

    def forward(self, x):
        h = torch.relu(self.norm(x))
        self.tape.append((self.name + "/relu", h))
        h = self.mlp(h).relu()
        self.tape.append((self.name + "/relu#2", h))
        g = F.gelu(x) + F.silu(x) + F.leaky_relu(x) + F.hardtanh(x)  # never measured
        clipped = F.hardtanh(x, 0.0, 2.0)
        self.tape.append((self.name + "/hardtanh", clipped))
        kept = F.threshold(x, 0.2, 0.0)
        self.tape.append((self.name + "/threshold", kept))
        return x + h + 0.1 * g + clipped + kept


class _Net(nn.Module):
    def __init__(self, width=12, blocks=2):
        super().__init__()
        self.tape = []
        self.blocks = nn.ModuleList([_Block(self.tape, "blocks.%d" % i, width) for i in range(blocks)])
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        y = x.clone().relu_()  # in place, in the model's own forward
        self.tape.append(("_Net/relu", y))
        return self.head(y)


LABELS = ["_Net/relu"] + [
    label
    for block in ("blocks.0", "blocks.1")
    for label in (block + "/relu", block + "/relu#2", block + "/hardtanh", block + "/threshold",
                  block + ".mlp/relu", block + ".mlp/relu6", block + ".mlp.act")
]


def _fractions(tape):
    """Zero fraction per label over every tensor of the tape."""
    zeros, total = {}, {}
    for label, tensor in tape:
        zeros[label] = zeros.get(label, 0) + int((tensor == 0).sum())
        total[label] = total.get(label, 0) + tensor.numel()
    return {label: zeros[label] / total[label] for label in zeros}


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                      reason="needs a CUDA device"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("with_optimizer", [True, False])
def test_functional_relus_log_the_zero_fractions_of_their_outputs(tmp_path, with_optimizer, device):
    torch.manual_seed(0)
    model = _Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = torch.randn(3, 2, 5, 12).to(device)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer if with_optimizer else None, log_every=1, outputs="none")
    tapes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device == "cuda":  # counts stay on the device: a host sync would raise
            torch.cuda.set_sync_debug_mode("error")
        try:
            for batch in batches:
                model.tape.clear()
                optimizer.zero_grad()
                # Two micro-batches per step with an optimizer: both count.
                for x in batch[:2 if with_optimizer else 1]:
                    model(x).pow(2).mean().backward()
                optimizer.step()
                tapes.append([(label, t.detach().clone()) for label, t in model.tape])
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in caught if "failed" in str(w.message)]
    writer.close()
    want = [_fractions(tape) for tape in tapes]
    got = _read(tmp_path)[TAG]
    assert got.labels == LABELS
    assert got.steps == [0, 1, 2]
    for step, values in enumerate(got.values):
        np.testing.assert_allclose(values, [want[step][label] for label in LABELS], rtol=1e-6)
    assert 0 < min(want[0].values()) and max(want[0].values()) < 1  # nothing trivial


def test_activation_modules_only_are_logged_as_before(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    outputs = {}
    for index in (1, 3):
        model[index].register_forward_hook(
            lambda module, args, out, index=index: outputs.__setitem__(str(index), out.clone()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1, outputs="none")
    want, seen = [], []
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(7, 6)).sum().backward()
        optimizer.step()
        want.append([float((outputs[key] == 0).float().mean()) for key in ("1", "3")])
        seen.append(handle._plan.functional.seen)
    writer.close()
    got = _read(tmp_path)[TAG]
    assert got.labels == ["1", "3"]  # the modules' own F.relu calls are not sites
    np.testing.assert_allclose(got.values, want, rtol=1e-6)
    # The function mode ran over the first logging step only: no sites.
    assert seen[0] > 0 and seen == [seen[0]] * 3


class _Calls(TorchFunctionMode):
    """Counts the torch calls made while it is active (the reference)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


class _Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class _Outer(nn.Module):
    """Calls outside `inner` (norms, tanh, softmax) that the mode must not see
    once the call sites are known."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.inner = _Inner()

    def forward(self, x):
        x = torch.tanh(self.norm(x)).softmax(-1) * 2
        return x + self.inner(x)


def test_function_mode_runs_on_logging_steps_inside_the_calling_modules_only(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(_Outer(), _Outer(), nn.Linear(8, 2))
    x = torch.randn(3, 8)
    with _Calls() as reference:
        model[0].inner(x)
    per_inner = reference.calls  # 2 linear + 1 relu
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=3, outputs="none")
    seen = []
    for _ in range(7):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        seen.append(handle._plan.functional.seen)
    writer.close()
    x = torch.randn(4, 8)
    with _Calls() as whole:
        model(x)
    # Step 0 finds the sites with the mode over the whole forward; steps 3
    # and 6 (logging) run it inside the two `inner` modules only; other
    # steps never.
    assert seen[0] >= whole.calls > 2 * per_inner
    assert np.diff([0] + seen).tolist() == [seen[0], 0, 0, 2 * per_inner, 0, 0, 2 * per_inner]
    got = _read(tmp_path)[TAG]
    assert got.labels == ["0.inner/relu", "1.inner/relu"] and got.steps == [0, 3, 6]


def test_gradients_are_bit_identical_with_the_capture_on(tmp_path):
    grads = []
    for watched in (False, True):
        torch.manual_seed(0)
        model = _Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter(str(tmp_path / str(watched)))
        if watched:
            writer.watch(model, optimizer, log_every=1)
        data = torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(1))
        steps = []
        for x in data:
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            steps.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
        writer.close()
        grads.append(steps)
    for a_step, b_step in zip(*grads):
        for a, b in zip(a_step, b_step):
            assert torch.equal(a, b)


def test_nothing_is_done_inside_a_compiled_model(tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = _RankNet()
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(compiled, optimizer, log_every=2, outputs="none")
    x = torch.randn(6, 10)
    for step in range(6):
        # Past the first steps any recompilation (hooks added or removed,
        # the function mode entered) would raise.
        with torch._dynamo.config.patch(error_on_recompile=step >= 2):
            optimizer.zero_grad()
            compiled(x).pow(2).mean().backward()
            optimizer.step()
    writer.close()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert handle._plan.functional.seen == 0 and handle._plan.functional.labels == ()
    got = _read(tmp_path)
    assert TAG not in got and got["gradients/norm"].steps == [0, 2, 4]
    torch._dynamo.reset()


@pytest.mark.parametrize("activation", ["gelu_new", "relu"])
def test_gpt2_gains_no_functional_bars(tmp_path, activation):
    """GPT-2's MLP calls a GELU (never exactly zero): no zero-fraction bars;
    with `activation_function="relu"` its nn.ReLU modules alone have them."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, vocab_size=40, n_positions=32, activation_function=activation,
        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1, outputs="classes")
    tokens = torch.randint(0, 40, (2, 10), generator=torch.Generator().manual_seed(1))
    seen = []
    for _ in range(2):
        optimizer.zero_grad()
        model(tokens, labels=tokens).loss.backward()
        optimizer.step()
        seen.append(handle._plan.functional.seen)
    writer.close()
    got = _read(tmp_path)
    assert handle._plan.functional.labels == ()
    assert seen[0] > 0 and seen[1] == seen[0]  # looked once, found nothing, never again
    if activation == "relu":
        assert got[TAG].labels == ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    else:
        assert TAG not in got
    assert "attention/entropy" in got and "activations/rms" in got


# -- DDP: two gloo ranks ------------------------------------------------------------------


class _RankNet(nn.Module):
    """A functional MLP; with `extra` it makes one more relu call (ranks
    whose forwards take different paths)."""

    def __init__(self, extra=False):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(10, 24), nn.Linear(24, 16), nn.Linear(16, 3)
        self.extra = extra

    def forward(self, x):
        h = F.relu(self.fc2(F.relu(self.fc1(x))))
        if self.extra:
            h = torch.relu(h - 0.5) + h
        return self.fc3(h)


def _ddp_train(writer, model, x, steps=2):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = writer.watch(model, optimizer, log_every=1) if writer is not None else None
    for _ in range(steps):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    if handle is not None:
        handle.remove()
        writer.close()


def _ddp_worker(rank, logdir, diverge):
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = _RankNet(extra=diverge and rank == 1)
    x = torch.randn(8, 10, generator=torch.Generator().manual_seed(2))[rank * 4:(rank + 1) * 4]
    writer = SummaryWriter(os.path.join(logdir, "rank%d" % rank))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ddp_train(writer, DistributedDataParallel(model), x)
    told = any("different functional ReLU calls" in str(w.message) for w in caught)
    if told != diverge:
        raise AssertionError("rank %d: warned %s, diverged %s" % (rank, told, diverge))


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="this torch build has no torch.distributed with gloo")
@pytest.mark.parametrize("diverge", [False, True])
def test_ddp_counts_are_those_of_the_global_batch(tmp_path, diverge):
    from test_distributed import spawn

    logdir = str(tmp_path)
    spawn(_ddp_worker, logdir, diverge)
    got = read(logdir)["rank0"]
    if diverge:  # the ranks found different calls: none is logged, nothing hangs
        assert TAG not in got
        assert "gradients/norm" in got
        return
    torch.manual_seed(0)
    model = _RankNet()
    _ddp_train(SummaryWriter(os.path.join(logdir, "single")), model,
               torch.randn(8, 10, generator=torch.Generator().manual_seed(2)))
    want = read(logdir)["single"][TAG]
    assert got[TAG].labels == want.labels == ["_RankNet/relu", "_RankNet/relu#2"]
    np.testing.assert_allclose(got[TAG].values, want.values, rtol=1e-6)
