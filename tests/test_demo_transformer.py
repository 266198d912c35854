"""The character-level transformer demo (demo/transformer.py), shortened.

Trains its two runs for 60 steps into tmp_path (the demo's own model, data,
recipes and seed; only the number of steps is smaller) and checks what the
README promises: both runs and their loss scalars are written, the
`unstable` run's loss spikes and its attention entropy collapses while the
`stable` run's does neither (measured from the model with our own
softmax(QK^T * scale + mask), and as logged by watch()), and the runs are
deterministic.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from torch_visualization import read
from torch_visualization.watch import plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
LOG_EVERY = 10
SEED = 0


def _load_demo():
    spec = importlib.util.spec_from_file_location(
        "demo_transformer", os.path.join(REPO, "demo", "transformer.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


def _train(logdir, name, ids, vocab):
    """One run as the demo trains it (shortened); returns (losses, {step: entropy})."""
    probe_x = ids[:64][None]
    entropies = {}

    def probe(step, model):
        entropies[step] = demo.attention_entropy(model, probe_x)

    losses = demo.train_run(
        name, ids, vocab, str(logdir), STEPS, LOG_EVERY, 32, 64, SEED, probe=probe
    )
    return losses, entropies


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs trained once; `{name: (losses, entropies)}` and the logdir."""
    threads = torch.get_num_threads()
    # As the demo's main() does (fast and stable on a shared 2-core machine).
    torch.set_num_threads(1)
    try:
        ids, chars = demo.load_corpus()
        logdir = tmp_path_factory.mktemp("transformer_demo")
        result = {name: _train(logdir, name, ids, len(chars)) for name in demo.RUNS}
        yield logdir, result, (ids, chars)
    finally:
        torch.set_num_threads(threads)


def _scalars(logdir, run, tag):
    acc = event_accumulator.EventAccumulator(
        str(logdir / run), size_guidance={event_accumulator.SCALARS: 0}
    )
    acc.Reload()
    events = acc.Scalars(tag)
    return [e.step for e in events], np.array([e.value for e in events], dtype=np.float32)


def test_corpus_is_bundled_text_of_a_small_vocabulary():
    ids, chars = demo.load_corpus()
    assert 50_000 <= len(ids) <= 150_000
    assert 40 <= len(chars) <= 100
    assert all(c == "\n" or " " <= c <= "~" for c in chars)


def test_both_runs_are_written_with_the_training_loss(runs):
    logdir, result, _ = runs
    charts = read(str(logdir))
    assert set(charts) == {"stable", "unstable"}
    for name, (losses, _) in result.items():
        steps, values = _scalars(logdir, name, "loss/train")
        assert steps == list(range(STEPS))
        # Logged as float32: exactly the losses train_run returned.
        np.testing.assert_array_equal(values, np.float32(losses))
        # watch() logged the model itself at steps 0, 10, ..., 50.
        norm = charts[name]["gradients/norm"]
        assert norm.steps == list(range(0, STEPS, LOG_EVERY))
        assert "blocks.0.attn.qkv.weight" in norm.labels


def test_unstable_loss_spikes_and_stable_loss_does_not(runs):
    _, result, (_, chars) = runs
    uniform = math.log(len(chars))

    def worst_jump(losses):
        """Largest loss / lowest loss of the steps before it."""
        losses = np.asarray(losses)
        return float(np.max(losses[1:] / np.minimum.accumulate(losses)[:-1]))

    stable, _ = result["stable"]
    unstable, _ = result["unstable"]
    # Both start at the loss of a uniform guess over the characters.
    assert stable[0] == pytest.approx(uniform, abs=0.05)
    assert unstable[0] == pytest.approx(uniform, abs=0.05)
    # unstable: within the first steps the loss jumps far above where it
    # started and to more than twice the lowest loss seen before it.
    assert max(unstable[1:10]) > uniform + 2.0
    assert worst_jump(unstable) > 2.0
    # stable: no step is more than 15 % above the best before it, and the
    # loss only goes down from where it started.
    assert worst_jump(stable) < 1.15
    assert max(stable[1:]) < stable[0]
    assert np.mean(stable[-10:]) < np.mean(stable[:10]) - 0.8


