"""The adapter under faults: crashes, full disks, bad log dirs, big weights.

- Crash safety: a training process killed with SIGKILL while writing loses
  nothing that `flush()` covered; both loaders (and `read`) still read it.
- No interference: logging, by hand or with `watch()`, does not change
  training (bit-identical weights, same RNG state) and keeps no reference to
  the model once a watch is removed.
- Write failures (ENOSPC via /dev/full, any exception in TensorBoard's writer
  thread or in watch()'s thread) never reach the training loop: one
  RuntimeWarning, training goes on, and the number of lost events is
  reported at close().
- A log dir that cannot be written is an error at construction naming it.
- A 50,000 x 4,096 embedding weight is heatmapped without a second copy.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
import weakref

import numpy as np
import pytest
import torch
from werkzeug.test import Client

from conftest import http_get, make_wsgi_app, tensorboard_server
from torch_visualization import SummaryWriter, read, sink
from torch_visualization.watch import decode as watch_decode

PREFIX = "/data/plugin/torch_visualization"


# -- crash safety ------------------------------------------------------------------

_CRASHING_TRAINER = r"""
import sys
import numpy as np
import torch
from torch_visualization import SummaryWriter

logdir, flushed_steps = sys.argv[1], int(sys.argv[2])
writer = SummaryWriter(logdir)
step = 0
while True:
    writer.add_class_pie("pie", np.array([step + 1.0, 1.0, 2.0]), step, class_names=["a", "b", "c"])
    writer.add_weight_heatmap("heat", torch.full((4, 4), float(step)), step)
    writer.add_scalar("loss", float(step), step)
    step += 1
    if step == flushed_steps:
        writer.flush()
        print("flushed", flush=True)
    if step == flushed_steps + 200:
        # Still writing (unflushed) when the parent kills us.
        print("writing", flush=True)
