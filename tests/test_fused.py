"""The one-pass CPU kernels (adapter/_fused.c through fused.py) give what
the PyTorch path gives, and watch() logs the same values with and without
them on real model shapes.

The extension is part of the build (setup.py): a checkout where it did not
compile fails here rather than silently testing only the fallback.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_visualization import SummaryWriter, fused, metadata, pooling, read, reduce

SPECIAL = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def tensors(seed=0):
    """Gradient-like tensors: sizes around the kernels' 8/32-lane loops and
    their 1024-element blocks (tails), one large, one of one element."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1,), (7,), (31,), (33,), (1023,), (1025,), (64, 70), (3, 5, 3, 3), (300, 2049)]
    return [torch.randn(shape, generator=generator) * 10 ** (index % 5 - 2)
            for index, shape in enumerate(shapes)]


@pytest.fixture(autouse=True, params=["fastest", "portable"])
def kernel_forms(request):
    """Every test twice: with the kernels this CPU runs fastest (AVX2 and
    F16C here) and with the portable forms other CPUs run."""
    from torch_visualization import _fused

    previous = _fused.set_portable_only(request.param == "portable")
    yield request.param
    _fused.set_portable_only(previous)


def test_the_extension_is_built():
    assert fused.available(), "torch_visualization._fused did not build (see setup.py)"


@pytest.mark.parametrize("special", [None, "nan", "inf", "-inf", "both"])
def test_gradient_statistics_equal_pytorchs(special):
    grads = tensors()
    if special == "both":
        grads[4][3] = float("nan")
        grads[4][1000] = float("inf")
        grads[8][2, 5] = float("-inf")
    elif special:
        grads[5][1024] = SPECIAL[special]  # the scalar tail
        grads[8][100, 7] = SPECIAL[special]  # the vector loop
    stats, nonfinite = fused.gradient_statistics(grads)
    want = reduce.gradient_statistics(grads, fused=False)
    np.testing.assert_allclose(stats.numpy(), want.numpy(), rtol=2e-6)
    np.testing.assert_array_equal(nonfinite.numpy(), reduce.nonfinite_counts(grads).numpy())
    # Every NaN/Inf is counted and the other tensors have none.
    assert nonfinite.sum().item() == {None: 0, "both": 3}.get(special, 2)


def test_update_statistics_equal_pytorchs_and_leave_the_weights_alone():
    after = tensors(1)
    before = [t + 1e-3 * torch.randn_like(t) for t in after]
    kept = [t.clone() for t in before]
    got = fused.update_statistics(before, after)
    want = torch.cat([reduce.squared_l2_norms(before, fused=False),
                      reduce.squared_l2_norms([b - a for b, a in zip(before, after)], fused=False)])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-5)
    for old, copy in zip(before, kept):
        assert torch.equal(old, copy)