def test_unstable_attention_entropy_collapses(runs):
    _, result, _ = runs
    _, stable = result["stable"]
    _, unstable = result["unstable"]
    assert sorted(stable) == sorted(unstable) == list(range(0, STEPS, LOG_EVERY))
    for step in range(LOG_EVERY, STEPS, LOG_EVERY):
        # [layers, heads]: every head of the first block attends to about one
        # character (0 nats) in the unstable run ...
        assert unstable[step][0].max() < 0.1, (step, unstable[step])
        # ... while every head of the stable run spreads its attention
        # (uniform over the prefix: 3.2 nats on average).
        assert stable[step].min() > 2.5, (step, stable[step])
        assert unstable[step].mean() < stable[step].mean() / 2


def test_reference_attention_is_what_the_model_computes(runs):
    """attention_probabilities (the tests' measure) reproduces each block's
    SDPA output from the same inputs."""
    _, _, (ids, chars) = runs
    model, _ = demo.build("unstable", len(chars), 64, SEED)
    x = ids[:64][None]
    inputs, outputs = [], []

    def keep(module, args, out):
        inputs.append(args[0])
        outputs.append(out)

    for block in model.blocks:
        block.attn.register_forward_hook(keep)
    maps = demo.attention_probabilities(model, x)
    assert len(maps) == len(model.blocks) == 2
    for block, p, h, out in zip(model.blocks, maps, inputs, outputs):
        assert p.shape == (4, 64, 64)
        torch.testing.assert_close(p.sum(dim=-1), torch.ones(4, 64))
        assert torch.all(p.triu(1) == 0)  # causal: no query sees a later key
        _, _, v = block.attn.split_heads(h)
        mixed = (p @ v[0]).transpose(0, 1).reshape(1, 64, -1)
        with torch.no_grad():
            torch.testing.assert_close(block.attn.proj(mixed), out, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    not hasattr(plan, "TAG_ENTROPY"), reason="watch() does not log attention entropy"
)
def test_logged_attention_shows_the_collapse(runs):
    logdir, _, _ = runs
    charts = read(str(logdir))
    labels = ["blocks.%d.attn/head%d" % (b, h) for b in range(2) for h in range(4)]
    entropy = {name: charts[name][plan.TAG_ENTROPY] for name in ("stable", "unstable")}
    for series in entropy.values():
        assert series.labels == labels
        assert series.steps == list(range(0, STEPS, LOG_EVERY))
    stable = np.stack(entropy["stable"].values)
    unstable = np.stack(entropy["unstable"].values)
    # Step 0 (before any update): both near uniform attention.
    assert stable[0].min() > 3.0 and unstable[0].min() > 3.0
    # From step 10 on: the first block's heads collapsed in unstable only.
    assert (unstable[1:, :4] < 0.1).all(), unstable
    assert (stable[1:] > 2.5).all(), stable
    # The maps themselves: a collapsed head puts (almost) all of each
    # query's weight on one key.
    maps = charts["unstable"][plan.TAG_ATTENTION + "blocks.0.attn"]
    assert maps.values[-1].shape == (4, 64, 64)
    assert maps.values[-1].max(axis=-1).mean() > 0.95
    stable_maps = charts["stable"][plan.TAG_ATTENTION + "blocks.0.attn"]
    assert stable_maps.values[-1].max(axis=-1).mean() < 0.5


def test_runs_are_deterministic(runs, tmp_path):
    logdir, result, (ids, chars) = runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses, entropies = _train(tmp_path, "unstable", ids, len(chars))
    finally:
        torch.set_num_threads(threads)
    assert losses == result["unstable"][0]
    for step, entropy in result["unstable"][1].items():
        assert torch.equal(entropies[step], entropy)
    np.testing.assert_array_equal(
        _scalars(tmp_path, "unstable", "loss/train")[1],
        _scalars(logdir, "unstable", "loss/train")[1],
    )


def test_command_line_trains_both_runs(tmp_path):
    logdir = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "demo", "transformer.py"),
         "--logdir", str(logdir), "--steps", "3", "--log-every", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "stable" in done.stdout and "unstable" in done.stdout
    charts = read(str(logdir))
    assert set(charts) == {"stable", "unstable"}
    for name in charts:
        assert _scalars(logdir, name, "loss/train")[0] == [0, 1, 2]
        assert charts[name]["gradients/norm"].steps == [0, 2]
