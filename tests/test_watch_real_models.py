"""watch() on what real training code does: the defects found on real models.

0-d parameters, several outputs without an optimizer, activation
checkpointing, two optimizers, frozen eval-mode backbones, regression heads,
FSDP1, resuming from a checkpoint, tied and sparse parameters. Each test
trains a small look-alike model on the CPU, writes real event files and reads
them back.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from torch_visualization import SummaryWriter, read
from torch_visualization.watch import reducer as watch_reducer


def _read(tmp_path, run="run"):
    return read(str(tmp_path))[run]


# -- 1. a 0-d parameter ----------------------------------------------------------


class _Clip(nn.Module):
    """CLIP-like: two projections and a learnable temperature (0-d)."""

    def __init__(self):
        super().__init__()
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def forward(self, images, texts):
        a = F.normalize(self.image(images), dim=1)
        b = F.normalize(self.text(texts), dim=1)
        return self.logit_scale.exp() * a @ b.t()


def test_a_0d_parameter_is_logged_as_one_cell_and_a_bar(tmp_path):
    torch.manual_seed(0)
    model = _Clip()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)
    for _ in range(2):
        optimizer.zero_grad()
        logits = model(torch.randn(8, 6), torch.randn(8, 5))
        F.cross_entropy(logits, torch.arange(8)).backward()
        grad = model.logit_scale.grad.item()
        optimizer.step()
    writer.close()
    got = _read(tmp_path)
    scale = got["weights/logit_scale"]
    assert scale.original_shape == [] and scale.values[-1].shape == (1, 1)
    # Weights are read when the logging step ends: after its update.
    assert scale.values[-1][0, 0] == np.float32(model.logit_scale.item())
    labels = got["gradients/norm"].labels
    assert "logit_scale" in labels
    assert got["gradients/norm"].values[-1][labels.index("logit_scale")] == pytest.approx(abs(grad), rel=1e-6)


# -- 2. several outputs, no optimizer ----------------------------------------------


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.aux = nn.Linear(8, 3)
        self.main = nn.Linear(8, 2)

    def forward(self, x):
        hidden = torch.relu(self.body(x))
        return {"aux": self.aux(hidden), "main": self.main(hidden)}


def test_without_optimizer_a_loss_on_any_output_ends_the_step(tmp_path):
    """The first output that carries gradients ("aux") is not in the loss."""
    torch.manual_seed(0)
    model = _TwoHeads()
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, log_every=2)
    expected = {}
    for step in range(5):
        model.zero_grad()
        out = model(torch.randn(6, 4))
        out["main"].pow(2).mean().backward()
        if step % 2 == 0:
            expected[step] = [0.0 if p.grad is None else p.grad.norm().item() for p in model.parameters()]
    writer.close()
    norms = _read(tmp_path)["gradients/norm"]
    assert norms.steps == [0, 2, 4]
    for step, values in zip(norms.steps, norms.values):
        np.testing.assert_allclose(values, expected[step], rtol=1e-6)
    # aux got no gradient: a missing gradient counts as zero.
    assert norms.values[0][norms.labels.index("aux.weight")] == 0


# -- 3. activation checkpointing ----------------------------------------------------


class _Checkpointed(nn.Module):
    def __init__(self, use_checkpoint):
        super().__init__()
        self.first = nn.Linear(6, 16)
        self.act = nn.ReLU()
        self.mix = nn.Linear(16, 16)
        self.last = nn.Linear(16, 3)
        self.use_checkpoint = use_checkpoint

    def block(self, x):
        # `mix` after the activation: recomputation (which stops once the
        # last tensor backward needs is made again) runs `act` whole, hooks
        # included.
        return self.mix(self.act(self.first(x)))

    def forward(self, x):
        if self.use_checkpoint:
            hidden = checkpoint(self.block, x, use_reentrant=False)
        else:
            hidden = self.block(x)
        return self.last(hidden)


@pytest.mark.parametrize("with_optimizer", [True, False])
def test_checkpoint_recomputation_is_not_counted(tmp_path, monkeypatch, with_optimizer):
    batches = [torch.randn(5, 6, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    results = {}
    for use_checkpoint in (False, True):
        calls = []
        original = watch_reducer.StepReducer.finish

        def counting(self, step, walltime, state, *rest, original=original, calls=calls):
            calls.extend(numel for _, _, numel in state.activations)  # measured activation outputs
            return original(self, step, walltime, state, *rest)

        monkeypatch.setattr(watch_reducer.StepReducer, "finish", counting)
        torch.manual_seed(0)
        model = _Checkpointed(use_checkpoint)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1) if with_optimizer else None
        name = "ckpt" if use_checkpoint else "plain"
        writer = SummaryWriter(str(tmp_path / name))
        writer.watch(model, optimizer, log_every=2)
        for x in batches:
            model.zero_grad()
            model(x).pow(2).mean().backward()
            if optimizer is not None:
                optimizer.step()
        writer.close()
        results[name] = (len(calls), _read(tmp_path, name)["activations/zero_fraction"])
    (plain_calls, plain), (ckpt_calls, ckpt) = results["plain"], results["ckpt"]
    # One measured forward per logging step (steps 0 and 2), recomputation not counted.
    assert plain_calls == ckpt_calls == 2
    assert plain.steps == ckpt.steps == [0, 2]
    for a, b in zip(plain.values, ckpt.values):
        np.testing.assert_array_equal(a, b)


# -- 4. two optimizers ---------------------------------------------------------------


class _Gan(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Linear(3, 4)
        self.discriminator = nn.Linear(4, 1)


def _gan_step(model, opt_g, opt_d, noise, real):
    opt_d.zero_grad()
    fake = model.generator(noise).detach()
    loss_d = F.softplus(-model.discriminator(real)).mean() + F.softplus(model.discriminator(fake)).mean()
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    loss_g = F.softplus(-model.discriminator(model.generator(noise))).mean()
    loss_g.backward()
    opt_g.step()


def test_two_optimizers_each_measured_around_its_own_step(tmp_path):
    torch.manual_seed(0)
    model = _Gan()
    opt_g = torch.optim.SGD(model.generator.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, [opt_g, opt_d], log_every=1)
    noise, real = torch.randn(8, 3), torch.randn(8, 4)
    before = [p.detach().clone() for p in model.parameters()]
    _gan_step(model, opt_g, opt_d, noise, real)
    writer.close()
    ratio = _read(tmp_path)["updates/ratio"]
    assert ratio.labels == [name for name, _ in model.named_parameters()]
    want = [(p.detach() - b).norm().item() / b.norm().item() for p, b in zip(model.parameters(), before)]
    np.testing.assert_allclose(ratio.values[0], want, rtol=1e-5)
    assert (ratio.values[0] > 0).all()  # the discriminator moved: never a false 0


def test_parameters_of_an_unwatched_optimizer_are_not_called_frozen(tmp_path):
    torch.manual_seed(0)
    model = _Gan()
    opt_g = torch.optim.SGD(model.generator.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, opt_g, log_every=1)
    _gan_step(model, opt_g, opt_d, torch.randn(8, 3), torch.randn(8, 4))
    writer.close()
    got = _read(tmp_path)
    assert got["updates/ratio"].labels == ["generator.weight", "generator.bias"]
    assert (got["updates/ratio"].values[0] > 0).all()
    # Gradients of every trainable parameter are still logged.
    assert len(got["gradients/norm"].labels) == 4


def test_one_parameter_in_two_watched_optimizers_is_an_error():
    model = _Gan()
    opt_a = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(model.generator.parameters(), lr=0.1)
    from torch_visualization.watch import plan

    with pytest.raises(ValueError, match="held by optimizers 0 and 1"):
        plan.build(model, [opt_a, opt_b], class_names=[], outputs=None, max_cells=(64, 64))
    with pytest.raises(TypeError, match="the list holds a str"):
        plan.check_arguments(model, [opt_a, "adam"], 1, None, None, 0)


# -- 5. a frozen eval-mode backbone --------------------------------------------------


def test_modules_in_eval_mode_inside_a_training_model_are_measured(tmp_path):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.BatchNorm1d(16)).eval()
    for param in backbone.parameters():
        param.requires_grad_(False)
    head = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    model = nn.Sequential(backbone, head)
    model.train()
    backbone.eval()  # frozen: stays in eval mode while the model trains
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)
    x = torch.randn(10, 4)
    optimizer.zero_grad()
    F.cross_entropy(model(x), torch.randint(0, 3, (10,))).backward()
    optimizer.step()
    writer.close()
    with torch.no_grad():
        hidden = backbone[1](backbone[0](x))
    got = _read(tmp_path)["activations/zero_fraction"]
    assert got.labels == ["0.1", "1.1"]
    assert got.values[0][0] == pytest.approx(float((hidden == 0).float().mean()))
    assert np.isfinite(got.values[0]).all()


# -- 6. regression heads -------------------------------------------------------------


def test_a_regression_head_gets_no_pie_and_one_warning(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))  # 3 targets, not classes
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)
    with pytest.warns(RuntimeWarning, match="outputs='classes'") as caught:
        for _ in range(3):
            optimizer.zero_grad()
            F.mse_loss(model(torch.randn(5, 4)), torch.randn(5, 3)).backward()
            optimizer.step()
    writer.close()
    assert sum("outputs/classes" in str(w.message) for w in caught) == 1
    assert "outputs/classes" not in _read(tmp_path)


def test_outputs_classes_turns_the_pie_on(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, outputs="classes")
    x = torch.randn(5, 4)
    optimizer.zero_grad()
    out = model(x)
    F.cross_entropy(out, torch.zeros(5, dtype=torch.long)).backward()
    optimizer.step()
    writer.close()
    np.testing.assert_allclose(_read(tmp_path)["outputs/classes"].values[0],
                               out.detach().softmax(1).mean(0).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="outputs must be one of"):
        SummaryWriter(str(tmp_path / "other")).watch(nn.Linear(2, 2), outputs="logits")


# -- 7. FSDP1 ----------------------------------------------------------------------


def test_fsdp1_is_refused_with_a_clear_error(tmp_path):
    script = textwrap.dedent("""
        import os, sys, torch, torch.distributed as dist
        from torch.distributed.fsdp import FullyShardedDataParallel
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
        dist.init_process_group("gloo", rank=0, world_size=1)
        model = FullyShardedDataParallel(
            torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)),
            use_orig_params=True, device_id=torch.device("cpu"))
        from torch_visualization import SummaryWriter
        writer = SummaryWriter(sys.argv[1])
        try:
            writer.watch(model, torch.optim.SGD(model.parameters(), lr=0.1))
        except ValueError as error:
            print("REFUSED:", error)
        finally:
            dist.destroy_process_group()
    """)
    from conftest import free_port

    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run"), str(free_port())],
                          capture_output=True, text=True, timeout=120)
    assert "REFUSED: watch: the model is wrapped in FullyShardedDataParallel (FSDP1)" in done.stdout, \
        done.stdout + done.stderr
    assert "fully_shard" in done.stdout


# -- 8. resuming ---------------------------------------------------------------------


def test_a_resumed_run_continues_the_step_axis(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def train(writer, first, last):
        for step in range(first, last):
            optimizer.zero_grad()
            loss = model(torch.randn(5, 4)).pow(2).mean()
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)

    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=5)
    train(writer, 0, 12)
    writer.close()
    assert handle.step == 12
    # A new process resumes from a checkpoint taken at global step 12.
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=5, start_step=12)
    train(writer, 12, 21)
    writer.close()
    assert handle.step == 21
    assert _read(tmp_path)["gradients/norm"].steps == [0, 5, 10, 15, 20]
    with pytest.raises(ValueError, match="start_step must be >= 0"):
        SummaryWriter(str(tmp_path / "x")).watch(model, optimizer, start_step=-1)


# -- tied and sparse parameters --------------------------------------------------------


class _TinyLm(nn.Module):
    def __init__(self, sparse=False):
        super().__init__()
        self.embed = nn.Embedding(20, 8, sparse=sparse)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.embed(tokens))))


def test_tied_weights_are_logged_once_under_their_first_name(tmp_path):
    torch.manual_seed(0)
    model = _TinyLm()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1)
    tokens = torch.randint(0, 20, (4, 6))
    optimizer.zero_grad()
    F.cross_entropy(model(tokens).reshape(-1, 20), tokens.reshape(-1)).backward()
    grad = model.embed.weight.grad.norm().item()
    optimizer.step()
    writer.close()
    got = _read(tmp_path)
    assert "weights/embed.weight" in got and "weights/head.weight" not in got
    assert got["gradients/norm"].labels == ["embed.weight", "mix.weight", "mix.bias"]
    assert got["gradients/norm"].values[0][0] == pytest.approx(grad, rel=1e-6)
    assert handle._plan.tied == {"head.weight": "embed.weight"}


def test_sparse_embedding_gradients_are_summarised(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 4, sparse=True), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)
    tokens = torch.tensor([1, 3, 3, 7])
    optimizer.zero_grad()
    model(tokens).sum().backward()
    rows = model[0].weight.grad.coalesce().values()
    optimizer.step()
    writer.close()
    got = _read(tmp_path)
    assert got["gradients/norm"].values[0][0] == pytest.approx(rows.norm().item(), rel=1e-6)
    assert got["gradients/max_abs"].values[0][0] == pytest.approx(rows.abs().max().item(), rel=1e-6)