@pytest.mark.parametrize("shape, max_cells", [
    ((512, 784), 64),  # rows divide evenly (block sums), columns do not (bin means)
    ((100, 70), 64),  # neither divides: bins overlap by one row / column
    ((64, 64), 64),  # the grid is the matrix itself
    ((5, 3, 3, 3), 4),  # a conv weight's matrix view [5, 27]
    ((4096,), 64),  # a bias: one row
    ((1, 1), 8),
    ((3, 2000), (2, 7)),
])
def test_pooling_in_the_update_pass_equals_the_heatmap_plan(shape, max_cells):
    generator = torch.Generator().manual_seed(3)
    after = [torch.randn(shape, generator=generator)]
    after[0].view(-1)[len(after[0].view(-1)) // 3] = float("nan")  # stays inside its bins
    before = [after[0] + 1]
    plan = pooling.HeatmapPlan(after, max_cells)
    rows, _, out_rows, out_cols = plan.alone(0)
    norms, grids = fused.update_statistics(before, after, [(rows, out_rows, out_cols)])
    (want,) = plan.flat_grids(after)
    np.testing.assert_allclose(grids[0].numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert np.isnan(grids[0].numpy()).sum() == np.isnan(want.numpy()).sum() >= 1
    # The NaN weight makes its update NaN; the weights before are finite.
    np.testing.assert_allclose(norms.numpy(), [float(before[0].double().square().sum()), np.nan],
                               rtol=1e-6)


@pytest.fixture
def two_threads():
    """PyTorch with two intra-op threads; yields the thread count the split
    passes get (2 where PyTorch's OpenMP runtime is found)."""
    from torch_visualization import _fused

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    previous, got = _fused.set_threads(0)
    yield got
    _fused.set_threads(previous)
    torch.set_num_threads(threads)


def _parameter_pass(grads, olds, news, grids, pools, size):
    from torch_visualization import _fused

    out = np.zeros(size, np.float32)
    _fused.parameter_statistics([g.numpy() for g in grads], [o.numpy() for o in olds],
                                [n.numpy() for n in news], out, grids, pools)
    return out


def test_split_passes_give_the_same_numbers_on_any_thread_count(two_threads):
    """The parameter pass and the output statistics are split into tasks
    run on PyTorch's threads: the numbers are the same bytes with one
    thread and with two, and those of the unsplit kernels and PyTorch."""
    from torch_visualization import _fused

    if sys.platform.startswith("linux"):
        assert two_threads == 2  # PyTorch's libgomp is found and used
    generator = torch.Generator().manual_seed(5)
    # Several tasks each: rows that do not divide into bins (overlapping
    # bins at task boundaries), rows that do, an unpooled bias, NaN in one
    # task, and a frozen array only pooled.
    news = [torch.randn(700, 333, generator=generator), torch.randn(512, 784, generator=generator),
            torch.randn(200_003, generator=generator)]
    news[1][300, 5] = float("nan")
    olds = [n + 0.01 * torch.randn(n.shape, generator=generator) for n in news]
    grads = [torch.randn(n.shape, generator=generator) for n in news]
    frozen = torch.randn(1000, 301, generator=generator)
    plan = pooling.HeatmapPlan(news[:2] + [frozen], 64, batch=False)
    specs = [plan.alone(i) for i in range(3)]
    offset, grids, at = 18, [], 18
    for rows, _, out_rows, out_cols in specs[:2]:
        grids.append((at, rows, out_rows, out_cols))
        at += out_rows * out_cols
    rows, _, out_rows, out_cols = specs[2]
    pools = [(frozen.numpy(), at, rows, out_rows, out_cols)]
    size = at + out_rows * out_cols
    runs = []
    for limit in (1, 0):
        _fused.set_threads(limit)
        runs.append(_parameter_pass(grads, olds, news, grids + [None], pools, size))
    assert runs[0].tobytes() == runs[1].tobytes()
    out = runs[1]
    stats, nonfinite = fused.gradient_statistics(grads)
    np.testing.assert_allclose(out[:9], stats.numpy(), rtol=2e-6)
    np.testing.assert_array_equal(out[9:12], nonfinite.numpy())
    norms = fused.update_statistics(olds, news)
    np.testing.assert_allclose(out[12:18], norms.numpy(), rtol=2e-5)
    assert np.isnan(out[12 + 3 + 1]) and not np.isnan(out[12 + 3])  # the NaN weight's update
    want = np.concatenate([grid.numpy().reshape(-1) for grid in plan.flat_grids(news[:2] + [frozen])])
    np.testing.assert_allclose(out[offset:], want, rtol=1e-5, atol=1e-6)
    # The output statistics: one array of several tasks.
    output = torch.relu(torch.randn(300_001, generator=generator))
    split = []
    for limit in (1, 0):
        _fused.set_threads(limit)
        split.append(fused.output_statistics(output))
    assert split[0] == split[1]
    assert split[1][0] == pytest.approx(float(output.double().norm()), rel=1e-6)
    assert split[1][1:] == (float(output.min()), float(output.max()), float((output != 0).sum()),
                            output.numel())


def test_the_pass_split_around_the_step_writes_the_same_bytes(two_threads):
    """cpu_pass.py reads the gradients and copies the weights before the
    optimizer step (BEFORE_STEP), the updates and grids after it
    (AFTER_STEP): the two calls write exactly what the one call after the
    step writes, on one thread and on two."""
    from torch_visualization import _fused

    generator = torch.Generator().manual_seed(9)
    olds = [torch.randn(700, 333, generator=generator), torch.randn(300_001, generator=generator),
            torch.randn(64, 10, generator=generator)]
    news = [o + 0.01 * torch.randn(o.shape, generator=generator) for o in olds]
    grads = [torch.randn(o.shape, generator=generator) for o in olds]
    grads[1][123_456] = float("inf")
    frozen = torch.randn(300, 301, generator=generator)
    plan = pooling.HeatmapPlan([olds[0], olds[2], frozen], 64, batch=False)
    grids, at = [], 18
    for index in range(2):
        rows, _, out_rows, out_cols = plan.alone(index)
        grids.append((at, rows, out_rows, out_cols))
        at += out_rows * out_cols
    rows, _, out_rows, out_cols = plan.alone(2)
    pools = [(frozen.numpy(), at, rows, out_rows, out_cols)]
    size = at + out_rows * out_cols
    grids = [grids[0], None, grids[1]]
    whole = _parameter_pass(grads, olds, news, grids, pools, size)
    views = [g.numpy() for g in grads]
    for limit in (1, 0):
        _fused.set_threads(limit)
        weights = [o.clone() for o in olds]  # as the step begins
        kept = [torch.full_like(o, 7.0) for o in olds]
        out = np.full(size, -1.0, np.float32)
        fused.parameter_statistics(views, [k.numpy() for k in kept], [w.numpy() for w in weights], out,
                                   grids, pools, fused.BEFORE_STEP)
        for copy, old in zip(kept, olds):
            assert copy.numpy().tobytes() == old.numpy().tobytes()
        assert (out[12:] == -1.0).all()  # nothing of the after stage yet
        for weight, new in zip(weights, news):  # the optimizer step
            weight.copy_(new)
        fused.parameter_statistics(views, [k.numpy() for k in kept], [w.numpy() for w in weights], out,
                                   grids, pools, fused.AFTER_STEP)
        assert out.tobytes() == whole.tobytes()
    _fused.set_threads(0)
    with pytest.raises(ValueError, match="stage must be 0, 1 or 2"):
        fused.parameter_statistics(views, views, views, out, [None] * 3, (), 3)
    with pytest.raises(TypeError):  # the copies' buffers are written before the step
        fused.parameter_statistics(views, [np.frombuffer(v.tobytes(), np.float32).reshape(v.shape)
                                           for v in views], views, out, [None] * 3, (),
                                   fused.BEFORE_STEP)


_FORK_SCRIPT = """
import os, sys, numpy as np, torch
from torch_visualization import _fused
torch.set_num_threads(2)
values = np.ones(1_000_000, np.float32)
assert _fused.output_statistics(values)[3] == 1e6  # the parent's threads are made
child = os.fork()
if child == 0:  # GNU libgomp's pool has no threads here: the tasks run on this one
    os._exit(0 if _fused.output_statistics(values)[3] == 1e6 else 3)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_runs_the_split_passes_on_its_own_thread():
    # Without the fork handler the child waits forever for its parent's
    # OpenMP workers (PyTorch's own parallel ops do).
    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_copy_arrays_copies_in_chunks_and_refuses_other_sizes(two_threads):
    generator = torch.Generator().manual_seed(6)
    sources = [torch.randn(300_007, generator=generator).numpy(), np.array([1.5], np.float32),
               torch.randn(512, 784, generator=generator).numpy()]
    targets = [np.zeros_like(a) for a in sources]
    fused.copy_arrays(sources, targets)
    for source, target in zip(sources, targets):
        assert target.tobytes() == source.tobytes()
    with pytest.raises(ValueError, match="pair 1 has 1 and 2 values"):
        fused.copy_arrays(sources[:2], [targets[0], np.zeros(2, np.float32)])
    with pytest.raises(TypeError):  # read-only target
        fused.copy_arrays(sources[:1], [np.frombuffer(bytes(4 * 300_007), np.float32)])


@pytest.mark.parametrize("special", [None, "nan", "inf", "-inf"])
def test_output_statistics_equal_pytorchs(special):
    output = torch.relu(torch.randn(37, 129, generator=torch.Generator().manual_seed(4)))
    output[0, 0] = -0.0
    output[3, 3] = -2.5
    if special:
        output[20, 100] = SPECIAL[special]
    norm, low, high, nonzero, numel = fused.output_statistics(output)
    assert nonzero == int((output != 0).sum())  # NaN counts as nonzero
    assert numel == output.numel()
    for got, want in ((norm, output.double().norm()), (low, output.amin()), (high, output.amax())):
        want = float(want)
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, rel=1e-6)


def test_the_pytorch_path_takes_what_the_kernels_do_not_read():
    contiguous = torch.randn(8, 9)
    for other in (contiguous.t(), contiguous.double(), contiguous.bfloat16(), torch.empty(0),
                  contiguous.to_sparse()):
        assert fused.gradient_statistics([contiguous, other]) is None
        assert fused.update_statistics([other], [other]) is None
        assert fused.output_statistics(other) is None
    assert fused.update_statistics([contiguous], [contiguous.reshape(9, 8)]) is None


def test_switched_off_nothing_is_computed(monkeypatch):
    monkeypatch.setattr(fused, "ENABLED", False)
    assert fused.gradient_statistics([torch.ones(3)]) is None
    assert fused.output_statistics(torch.ones(3)) is None


def test_bad_arguments_are_clear_errors():
    from torch_visualization import _fused

    values = np.ones(8, dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        _fused.output_statistics(np.ones(8))
    with pytest.raises(ValueError, match="empty"):
        _fused.output_statistics(np.ones(0, dtype=np.float32))
    with pytest.raises(ValueError, match="out holds 3 values, 4 needed"):
        _fused.gradient_statistics([values], np.empty(3, dtype=np.float32))
    with pytest.raises(ValueError, match="1 old and 2 new"):
        _fused.update_statistics([values], [values, values], np.empty(2, dtype=np.float32))
    with pytest.raises(ValueError, match="cannot pool 8 values as 3 rows"):
        _fused.update_statistics([values], [values], np.empty(2, dtype=np.float32),
                                 [(np.empty(1, dtype=np.float32), 3, 1, 1)])


# -- float16 heatmaps -------------------------------------------------------------


def _grids():
    rng = np.random.default_rng(5)
    for trial in range(400):
        rows, cols = int(rng.integers(1, 70)), int(rng.integers(4, 70))
        grid = (rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-30, 30)).astype(np.float32)
        kind = trial % 9
        if kind == 1:
            grid[rng.integers(0, rows), rng.integers(0, cols)] = np.nan
        elif kind == 2:
            grid[0, 0], grid[-1, -1] = np.inf, -np.inf
        elif kind == 3:
            grid[:] = np.nan
        elif kind == 4:
            grid.flat[1] = grid.flat[0] * 1e-9  # too small beside the largest: float32 kept
        elif kind == 5:
            grid[:] = 0.0
        elif kind == 6:
            grid = np.round(grid * 4) / 4  # exact ties of the float16 rounding
        elif kind == 7:
            grid = (np.abs(grid) + 1) * np.float32(1.5e-38)  # 2**k beyond float32: the portable path
        elif kind == 8:
            grid[:] = -3.0
        yield grid.astype(np.float32)


def test_c_heatmap_encoding_equals_numpys():
    kept = encoded = 0
    for grid in _grids():
        got, want = metadata.encode_heatmap_grid(grid), metadata._encode_heatmap_numpy(grid)
        assert got.dtype == want.dtype and got.shape == want.shape
        if got.dtype == np.float32:
            kept += 1
            np.testing.assert_array_equal(got, want)
            continue
        encoded += 1
        cells, want_cells = got[:-1], want[:-1]
        nan = np.isnan(cells)
        np.testing.assert_array_equal(nan, np.isnan(want_cells))
        # Bit for bit (NaN payloads aside), so the plugin reads the same.
        np.testing.assert_array_equal(cells.view(np.uint16)[~nan], want_cells.view(np.uint16)[~nan])
        (grid_got, range_got), (grid_want, range_want) = (
            metadata.decode_heatmap_values(got), metadata.decode_heatmap_values(want))
        np.testing.assert_array_equal(grid_got, grid_want)
        assert range_got == range_want
    assert kept and encoded


# -- watch() with and without the kernels ------------------------------------------


class _TiedLM(nn.Module):
    """Embedding tied to the output head, a conv over positions, a 0-d gain."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 24)
        self.conv = nn.Conv1d(24, 24, 3, padding=1)
        self.gain = nn.Parameter(torch.tensor(1.5))
        self.head = nn.Linear(24, 50, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        x = self.embed(tokens)
        x = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2) * self.gain
        return self.head(x)


def _train(logdir, model_fn, batches, optimizers):
    torch.manual_seed(0)
    model = model_fn()
    params = list(model.parameters())
    if optimizers == 1:  # the planned one-call pass (watch/cpu_pass.py)
        steppers = [torch.optim.AdamW(params, lr=1e-2)]
    else:  # the general path: a call per optimizer and kind
        steppers = [torch.optim.AdamW(params[:2], lr=1e-2), torch.optim.SGD(params[2:], lr=1e-2)]
    writer = SummaryWriter(logdir)
    writer.watch(model, steppers, log_every=2, outputs="classes")
    for x, y in batches:
        for stepper in steppers:
            stepper.zero_grad()
        out = model(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        for stepper in steppers:
            stepper.step()
    writer.close()
    return read(os.path.dirname(logdir))[os.path.basename(logdir)]


def _cnn():
    # An in-place ReLU rewrites the conv output its stat hook just read.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))


@pytest.mark.parametrize("optimizers", [1, 2])
@pytest.mark.parametrize("name", ["cnn", "tied_lm"])
def test_watch_logs_the_same_values_with_and_without_the_kernels(tmp_path, monkeypatch, name, optimizers):
    generator = torch.Generator().manual_seed(6)
    if name == "cnn":
        model_fn = _cnn
        batches = [(torch.randn(16, 3, 8, 8, generator=generator),
                    torch.randint(0, 10, (16,), generator=generator)) for _ in range(5)]
    else:
        model_fn = _TiedLM
        batches = [(torch.randint(0, 50, (4, 12), generator=generator),
                    torch.randint(0, 50, (4, 12), generator=generator)) for _ in range(5)]
    calls = {"gradient": 0, "update": 0, "output": 0, "parameter": 0}
    stages = []
    for kind in calls:
        original = getattr(fused, kind + "_statistics")

        def counted(*args, _original=original, _kind=kind, **kwargs):
            result = _original(*args, **kwargs)
            calls[_kind] += _kind == "parameter" or result is not None  # it fills `out`
            if _kind == "parameter":
                stages.append(args[6] if len(args) > 6 else fused.WHOLE)
            return result

        monkeypatch.setattr(fused, kind + "_statistics", counted)
    got = _train(str(tmp_path / "one_pass" / "run"), model_fn, batches, optimizers)
    # The kernels did the work: for the parameter side with one optimizer,
    # one call before each logging step's optimizer step (the gradients,
    # the copy) and one after it; per-kind calls with two.
    if optimizers == 1:
        assert stages == [fused.BEFORE_STEP, fused.AFTER_STEP] * 3, stages
        assert calls["gradient"] == calls["update"] == 0, calls
    else:
        assert calls["parameter"] == 0 and calls["gradient"] > 0 and calls["update"] > 0, calls
    assert calls["output"] > 0
    monkeypatch.setattr(fused, "ENABLED", False)
    want = _train(str(tmp_path / "pytorch" / "run"), model_fn, batches, optimizers)
    assert sorted(got) == sorted(want)
    for tag in want:
        assert got[tag].steps == want[tag].steps == [0, 2, 4], tag
        for a, b in zip(got[tag].values, want[tag].values):
            # Heatmaps go through float16: a last-bit difference of a cell
            # may round to the neighbouring float16 value.
            rtol = 2.0 ** -10 if want[tag].kind == "heatmap" else 1e-5
            np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                       rtol=rtol, atol=1e-7, err_msg=tag)


_WITHOUT_EXTENSION = r'''
import importlib.abc, os, sys


class Unbuilt(importlib.abc.MetaPathFinder):
    """As if the C extension had not compiled."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch_visualization._fused":
            raise ImportError("no C compiler at install time")


sys.meta_path.insert(0, Unbuilt())
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_visualization import SummaryWriter, fused, metadata, read

assert fused._fused is None and metadata._fused is None and not fused.available()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(12, 70), nn.ReLU(), nn.Linear(70, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
logdir = sys.argv[1]
writer = SummaryWriter(os.path.join(logdir, "run"))
writer.watch(model, optimizer, log_every=1, class_names=["a", "b", "c", "d"])
for _ in range(3):
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(8, 12)), torch.randint(0, 4, (8,))).backward()
    optimizer.step()
writer.close()
got = read(logdir)["run"]
for tag in ("gradients/norm", "updates/ratio", "activations/zero_fraction", "weights/0.weight"):
    assert got[tag].steps == [0, 1, 2], tag
    assert np.isfinite(np.asarray(got[tag].values[-1], dtype=float)).all(), tag
print("logged without the extension")
'''


def test_without_the_extension_everything_is_logged_by_pytorch_and_numpy(tmp_path):
    """A machine without a C compiler installs the package without `_fused`:
    importing, watching and writing heatmaps all work (PyTorch ops and
    numpy do the work)."""
    import sys

    script = tmp_path / "unbuilt.py"
    script.write_text(_WITHOUT_EXTENSION)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logged without the extension" in done.stdout


# -- class scores -------------------------------------------------------------


@pytest.mark.parametrize("case", ["plain", "nan_row", "inf_max_row", "minus_inf_entries", "all_minus_inf"])
def test_class_statistics_equal_pytorch(case):
    from torch_visualization.watch import classes
    from torch_visualization.watch.reducer import StepState

    scores = torch.randn(9, 7, generator=torch.Generator().manual_seed(3)) * 4
    if case == "nan_row":
        scores[2, 3] = float("nan")
    elif case == "inf_max_row":
        scores[4, 0] = float("inf")
    elif case == "minus_inf_entries":
        scores[1, :3] = float("-inf")  # masked classes: probability 0, no NaN
    elif case == "all_minus_inf":
        scores[5] = float("-inf")
    got, want = StepState(), StepState()
    for _ in range(2):  # a second forward adds to the sums
        classes.add_class_scores(got, scores, sequence=True)
        classes.add_class_scores(want, scores, sequence=True, accelerated=True)
    assert fused.class_statistics(scores) is not None  # the C call served `got`
    np.testing.assert_allclose(got.class_sum.numpy(), want.class_sum.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sequence.numpy(), want.sequence.numpy(), rtol=1e-5, atol=1e-5)
    assert got.class_samples == want.class_samples == 18
    assert np.isnan(got.class_sum.numpy()).any() == (case in ("nan_row", "inf_max_row", "all_minus_inf"))


def test_class_statistics_leave_big_or_other_outputs_to_pytorch():
    assert fused.class_statistics(torch.zeros(fused.CLASS_SCORES_MAX // 4 + 1, 4)) is None
    assert fused.class_statistics(torch.zeros(3, 4, dtype=torch.float64)) is None
    assert fused.class_statistics(torch.zeros(4, 3).t()) is None
    with pytest.raises(ValueError, match="scores must be"):
        fused._fused.class_statistics(np.zeros((3, 4), np.float32), np.zeros(5, np.float32))
