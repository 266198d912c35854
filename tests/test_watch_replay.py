"""The parameter side planned once and replayed (watch/replay.py) on CPU
tensors: the accelerator path's test seam runs the replayed reductions
eagerly (the CUDA graph itself is tested in tests/test_watch_cuda.py), and
every case outside the common one falls back to the eager per-group path
with the same values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import load_benchmark
from test_watch import CLASSES, assert_logged_equals, make_batches, reference, run_watched
from torch_visualization import SummaryWriter, pooling, read
from torch_visualization.watch import packet as packets
from torch_visualization.watch import replay as replays
from torch_visualization.watch import reducer as watch_reducer


@pytest.fixture
def accelerator_path(monkeypatch):
    monkeypatch.setattr(watch_reducer, "ACCELERATOR_PATH_ON_CPU", True)


def test_replay_serves_every_logging_step_with_the_reference_values(tmp_path, accelerator_path):
    handle, got = run_watched(str(tmp_path / "run"), steps=5, log_every=2, class_names=CLASSES)
    replay = handle._reducer.replay
    assert replay is not None
    assert replay.runs == 3  # steps 0, 2 and 4
    assert not replay.captured  # graphs exist on CUDA only
    assert_logged_equals(got, reference(steps=5, log_every=2))


def test_reductions_equal_the_per_part_computations():
    torch.manual_seed(0)
    params = [torch.randn(70, 12), torch.randn(70), torch.randn(4, 3, 3, 3)]
    grads = [torch.randn_like(p) for p in params]
    grads[1][3] = float("nan")
    grads[2][0, 0, 0, :2] = float("inf")
    before = [p + 0.01 * torch.randn_like(p) for p in params]
    expected_before = [b.clone() for b in before]
    heatmaps = pooling.HeatmapPlan(params, batch=True)
    stats, nonfinite, updates, grids = replays.reductions(grads, params, before, heatmaps, params)
    for index, grad in enumerate(grads):
        finite = torch.isfinite(grad).all()
        if finite:
            assert stats[index] == pytest.approx(float((grad.double() ** 2).sum()), rel=1e-5)
            assert stats[3 + index] == pytest.approx(float(grad.double().abs().sum()), rel=1e-5)
            assert stats[6 + index] == float(grad.abs().max())
        assert nonfinite[index] == int((~torch.isfinite(grad)).sum())
    count = len(params)
    for index, (old, new) in enumerate(zip(expected_before, params)):
        assert updates[index] == pytest.approx(float((old.double() ** 2).sum()), rel=1e-5)
        assert updates[count + index] == pytest.approx(float(((old - new).double() ** 2).sum()),
                                                       rel=1e-4)
    assert torch.equal(grids, torch.cat(heatmaps.flat_grids(params)))


def test_a_block_keeps_its_segment_names():
    builder = packets.PacketBuilder()
    builder.add("first", torch.tensor([1.0, 2.0]))
    builder.add_block(torch.arange(5.0), {"a": (0, 2), "b": (2, 3)})
    buffer, _, segments = builder.build(torch.device("cpu"))
    packet = packets.Packet(step=0, walltime=0.0, buffer=buffer, ready=None, segments=segments,
                            gradient_groups=[], update_groups=[], activation_entries=[],
                            module_entries=[], attention_entries=[], class_samples=0,
                            heatmaps=[], heatmap_scales=None)
    array = packet.host_array()
    assert packet.segment("first", array).tolist() == [1.0, 2.0]
    assert packet.segment("a", array).tolist() == [0.0, 1.0]
    assert packet.segment("b", array).tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="added twice"):
        builder.add_block(torch.zeros(1), {"a": (0, 1)})


def _two_runs(tmp_path, monkeypatch, build, steps=4):
    """The same training watched down the accelerator path and down the CPU
    kernels (which never replay): `(handle, values)` of each."""
    out = []
    for accelerated in (True, False):
        monkeypatch.setattr(watch_reducer, "ACCELERATOR_PATH_ON_CPU", accelerated)
        model, optimizers, step = build()
        logdir = tmp_path / ("accelerated" if accelerated else "cpu")
        writer = SummaryWriter(str(logdir))
        handle = writer.watch(model, optimizers, log_every=1)
        for index in range(steps):
            step(index)
        writer.close()
        out.append((handle, read(str(tmp_path))[logdir.name]))
    return out


def _assert_same_values(first, second):
    assert set(first) == set(second)
    for tag in first:
        assert first[tag].steps == second[tag].steps, tag
        for a, b in zip(first[tag].values, second[tag].values):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=tag)


def build_two_optimizers():
    """A model whose two layers two optimizers step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    first = torch.optim.SGD(model[0].parameters(), lr=0.1)
    second = torch.optim.Adam(model[2].parameters(), lr=0.01)
    batches = make_batches(4)

    def step(index):
        x = batches[index][0][:, :6]
        model.zero_grad()
        model(x).square().mean().backward()
        first.step()
        second.step()

    return model, [first, second], step


