"""The CPU's one-call parameter side (watch/cpu_pass.py): it serves the
common case with the reference values, and every case it does not take
(missing, sparse or half-precision gradients, several optimizers, moved or
re-typed parameters, channels-last weights) goes down the general path with
the same values as the per-kind kernels and as PyTorch ops."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from test_watch import CLASSES, assert_logged_equals, make_batches, reference, run_watched
from test_watch_replay import build_missing_gradient, build_sparse, build_two_optimizers
from torch_visualization import SummaryWriter, fused, read
from torch_visualization.watch import cpu_pass
from torch_visualization.watch import reducer as watch_reducer

pytestmark = pytest.mark.skipif(not fused.available(), reason="the C kernels are not built")

# The three ways a CPU logging step can measure the parameters.
PATHS = {
    "pass": dict(cpu_pass=True, kernels=True),
    "general": dict(cpu_pass=False, kernels=True),
    "pytorch": dict(cpu_pass=False, kernels=False),
}


def _runs(tmp_path, monkeypatch, build, steps=4):
    """The same training watched down each of `PATHS`: `{path: (handle, values)}`."""
    out = {}
    for name, switches in PATHS.items():
        monkeypatch.setattr(watch_reducer, "CPU_PASS", switches["cpu_pass"])
        monkeypatch.setattr(fused, "ENABLED", switches["kernels"])
        model, optimizers, step = build()
        writer = SummaryWriter(str(tmp_path / name))
        handle = writer.watch(model, optimizers, log_every=1, outputs="classes")
        for index in range(steps):
            step(index)
        writer.close()
        assert handle._failures == 0, name  # no logging step failed
        out[name] = (handle, read(str(tmp_path))[name])
    return out


def _assert_same_values(runs):
    want = runs["pytorch"][1]
    for name in ("pass", "general"):
        got = runs[name][1]
        assert set(got) == set(want), name
        for tag in want:
            assert got[tag].steps == want[tag].steps, (name, tag)
            for a, b in zip(got[tag].values, want[tag].values):
                # Heatmaps are stored as float16: a last-bit difference of a
                # cell may round to the neighbouring float16 value.
                rtol = 2.0 ** -10 if want[tag].kind == "heatmap" else 1e-5
                np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                           rtol=rtol, atol=1e-6, err_msg="%s %s" % (name, tag))


def _served(runs):
    replay = runs["pass"][0]._reducer.replay
    return None if replay is None else replay.runs


def _simple(modify=None, parameters=None):
    """A small MLP and SGD; `modify(model, index)` runs before each step."""

    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        optimizer = torch.optim.SGD(parameters(model) if parameters else model.parameters(), lr=0.1,
                                    momentum=0.9)
        batches = make_batches(4)

        def step(index):
            if modify is not None:
                modify(model, index)
            optimizer.zero_grad()
            model(batches[index][0][:, :6]).square().mean().backward()
            optimizer.step()

        return model, optimizer, step

    return build


def test_the_pass_serves_every_logging_step_with_the_reference_values(tmp_path):
    handle, got = run_watched(str(tmp_path / "run"), steps=5, log_every=2, class_names=CLASSES)
    assert isinstance(handle._reducer.replay, cpu_pass.CpuParameterPass)
    assert handle._reducer.replay.runs == 3  # steps 0, 2 and 4
    assert_logged_equals(got, reference(steps=5, log_every=2))


def test_frozen_weights_are_pooled_in_the_same_call(tmp_path, monkeypatch):
    def freeze_first(model):
        model[0].requires_grad_(False)
        return [p for p in model.parameters() if p.requires_grad]

    runs = _runs(tmp_path, monkeypatch, _simple(parameters=freeze_first))
    assert _served(runs) == 4
    assert "weights/0.weight" in runs["pass"][1]  # the frozen layer's heatmap
    _assert_same_values(runs)


def test_a_missing_gradient_falls_back_for_that_step(tmp_path, monkeypatch):
    runs = _runs(tmp_path, monkeypatch, build_missing_gradient)
    assert _served(runs) == 2  # steps 0 and 2; 1 and 3 took the general path
    _assert_same_values(runs)


def test_sparse_gradients_take_the_general_path(tmp_path, monkeypatch):
    runs = _runs(tmp_path, monkeypatch, build_sparse)
    assert _served(runs) == 0
    _assert_same_values(runs)


def test_a_moved_parameter_is_planned_again(tmp_path, monkeypatch):
    def move(model, index):
        if index == 2:  # new storage under the same Parameter (as load_state_dict(assign=True) may)
            with torch.no_grad():
                model[0].weight.data = model[0].weight.data.clone() * 0.5

    runs = _runs(tmp_path, monkeypatch, _simple(modify=move))
    assert _served(runs) == 4
    _assert_same_values(runs)
    # The heatmap after the move shows the halved weights: the pass read the new storage.
    series = runs["pass"][1]["weights/0.weight"]
    before, after = (np.asarray(series.values[series.steps.index(s)], dtype=float) for s in (1, 2))
    assert np.abs(after).mean() < 0.6 * np.abs(before).mean()


def test_parameters_retyped_after_watch_take_the_general_path(tmp_path, monkeypatch):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = make_batches(4)

        def step(index):
            if index == 2:
                model.double()
            x = batches[index][0][:, :6]
            optimizer.zero_grad()
            model(x.double() if index >= 2 else x).square().mean().backward()
            optimizer.step()

        return model, optimizer, step

    runs = _runs(tmp_path, monkeypatch, build)
    assert _served(runs) == 2  # float32 steps 0 and 1; float64 ones took the general path
    _assert_same_values(runs)


def test_half_precision_and_channels_last_models_take_the_general_path(tmp_path, monkeypatch):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        model = model.to(memory_format=torch.channels_last)  # the conv weight is not C-contiguous
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        images = torch.randn(4, 2, 3, 6, 6, generator=torch.Generator().manual_seed(3))

        def step(index):
            optimizer.zero_grad()
            model(images[index].contiguous(memory_format=torch.channels_last)).square().mean().backward()
            optimizer.step()

        return model, optimizer, step

    runs = _runs(tmp_path, monkeypatch, build)
    assert runs["pass"][0]._reducer.replay is None
    _assert_same_values(runs)
    half = nn.Linear(4, 3).to(torch.bfloat16)
    assert not cpu_pass.applies(list(half.parameters()), list(half.parameters()))


def test_several_optimizers_take_the_general_path(tmp_path, monkeypatch):
    runs = _runs(tmp_path, monkeypatch, build_two_optimizers)
    assert runs["pass"][0]._reducer.replay is None
    _assert_same_values(runs)


def test_the_kernel_checks_what_it_is_given():
    from torch_visualization import _fused

    grads = [np.ones(6, np.float32)]
    olds, news = [np.ones(6, np.float32)], [np.zeros(6, np.float32)]
    out = np.empty(6 + 4, np.float32)
    _fused.parameter_statistics(grads, olds, news, out, [(6, 2, 2, 2)], [])
    assert out[:6].tolist() == [6.0, 6.0, 1.0, 0.0, 6.0, 6.0]
    assert out[6:].tolist() == [0.0] * 4  # news pooled: 2 x 3 -> 2 x 2 bins of zeros
    with pytest.raises(ValueError, match="overruns out"):
        _fused.parameter_statistics(grads, olds, news, out, [(8, 2, 2, 2)], [])
    with pytest.raises(ValueError, match="parameter 0 has 6 gradient, 6 old and 5 new"):
        _fused.parameter_statistics(grads, olds, [np.zeros(5, np.float32)], out, [None], [])
    with pytest.raises(fused.Unreadable, match="float32"):
        _fused.parameter_statistics([np.ones(6, np.float16)], olds, news, out, [None], [])
    with pytest.raises(fused.Unreadable, match="contiguous"):
        _fused.parameter_statistics([np.ones((6, 2), np.float32)[:, 0]], olds, news, out, [None], [])
    pooled_only = np.arange(6, dtype=np.float32)
    _fused.parameter_statistics([], [], [], out, [], [(pooled_only, 0, 2, 1, 3)])
    assert out[:3].tolist() == [3.0, 5.0, 7.0]  # rows summed (2 divides 2), columns kept


def test_kernels_switched_off_after_watch_stop_the_pass(tmp_path, monkeypatch):
    model, optimizer, step = _simple()()
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1, outputs="classes")
    step(0)
    step(1)
    monkeypatch.setattr(fused, "ENABLED", False)  # e.g. benchmarks/overhead.py's torchops mode
    step(2)
    step(3)
    writer.close()
    assert handle._reducer.replay.runs == 2
    assert read(str(tmp_path))["run"]["gradients/norm"].steps == [0, 1, 2, 3]


def _logged(logdir, model_fn, batches, micro, eager, monkeypatch):
    """What a watch logs of three steps; `eager`: every packet built on the
    training thread. Returns `(values, [(step, laid out on the training
    thread?)] of each packet.Later)`."""
    from torch_visualization.watch import packet as watch_packet

    later_steps, training = [], threading.current_thread()
    real_built = watch_packet.Later.built
    monkeypatch.setattr(watch_packet.Later, "built", lambda self: later_steps.append(
        (self.step, threading.current_thread() is training)) or real_built(self))
    if eager:
        class Now(watch_packet.Later):  # lays the packet out as it is handed over
            def __init__(self, step, walltime, make):
                packet = make()
                later_steps.append((step, threading.current_thread() is training))
                super().__init__(step, walltime, lambda: packet)

            built = real_built

        monkeypatch.setattr(watch_packet, "Later", Now)
    torch.manual_seed(0)
    model = model_fn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    writer = SummaryWriter(logdir)
    handle = writer.watch(model, optimizer, log_every=1, outputs="classes")
    for index in range(3):
        optimizer.zero_grad()
        for part in range(micro):
            model(batches[index * micro + part]).square().mean().backward()
        optimizer.step()
    writer.close()
    monkeypatch.undo()
    assert handle._failures == 0
    return read(os.path.dirname(logdir))[os.path.basename(logdir)], later_steps


def test_packets_laid_out_on_the_writer_thread_log_what_the_training_thread_would(tmp_path, monkeypatch):
    """A CPU step whose parameter side the one-call pass served hands the
    writer thread its packet to lay out (`packet.Later`): what is logged is
    exactly what building it on the training thread logs, with one forward
    per step, with two (gradient accumulation), and for a sequence model
    (sequence statistics, the class pie of LM logits): nothing of an ended
    step changes after the hand-over."""
    generator = torch.Generator().manual_seed(4)
    cases = {
        "mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 4)),
                [torch.randn(7, 6, generator=generator) for _ in range(6)]),
        "lm": (lambda: nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 11)),
               [torch.randint(0, 11, (2, 5), generator=generator) for _ in range(6)]),
    }
    for name, (model_fn, batches) in cases.items():
        for micro in (1, 2):
            run = "%s%d" % (name, micro)
            deferred, steps = _logged(str(tmp_path / "later" / run), model_fn, batches, micro, False,
                                      monkeypatch)
            assert steps == [(0, False), (1, False), (2, False)], run  # by the writer thread's jobs
            eager, steps = _logged(str(tmp_path / "eager" / run), model_fn, batches, micro, True,
                                   monkeypatch)
            assert steps == [(0, True), (1, True), (2, True)], run
            assert set(deferred) == set(eager), run
            for tag in eager:
                assert deferred[tag].steps == eager[tag].steps == [0, 1, 2], (run, tag)
                for a, b in zip(deferred[tag].values, eager[tag].values):
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg="%s %s" % (run, tag))