"""

FLUSHED = 300


@pytest.fixture(scope="module")
def crashed_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("crash")
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_TRAINER, str(logdir / "run"), str(FLUSHED)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "flushed"
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return logdir


def _check_crash_steps(steps, what):
    # Every flushed step, and no holes: what is there is a prefix of the run.
    assert steps[:FLUSHED] == list(range(FLUSHED)), what
    assert steps == list(range(len(steps))), what


def test_flushed_steps_survive_sigkill_read_api(crashed_logdir):
    series = read(crashed_logdir)["run"]
    _check_crash_steps(series["pie"].steps, "pie")
    _check_crash_steps(series["heat"].steps, "heat")
    for step in (0, FLUSHED - 1):
        np.testing.assert_array_equal(series["pie"].values[step], [step + 1.0, 1.0, 2.0])
        np.testing.assert_array_equal(series["heat"].values[step], np.full((4, 4), float(step)))


def _crash_data(get):
    for tag in ("pie", "heat"):
        status, body = get(PREFIX + "/data?" + urllib.parse.urlencode({"run": "run", "tag": tag}))
        assert status == 200, body
        _check_crash_steps(body["steps"], tag)
        status, body = get(PREFIX + "/data?" + urllib.parse.urlencode(
            {"run": "run", "tag": tag, "step": FLUSHED - 1}))
        assert status == 200, body
        assert np.ravel(body["values"])[0] == (FLUSHED if tag == "pie" else FLUSHED - 1)


def test_flushed_steps_survive_sigkill_python_loader(crashed_logdir):
    client = Client(make_wsgi_app(crashed_logdir))

    def get(url):
        response = client.get(url)
        return response.status_code, response.json if response.status_code == 200 else response.data

    _crash_data(get)


def test_flushed_steps_survive_sigkill_rustboard(crashed_logdir):
    with tensorboard_server(crashed_logdir, "--load_fast=true") as server:
        server.wait_for_tags(["run"])

        def get(url):
            status, body = http_get(server.url + url)
            return status, json.loads(body) if status == 200 else body

        # RustBoard loads in the background: wait until the flushed steps are in.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = get(PREFIX + "/data?run=run&tag=heat")
            if status == 200 and len(body["steps"]) >= FLUSHED:
                break
            time.sleep(0.5)
        _crash_data(get)


# -- no interference ------------------------------------------------------------------

def _train(logdir=None, steps=30, watch=False):
    """A small classifier with dropout and shuffling (both use the RNG)."""
    torch.manual_seed(1234)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    writer = SummaryWriter(logdir) if logdir else None
    if watch:
        writer.watch(model, optimizer, log_every=1, class_names=["a", "b", "c"])
        logdir = None  # watch() does the logging: no manual calls below
    for step in range(steps):
        batch = torch.randperm(64)[:16]
        logits = model(x[batch])
        loss = torch.nn.functional.cross_entropy(logits, y[batch])
        optimizer.zero_grad()
        loss.backward()
        if logdir is not None:
            writer.add_scalar("loss", loss, step)
            writer.add_weight_heatmap("w0", model[0].weight, step, max_cells=(4, 4))
            writer.add_class_pie("pie", logits.softmax(-1), step, class_names=["a", "b", "c"])
            writer.add_gradient_bars("grads", model, step)
            writer.add_scatter("feat", model[0](x[batch])[:, :2], step, labels=y[batch],
                               class_names=["a", "b", "c"])
            writer.add_confusion_matrix("cm", logits, y[batch], step, class_names=["a", "b", "c"])
        optimizer.step()
    if writer is not None:
        writer.close()
    return model, torch.get_rng_state()


def test_logging_does_not_change_training(tmp_path):
    plain, plain_rng = _train()
    logged, logged_rng = _train(str(tmp_path / "run"))
    for (name, a), (_, b) in zip(plain.state_dict().items(), logged.state_dict().items()):
        assert torch.equal(a, b), name  # bit for bit
    assert torch.equal(plain_rng, logged_rng), "logging consumed random numbers"
    assert len(read(tmp_path)["run"]["grads"].steps) == 30


def test_watch_does_not_change_training(tmp_path):
    plain, plain_rng = _train()
    watched, watched_rng = _train(str(tmp_path / "run"), watch=True)
    for (name, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(plain_rng, watched_rng), "watch() consumed random numbers"
    assert len(read(tmp_path)["run"]["gradients/norm"].steps) == 30


def test_logging_keeps_no_reference_to_the_model(tmp_path):
    model = torch.nn.Linear(4, 2)
    model(torch.randn(3, 4)).sum().backward()
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_gradient_bars("grads", model, 0)
    writer.add_weight_heatmap("w", model.weight, 0)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "the writer keeps the model alive: %s" % gc.get_referrers(ref())[:3]
    writer.close()


# -- write failures during training ---------------------------------------------------

class _ThreadErrors:
    """Collects exceptions that escape any thread (TensorBoard's writer thread)."""

    def __enter__(self):
        self.errors = []
        self._old = threading.excepthook
        threading.excepthook = lambda args: self.errors.append(args.exc_value)
        return self

    def __exit__(self, *exc):
        threading.excepthook = self._old


def _event_file(writer):
    """Our event file (the sink's; the stock scalars have torch's own)."""
    return writer._sink._file.path


def _fill_disk(writer):
    """The event file stays open: its descriptor now refers to /dev/full, so
    the writer thread's next write() fails with ENOSPC, as on a full disk."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, writer._sink._file._file.fileno())
    finally:
        os.close(full)


def _train_with_failing_disk(tmp_path, break_file):
    """Logs 5 steps, breaks the event file, logs 100 more; returns the warnings."""
    with warnings.catch_warnings(record=True) as caught, _ThreadErrors() as thread:
        warnings.simplefilter("always")
        writer = SummaryWriter(str(tmp_path / "run"))
        for step in range(5):
            writer.add_class_pie("pie", np.array([1.0, step + 1.0]), step)
        writer.flush()
        break_file(writer)
        for step in range(5, 105):  # must not raise
            writer.add_class_pie("pie", np.array([1.0, step + 1.0]), step)
            writer.add_scalar("loss", 1.0, step)
        writer.flush()
        writer.close()
    assert thread.errors == [], thread.errors
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return messages


def test_disk_full_is_a_warning_not_a_crash(tmp_path):
    messages = _train_with_failing_disk(tmp_path, _fill_disk)
    failures = [m for m in messages if "failed" in m]
    assert len(failures) == 1, messages  # reported once, not per event
    assert "No space left on device" in failures[0] and "events.out.tfevents" in failures[0]
    lost = [m for m in messages if "were not written" in m]
    # The 100 pies after the fault (the scalars went to torch's own file).
    assert len(lost) == 1 and lost[0].startswith("torch_visualization: 100 event(s)"), messages


def test_any_writer_thread_exception_is_contained(tmp_path):
    class Boom(Exception):
        pass

    def explode(writer):
        def write(data):
            raise Boom("injected fault")

        writer._sink._file._file.write = write  # the open file under our guard

    messages = _train_with_failing_disk(tmp_path, explode)
    assert sum("Boom: injected fault" in m for m in messages) == 2, messages  # failure + count
    # What was flushed before the fault is intact.
    assert read(tmp_path)["run"]["pie"].steps == [0, 1, 2, 3, 4]


def test_our_events_have_a_file_of_their_own(tmp_path):
    """Our charts go through the sink into our file; the stock API writes
    torch's file as it always did; after close() both reopen new files."""
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_scalar("loss", 1.0, 0)
    writer.add_class_pie("pie", np.array([1.0, 2.0]), 0)
    writer.close()
    writer.add_scalar("after_close", 1.0, 0)  # torch reopens a new file writer
    writer.add_class_pie("pie", np.array([1.0, 2.0]), 1)  # and so does the sink
    writer.close()
    files = glob.glob(str(tmp_path / "run" / "events.out.tfevents.*"))
    ours = [f for f in files if sink.FILE_MARK in f]
    assert len(ours) == 2 and len(files) == 4
    assert read(tmp_path)["run"]["pie"].steps == [0, 1]


def _watched_training(tmp_path, fault):
    """Trains 5 steps under watch(), injects `fault(writer)`, trains 20 more."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    with warnings.catch_warnings(record=True) as caught, _ThreadErrors() as thread:
        warnings.simplefilter("always")
        writer = SummaryWriter(str(tmp_path / "run"))
        handle = writer.watch(model, optimizer, log_every=1)
        for step in range(25):
            if step == 5:
                writer.flush()
                fault(writer)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()  # must not raise
        handle.remove()
        writer.close()
    assert thread.errors == [], thread.errors
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_watch_survives_a_full_disk(tmp_path):
    messages = _watched_training(tmp_path, _fill_disk)
    assert sum("No space left on device" in m and "failed" in m for m in messages) == 1, messages
    assert sum("were not written" in m for m in messages) == 1, messages


def test_watch_worker_exception_is_reported_once(tmp_path, monkeypatch):
    def break_writes(writer):
        def fail(*args, **kwargs):
            raise RuntimeError("injected fault")

        # What the writer thread calls to turn each logging step into values.
        monkeypatch.setattr(watch_decode, "event_values", fail)

    messages = _watched_training(tmp_path, break_writes)
    assert len([m for m in messages if "logging step failed" in m]) == 1, messages
    # The 5 steps logged before the fault are all there.
    assert read(tmp_path)["run"]["gradients/norm"].steps == [0, 1, 2, 3, 4]


def test_removed_watch_leaves_no_reference_to_the_model(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
    handle.remove()
    ref = weakref.ref(model)
    del model, optimizer, handle
    gc.collect()
    assert ref() is None, "a removed watch keeps the model alive"
    writer.close()


# -- a log dir that cannot be written ------------------------------------------------

def _under_a_file(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    return str(tmp_path / "plain-file" / "logs")


def _a_file(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    return str(tmp_path / "plain-file")


@pytest.mark.parametrize(
    "make_path",
    [
        _under_a_file,
        _a_file,
        # Unwritable even for root (tests may run as root, where a chmod'ed
        # directory would still be writable).
        lambda tmp_path: "/proc/self/torch-visualization-logs",
        lambda tmp_path: "/sys/torch-visualization-logs",
    ],
    ids=["under-a-file", "is-a-file", "proc", "sysfs"],
)
def test_unwritable_logdir_fails_at_construction(tmp_path, make_path):
    path = make_path(tmp_path)
    with pytest.raises(OSError) as info:
        SummaryWriter(path)
    message = str(info.value)
    assert "SummaryWriter cannot create its event file in log_dir %r" % path in message
    assert info.value.errno is not None


# -- resource bounds --------------------------------------------------------------------

_EMBEDDING_HEATMAP = r"""
import json, sys
import torch
from torch_visualization import SummaryWriter

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

writer = SummaryWriter(sys.argv[1])
writer.add_weight_heatmap("warm-up", torch.randn(300, 300), 0)  # first-call allocations
writer.flush()
# An embedding table: row i holds the value i everywhere (checks the pooling too).
weight = torch.arange(50_000, dtype=torch.float32)[:, None].expand(-1, 4096).contiguous()
weight.requires_grad_(True)
if sys.argv[2] == "transposed":
    weight = weight.t()  # a non-contiguous [4096, 50000] view, as `W.t()` gives
before = status("VmRSS")
writer.add_weight_heatmap("embedding", weight, 0)
writer.flush()
# VmHWM is the peak since start: peak - current-before bounds the extra peak
# from above (it is larger if an earlier peak was higher).
print(json.dumps({"extra": status("VmHWM") - before, "tensor": weight.numel() * 4}))
writer.close()
"""


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_big_embedding_heatmap_makes_no_full_copy(tmp_path, layout):
    out = subprocess.run(
        [sys.executable, "-c", _EMBEDDING_HEATMAP, str(tmp_path / "run"), layout],
        capture_output=True, text=True, timeout=300, check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print("\n50,000 x 4,096 float32 heatmap (%s): extra peak %.1f MiB for a %.0f MiB tensor"
          % (layout, figures["extra"] / 2**20, figures["tensor"] / 2**20))
    # A host copy would add the tensor's 781 MiB; allow 5 % for allocator noise.
    assert figures["extra"] < 0.05 * figures["tensor"], figures
    series = read(tmp_path)["run"]["embedding"]
    grid = series.values[0]
    if layout == "transposed":
        assert series.original_shape == [4096, 50_000]
        grid = grid.T  # rows of the embedding are columns of its transpose
    assert grid.shape == (64, 64)
    if layout == "contiguous":
        assert series.original_shape == [50_000, 4096]
    assert series.reduction == "mean_pool"
    # Adaptive pooling bin r covers rows floor(r*n/64) .. ceil((r+1)*n/64) - 1.
    n = 50_000
    starts = np.floor(np.arange(64) * n / 64)
    ends = np.ceil((np.arange(64) + 1) * n / 64)
    # Cells are stored as float16 (within 2**-11 of the float32 mean).
    np.testing.assert_allclose(grid[:, 0], (starts + ends - 1) / 2, rtol=1e-4 + 2**-11)