def test_two_optimizers_take_the_eager_path(tmp_path, monkeypatch):
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, build_two_optimizers)
    assert accelerated._reducer.replay is None
    _assert_same_values(got, want)


def build_missing_gradient():
    """A model whose last layer is used on even steps only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    extra = nn.Linear(3, 2)
    model.add_module("unused_on_odd_steps", extra)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = make_batches(4)

    def step(index):
        x = batches[index][0][:, :6]
        optimizer.zero_grad()
        out = model[2](model[1](model[0](x)))
        if index % 2 == 0:
            out = extra(out)
        F.softplus(out).mean().backward()
        optimizer.step()

    return model, optimizer, step


def test_a_missing_gradient_falls_back_for_that_step(tmp_path, monkeypatch):
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, build_missing_gradient)
    assert accelerated._reducer.replay.runs == 2  # steps 0 and 2; 1 and 3 ran eagerly
    _assert_same_values(got, want)


def build_sparse():
    """A model with a sparse embedding gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 6, sparse=True), nn.Flatten(), nn.Linear(18, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(0, 20, (4, 8, 3), generator=torch.Generator().manual_seed(2))

    def step(index):
        optimizer.zero_grad()
        model(tokens[index]).square().mean().backward()
        optimizer.step()

    return model, optimizer, step


def test_sparse_gradients_fall_back_with_the_same_values(tmp_path, monkeypatch):
    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, build_sparse)
    assert accelerated._reducer.replay.runs == 0  # every step took the eager path
    _assert_same_values(got, want)


def test_bfloat16_parameters_are_replayed_with_the_same_values(tmp_path, monkeypatch):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).to(torch.bfloat16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = make_batches(4)

        def step(index):
            optimizer.zero_grad()
            model(batches[index][0][:, :6].to(torch.bfloat16)).float().square().mean().backward()
            optimizer.step()

        return model, optimizer, step

    (accelerated, got), (_, want) = _two_runs(tmp_path, monkeypatch, build)
    assert accelerated._reducer.replay.runs == 4
    _assert_same_values(got, want)


def test_a_logging_step_adds_at_most_40_host_calls_whatever_the_depth(tmp_path):
    """Issue 13's measurable target, counted exactly on the CPU
    (benchmarks/host_ops.py: the accelerator path on CPU tensors, a CUDA
    graph replay standing for the replayed function): at most 40 ATen
    calls added to a ResNet-50-shaped step, and no more with twice the
    layers. (Two sessions lost it unnoticed: fresh weight buffers made one
    call per parameter, the CPU packet's numpy build one per piece.)"""
    host_ops = load_benchmark("host_ops")
    threads = torch.get_num_threads()
    counts = []
    try:
        for depth in (1, 2):
            path = tmp_path / ("depth%d.json" % depth)
            host_ops.main(["--depth", str(depth), "--json", str(path)])
            counts.append(json.loads(path.read_text())["cuda_equivalent_added_calls"])
    finally:
        torch.set_num_threads(threads)
    assert counts[0] <= 40
    assert counts[1] == counts[0]
