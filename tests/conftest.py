"""Shared fixtures: real event files and real TensorBoard servers."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["cat", "dog", "bird"]
# More steps than either loader keeps by default (Python 10, RustBoard 100),
# so tests prove the plugin's own sampling default reaches every step.
MANY_STEPS = 150


@functools.lru_cache(maxsize=None)
def load_benchmark(name):
    """`benchmarks/<name>.py` as a module (loaded once per session)."""
    path = os.path.join(REPO, "benchmarks", name + ".py")
    spec = importlib.util.spec_from_file_location("benchmarks_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stored_heatmap(grid):
    """A heatmap grid as every reader returns it: cells stored as float16
    where the values fit (`metadata.encode_heatmap_grid`), as float32."""
    from torch_visualization import metadata

    return metadata.decode_heatmap_values(metadata.encode_heatmap_grid(grid))[0]


def write_sample_logdir(logdir):
    """Writes two runs with every chart kind; returns what was written.

    Returns:
      `{run: {tag: {step: numpy array as the plugin should serve it}}}`.
    """
    import torch

    from torch_visualization import SummaryWriter, reduce

    expected = {}
    torch.manual_seed(0)
    for run in ("alpha", "beta"):
        writer = SummaryWriter(os.path.join(logdir, run))
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        model(torch.randn(5, 4)).sum().backward()
        runs = expected.setdefault(run, {})
        for step in range(MANY_STEPS):
            pie = np.array([step + 1.0, 2.0, 3.0])
            writer.add_class_pie("outputs/classes", pie, step, class_names=CLASS_NAMES)
            runs.setdefault("outputs/classes", {})[step] = pie
        for step in (0, 10, 20):
            weight = torch.randn(5, 7)
            if step == 20:
                weight[0, 0] = float("nan")
                weight[1, 1] = float("inf")
                weight[2, 2] = float("-inf")
            writer.add_weight_heatmap("weights/w", weight, step)
            runs.setdefault("weights/w", {})[step] = stored_heatmap(weight.numpy())
            writer.add_gradient_bars("gradients/norm", model, step)
            # What was written (the plugin must serve exactly that); that it
            # is the gradients' L2 norm is tested in test_reduce/test_writer.
            runs.setdefault("gradients/norm", {})[step] = (
                reduce.parameter_gradient_stats(model.named_parameters())[1].numpy().copy()
            )
            points = torch.randn(6, 2)
            labels = torch.tensor([0, 1, 2, 0, 1, 2])
            writer.add_scatter(
                "features/pca", points, step, labels=labels, class_names=CLASS_NAMES
            )
            runs.setdefault("features/pca", {})[step] = np.concatenate(
                [points.numpy(), labels.numpy()[:, None].astype(np.float32)], axis=1
            )
            predictions = torch.tensor([0, 1, 2, 2, 1])
            targets = torch.tensor([0, 1, 1, 2, 2])
            writer.add_confusion_matrix(
                "eval/confusion", predictions, targets, step, class_names=CLASS_NAMES
            )
            runs.setdefault("eval/confusion", {})[step] = np.array(
                [[1.0, 0, 0], [0, 1, 1], [0, 1, 1]]
            )
        writer.add_scalar("loss", 1.0, 0)
        writer.close()
    return expected


@pytest.fixture(scope="session")
def sample_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    expected = write_sample_logdir(str(logdir))
    return str(logdir), expected


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """The demo's two runs (3 epochs), trained once per test session.

    Read-only: tests that add events copy it first.
    """
    logdir = tmp_path_factory.mktemp("demo") / "runs"
    subprocess.run(
        [sys.executable, os.path.join(REPO, "demo", "train.py"), "--logdir", str(logdir), "--epochs", "3"],
        check=True, capture_output=True, timeout=300,
    )
    return logdir


def make_tensorboard(logdir, *extra_flags):
    """TensorBoard's own WSGI app over `logdir` with the Python loader.

    Plugins come from `default.get_plugins()`, i.e. our entry point is found
    the way `tensorboard` finds it. Data is loaded once, synchronously; call
    `ingester.deprecated_multiplexer.Reload()` to pick up new events.

    Returns:
      `(app, ingester)`.
    """
    from tensorboard import default, program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester

    tb = program.TensorBoard(plugins=default.get_plugins())
    tb.configure(
        argv=[
            "tensorboard",
            "--logdir", str(logdir),
            "--load_fast=false",
            "--reload_task=blocking",
            "--reload_interval=0",
            *extra_flags,
        ]
    )
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        tb.flags,
        tb.plugin_loaders,
        ingester.data_provider,
        tb.assets_zip_provider,
        ingester.deprecated_multiplexer,
    )
    return app, ingester


def make_wsgi_app(logdir, *extra_flags):
    """The WSGI app of `make_tensorboard`, for tests that need no reload."""
    return make_tensorboard(logdir, *extra_flags)[0]


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leave_process_group(rank, world, marker_dir, timeout=30.0):
    """Tears a gloo process group down with every rank, rank 0 last.

    Rank 0 hosts the group's TCP store: if it destroys its group while
    another rank is still in its own teardown, that rank can abort
    ("terminate called without an active exception", SIGABRT) after all its
    work is done. So: a barrier, the other ranks leave first and say so with
    a file in `marker_dir`, and rank 0 waits for those files (bounded) first.
    Before that, each rank says its work is done (`done.<rank>`, read by
    `spawn_ranks`) and drops unreachable objects (a DDP reducer in a
    reference cycle keeps the group alive past its destruction otherwise).
    """
    import gc

    import torch.distributed as dist

    open(os.path.join(marker_dir, "done.%d" % rank), "w").close()
    gc.collect()
    dist.barrier()
    if rank:
        dist.destroy_process_group()
        open(os.path.join(marker_dir, "left.%d" % rank), "w").close()
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(
        os.path.exists(os.path.join(marker_dir, "left.%d" % other)) for other in range(1, world)
    ):
        time.sleep(0.05)
    dist.destroy_process_group()


def end_rank(rank, world, marker_dir):
    """Ends a rank started by `spawn_ranks` after its work succeeded: leaves
    the group together and exits at once, so no C++ destructor of gloo runs at
    interpreter exit (where the teardown abort happens)."""
    leave_process_group(rank, world, marker_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_ranks(fn, world, args, marker_dir):
    """`torch.multiprocessing.spawn(fn, args, nprocs=world)`, where each rank
    ends with `end_rank(rank, world, marker_dir)`.

    A rank that aborts (SIGABRT) in gloo's teardown after every rank said its
    work was done has lost nothing the test checks (its files are closed
    before `done.<rank>`), so that abort is not a failure; any other death
    (an exception, a signal before the work was done) is.
    """
    import torch.multiprocessing as mp

    try:
        mp.spawn(fn, args=args, nprocs=world, join=True)
    except mp.ProcessExitedException as error:
        done = all(os.path.exists(os.path.join(marker_dir, "done.%d" % rank)) for rank in range(world))
        if not (done and error.signal_name == "SIGABRT"):
            raise


def http_get(url, timeout=10):
    """Returns `(status, body bytes)`, also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class TensorBoardServer:
    """A real `tensorboard` subprocess on a free loopback port."""

    def __init__(self, logdir, *flags):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log_path = os.path.join(str(logdir), "..", "tensorboard-%d.log" % self.port)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tensorboard.main",
                "--logdir", str(logdir),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                *flags,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def get_json(self, path):
        status, body = http_get(self.url + path)
        if status != 200:
            raise AssertionError("%s answered %d: %s" % (path, status, body[:300]))
        return json.loads(body)

    def wait_for_tags(self, expected_runs, timeout=90):
        """Waits until the plugin lists every run in `expected_runs`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("tensorboard exited: see %s" % self.log_path)
            try:
                status, body = http_get(self.url + "/data/plugin/torch_visualization/tags", timeout=5)
                if status == 200:
                    last = json.loads(body)
                    if set(expected_runs) <= set(last["runs"]):
                        return last
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError("runs %s not listed in %ds; last answer %r" % (expected_runs, timeout, last))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextlib.contextmanager
def tensorboard_server(logdir, *flags):
    server = TensorBoardServer(logdir, *flags)
    try:
        yield server
    finally:
        server.stop()
