"""writer.watch() on a CUDA device: the accelerator path (batched pooling,
device-side NaN/Inf counts, pinned non-blocking copy, event-synchronised
worker) against the same hand computations as tests/test_watch.py.

These tests need a GPU and skip without one (CI has none); they are run on a
GPU machine with `python -m pytest tests/test_watch_cuda.py`.
"""

from __future__ import annotations

import os
import warnings

# cuBLAS reads this when its first handle is made: with it (and
# torch.use_deterministic_algorithms) two identical runs give identical bits.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from test_watch import (  # noqa: E402
    CLASSES,
    assert_logged_equals,
    check_grad_scaler_gives_the_fp32_norms,
    check_gradients_and_weights_are_bit_identical,
    check_nonfinite_gradients_are_counted_kept_and_warned_once,
    make_batches,
    make_model,
    reference,
    run_watched,
    train,
)
from torch_visualization import SummaryWriter, read  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = "cuda"


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def test_every_tag_equals_its_reference_computation_on_cuda(tmp_path):
    _, got = run_watched(str(tmp_path / "run"), steps=5, log_every=2, device=CUDA,
                         class_names=CLASSES)
    for series in got.values():
        assert series.steps == [0, 2, 4]
    assert got["weights/0.weight"].values[0].shape == (64, 12)
    assert_logged_equals(got, reference(steps=5, log_every=2, device=CUDA))


def test_gradients_and_weights_are_bit_identical_with_and_without_watch_on_cuda(
    tmp_path, deterministic
):
    check_gradients_and_weights_are_bit_identical(tmp_path, CUDA)


def test_grad_scaler_gives_the_fp32_norms_on_cuda(tmp_path, deterministic):
    check_grad_scaler_gives_the_fp32_norms(tmp_path, CUDA)


def test_fp16_autocast_logs_the_unscaled_gradients_the_optimizer_used(tmp_path):
    model = make_model(CUDA)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)
    scaler = torch.amp.GradScaler("cuda")  # 65536: scaled norms would be huge
    expected = []
    for x, y in make_batches(3, CUDA):
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # After step(): the unscaled fp32 gradients the optimizer applied.
        expected.append([p.grad.norm().item() for p in model.parameters()])
    writer.close()
    norms = read(str(tmp_path))["run"]["gradients/norm"]
    assert norms.steps == [0, 1, 2]
    for step, values in zip(norms.steps, norms.values):
        np.testing.assert_allclose(values, expected[step], rtol=1e-5, err_msg=str(step))
        assert values.max() < 100  # not multiplied by the loss scale


def test_nonfinite_gradients_are_counted_on_the_device(tmp_path):
    check_nonfinite_gradients_are_counted_kept_and_warned_once(tmp_path, CUDA)


def test_a_logging_step_never_waits_for_the_device(tmp_path):
    """No .item(), no pageable copy, no stream sync on the training thread:
    with CUDA's sync debug mode set to "error", any of them would raise
    inside the logging step (reported as a failed logging step)."""
    model = make_model(CUDA)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = make_batches(4, CUDA)
    train(model, optimizer, batches[:1])  # optimizer state and cuBLAS set up unwatched
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1, class_names=CLASSES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("error")
        try:
            train(model, optimizer, batches[1:])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in caught if "logging step failed" in str(w.message)]
    assert handle.step == 3
    writer.close()
    got = read(str(tmp_path))["run"]
    for tag in ("gradients/norm", "gradients/nonfinite", "updates/ratio",
                "activations/zero_fraction", "outputs/classes", "weights/0.weight"):
        assert got[tag].steps == [0, 1, 2], tag


def test_the_parameter_side_is_replayed_from_one_cuda_graph(tmp_path):
    """The first logging step runs the reductions eagerly, the second
    captures them, every later one replays the graph: same values as the
    hand computations."""
    handle, got = run_watched(str(tmp_path / "run"), steps=5, log_every=1, device=CUDA,
                              class_names=CLASSES)
    replay = handle._reducer.replay
    assert replay is not None and replay.runs == 5
    assert replay.replays == 4  # steps 1 (captured there) to 4
    assert_logged_equals(got, reference(steps=5, log_every=1, device=CUDA))


def test_a_moved_parameter_is_captured_again(tmp_path, monkeypatch):
    """A parameter whose storage changes (param.data = ...) is read where it
    now lies: the graph is captured again, and the values equal those of
    the eager reductions."""
    from torch_visualization.watch import reducer as watch_reducer

    results = []
    for graphs in (True, False):
        monkeypatch.setattr(watch_reducer, "REPLAY_GRAPHS", graphs)
        model = make_model(CUDA)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        writer = SummaryWriter(str(tmp_path / ("graphs" if graphs else "eager")))
        handle = writer.watch(model, optimizer, log_every=1, class_names=CLASSES)
        batches = make_batches(6, CUDA)
        train(model, optimizer, batches[:3])
        with torch.no_grad():
            model[0].weight.data = model[0].weight.data.clone()
        train(model, optimizer, batches[3:])
        writer.close()
        results.append((handle._reducer.replay.replays, read(str(tmp_path))[
            "graphs" if graphs else "eager"]))
    (replayed, got), (eager_replays, want) = results
    assert eager_replays == 0
    assert replayed == 4  # steps 1, 2, then (eager at 3) 4 and 5
    for tag in want:
        for a, b in zip(got[tag].values, want[tag].values):
            np.testing.assert_array_equal(a, b, err_msg=tag)
