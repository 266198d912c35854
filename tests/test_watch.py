"""writer.watch(): what it logs, when, and that training is untouched.

Every test trains a small model for a few steps on the CPU, writes real event
files under tmp_path and reads them back with `torch_visualization.read`.
Reference values come from the same training repeated without `watch`
(gradients are bit-identical with and without it, which is tested too).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import end_rank, free_port, spawn_ranks
from torch_visualization import SummaryWriter, fused, metadata, pooling, read, reduce
from torch_visualization.watch import decode as watch_decode
from torch_visualization.watch import reducer as watch_reducer

CLASSES = ["a", "b", "c", "d"]
BATCH, FEATURES = 8, 12


def make_model(device="cpu"):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, 70),  # 70 columns: pooled to 64 (uneven bins)
        nn.ReLU(),
        nn.Linear(70, 16),
        nn.ReLU(),
        nn.Linear(16, len(CLASSES)),
    ).to(device)


def make_batches(count, device="cpu"):
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(BATCH, FEATURES, generator=generator).to(device),
            torch.randint(0, len(CLASSES), (BATCH,), generator=generator).to(device),
        )
        for _ in range(count)
    ]


def train(model, optimizer, batches, *, micro=1, scaler=None, after_backward=None):
    """One optimizer step per `micro` batches (gradient accumulation)."""
    for index in range(0, len(batches), micro):
        optimizer.zero_grad()
        for x, y in batches[index : index + micro]:
            loss = F.cross_entropy(model(x), y) / micro
            (scaler.scale(loss) if scaler else loss).backward()
        if after_backward is not None:
            after_backward(model)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()


def reference(steps, log_every, micro=1, device="cpu"):
    """What watch() should log, computed by hand on an unwatched twin run.

    Returns:
      `{step: {tag: values}}` for the logging steps.
    """
    model = make_model(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = make_batches(steps * micro, device)
    expected = {}
    for step in range(steps):
        logging = step % log_every == 0
        optimizer.zero_grad()
        nonzero, total, probabilities = [0, 0], [0, 0], []
        squares, numels, biggest = np.zeros(5), np.zeros(5), np.zeros(5)
        for x, y in batches[step * micro : (step + 1) * micro]:
            outputs = [x]
            for layer in model:  # every block of the Sequential stack
                outputs.append(layer(outputs[-1]))
            hidden, hidden2, out = outputs[2], outputs[4], outputs[5]
            for index, activation in enumerate((hidden, hidden2)):
                nonzero[index] += int((activation != 0).sum())
                total[index] += activation.numel()
            for index, output in enumerate(outputs[1:]):
                output = output.detach().double()
                squares[index] += float((output * output).sum())
                numels[index] += output.numel()
                biggest[index] = max(biggest[index], float(output.abs().max()))
            probabilities.append(out.detach().softmax(1))
            (F.cross_entropy(out, y) / micro).backward()
        if logging:
            grads = [p.grad.detach().clone() for p in model.parameters()]
            before = [p.detach().clone() for p in model.parameters()]
        optimizer.step()
        if not logging:
            continue
        values = {
            "gradients/norm": np.array([g.norm().item() for g in grads]),
            "gradients/mean_abs": np.array([g.abs().mean().item() for g in grads]),
            "gradients/max_abs": np.array([g.abs().max().item() for g in grads]),
            "gradients/nonfinite": np.zeros(len(grads)),
            "updates/ratio": np.array(
                [(p.detach() - b).norm().item() / b.norm().item()
                 for p, b in zip(model.parameters(), before)]
            ),
            "activations/zero_fraction": 1 - np.array(nonzero) / np.array(total),
            "activations/rms": np.sqrt(squares / numels),
            "activations/max_abs": biggest,
            "outputs/classes": torch.cat(probabilities).mean(0).cpu().numpy(),
        }
        for name, param in model.named_parameters():
            values["weights/" + name] = pooling.heatmap_grid(name, param)[0].cpu().numpy().copy()
        expected[step] = values
    return expected


def run_watched(logdir, steps, log_every, micro=1, device="cpu", **watch_kwargs):
    model = make_model(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    writer = SummaryWriter(logdir)
    handle = writer.watch(model, optimizer, log_every=log_every, **watch_kwargs)
    train(model, optimizer, make_batches(steps * micro, device), micro=micro)
    writer.close()
    return handle, read(os.path.dirname(logdir))[os.path.basename(logdir)]


def as_stored(tag, want):
    """What the event file holds of a reference value: heatmaps are stored
    as float16 where they fit (metadata.encode_heatmap_grid), so the
    reference goes through the same encoding."""
    if not tag.startswith("weights/"):
        return want
    return metadata.decode_heatmap_values(metadata.encode_heatmap_grid(want))[0]


def assert_logged_equals(got, expected):
    for step, values in expected.items():
        for tag, want in values.items():
            want = as_stored(tag, want)
            series = got[tag]
            assert step in series.steps, (tag, step, series.steps)
            value = series.values[series.steps.index(step)]
            np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-7,
                                       err_msg="%s at step %d" % (tag, step))


@pytest.fixture(params=["cpu-kernels", "cpu-pytorch-ops", "accelerator-kernels"])
def kernels(request, monkeypatch):
    """Runs a test with the CPU kernels (the one-pass C kernels of fused.py
    where they apply), with the CPU's PyTorch ops alone (what a build without
    the C extension does), and with the accelerator path (fused _foreach
    launches, NaN/Inf counted on the device, batched pooling) on CPU tensors:
    CI has no GPU, and this is how it tests CUDA's path."""
    monkeypatch.setattr(watch_reducer, "ACCELERATOR_PATH_ON_CPU",
                        request.param == "accelerator-kernels")
    monkeypatch.setattr(fused, "ENABLED", request.param == "cpu-kernels")
    return request.param


# -- what is logged ------------------------------------------------------------


def test_every_tag_equals_its_reference_computation(tmp_path, kernels):
    handle, got = run_watched(str(tmp_path / "run"), steps=5, log_every=2, class_names=CLASSES)
    names = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert set(got) == {
        "gradients/norm", "gradients/mean_abs", "gradients/max_abs", "gradients/nonfinite",
        "updates/ratio", "activations/zero_fraction", "outputs/classes",
        "activations/rms", "activations/max_abs",
    } | {"weights/" + name for name in names}
    for tag, series in got.items():
        assert series.steps == [0, 2, 4], tag
    assert got["gradients/norm"].kind == "bars"
    assert got["gradients/norm"].labels == names
    assert got["updates/ratio"].labels == names
    assert got["activations/zero_fraction"].labels == ["1", "3"]
    # The blocks of the Sequential stack (the residual stream of a deeper model).
    assert got["activations/rms"].labels == ["0", "1", "2", "3", "4"]
    assert got["outputs/classes"].kind == "pie"
    assert got["outputs/classes"].labels == CLASSES
    weight = got["weights/0.weight"]
    assert weight.kind == "heatmap"
    assert weight.original_shape == [70, FEATURES]
    assert weight.reduction == "mean_pool"
    assert weight.values[0].shape == (64, FEATURES)
    assert got["weights/2.bias"].reduction == "none"
    assert_logged_equals(got, reference(steps=5, log_every=2))
    assert handle.step == 5
    assert not handle.active  # close() removed the hooks


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, kernels):
    handle, got = run_watched(str(tmp_path / "run"), steps=4, log_every=2, micro=3,
                              class_names=CLASSES)
    assert handle.step == 4  # optimizer steps, not the 12 backward calls
    assert got["gradients/norm"].steps == [0, 2]
    # Activations and outputs cover every micro-batch of the logging step.
    assert_logged_equals(got, reference(steps=4, log_every=2, micro=3))


def check_grad_scaler_gives_the_fp32_norms(tmp_path, device):
    runs = {}
    for name in ("fp32", "scaled"):
        model = make_model(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter(str(tmp_path / name))
        writer.watch(model, optimizer, log_every=1)
        # A power-of-two scale: scaling and unscaling are exact, so the
        # unscaled gradients equal the fp32 ones bit for bit.
        scaler = torch.amp.GradScaler(device, init_scale=2.0**12) if name == "scaled" else None
        train(model, optimizer, make_batches(3, device), scaler=scaler)
        writer.close()
        runs[name] = read(str(tmp_path))[name]
    for tag in ("gradients/norm", "gradients/mean_abs", "gradients/max_abs", "updates/ratio"):
        assert runs["scaled"][tag].steps == [0, 1, 2]
        for a, b in zip(runs["scaled"][tag].values, runs["fp32"][tag].values):
            np.testing.assert_array_equal(a, b, err_msg=tag)


def check_gradients_and_weights_are_bit_identical(tmp_path, device):
    results = []
    for watched in (False, True):
        model = make_model(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        writer = SummaryWriter(str(tmp_path / str(watched)))
        if watched:
            writer.watch(model, optimizer, log_every=1, class_names=CLASSES)
        grads = []
        train(model, optimizer, make_batches(4, device),
              after_backward=lambda m: grads.append([p.grad.clone() for p in m.parameters()]))
        writer.close()
        results.append((grads, [p.detach().clone() for p in model.parameters()]))
    (grads_a, params_a), (grads_b, params_b) = results
    for step_a, step_b in zip(grads_a, grads_b):
        for a, b in zip(step_a, step_b):
            assert torch.equal(a, b)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)


def test_grad_scaler_gives_the_fp32_norms(tmp_path, kernels):
    check_grad_scaler_gives_the_fp32_norms(tmp_path, "cpu")


def test_gradients_and_weights_are_bit_identical_with_and_without_watch(tmp_path, kernels):
    check_gradients_and_weights_are_bit_identical(tmp_path, "cpu")


def test_without_optimizer_counts_training_forwards_not_eval(tmp_path):
    model = make_model()
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, log_every=2)
    expected = {}
    batches = make_batches(5)
    for index, (x, y) in enumerate(batches):
        model.train()
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if index % 2 == 0:
            expected[index] = np.array([p.grad.norm().item() for p in model.parameters()])
        model.eval()
        with torch.no_grad():
            model(x)  # eval forwards never count
    assert handle.step == 5
    writer.close()
    got = read(str(tmp_path))["run"]
    assert "updates/ratio" not in got
    norms = got["gradients/norm"]
    assert norms.steps == [0, 2, 4]
    for step, value in zip(norms.steps, norms.values):
        # Read when that step's backward pass ended.
        np.testing.assert_allclose(value, expected[step], rtol=1e-5)
    assert got["activations/zero_fraction"].steps == [0, 2, 4]


def test_eval_forwards_between_steps_are_not_measured(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, outputs="classes")
    x, y = make_batches(1)[0]
    optimizer.zero_grad()
    model.eval()
    model(torch.zeros(BATCH, FEATURES))  # all-equal outputs: would skew both charts
    model.train()
    # By hand (no module calls, so no hooks fire): the training forward's values.
    hidden = F.relu(F.linear(x, model[0].weight, model[0].bias)).detach()
    out = model(x)
    F.cross_entropy(out, y).backward()
    optimizer.step()
    writer.close()
    got = read(str(tmp_path))["run"]
    np.testing.assert_allclose(got["outputs/classes"].values[0],
                               out.detach().softmax(1).mean(0).numpy(), rtol=1e-5)
    fraction = got["activations/zero_fraction"].values[0][0]
    assert fraction == pytest.approx(float((hidden == 0).float().mean()))


# -- handles, errors, warnings -----------------------------------------------------


def _hook_counts(model, optimizer):
    modules = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    return modules, len(optimizer._optimizer_step_pre_hooks), len(optimizer._optimizer_step_post_hooks)


def test_remove_takes_every_hook_away(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    with writer.watch(model, optimizer, log_every=1) as handle:
        assert _hook_counts(model, optimizer) != (0, 0, 0)
        train(model, optimizer, make_batches(2))
    assert not handle.active
    assert _hook_counts(model, optimizer) == (0, 0, 0)
    handle.remove()  # twice is fine
    train(model, optimizer, make_batches(2))  # nothing logged any more
    writer.flush()
    assert read(str(tmp_path))["run"]["gradients/norm"].steps == [0, 1]
    # A removed watch frees the model for a new one.
    writer.watch(model, optimizer, log_every=1).remove()
    writer.close()


def test_second_watch_of_a_model_is_an_error(tmp_path):
    model = make_model()
    first = SummaryWriter(str(tmp_path / "one"))
    second = SummaryWriter(str(tmp_path / "two"))
    handle = first.watch(model)
    with pytest.raises(ValueError, match="already watched"):
        second.watch(model)
    with pytest.raises(ValueError, match="already watched"):
        second.watch(torch.compile(model, backend="eager"))
    with pytest.raises(ValueError, match="already watches"):
        first.watch(make_model())
    handle.remove()
    second.watch(model).remove()
    first.close()
    second.close()


def test_bad_arguments_are_named(tmp_path):
    model = make_model()
    writer = SummaryWriter(str(tmp_path / "run"))
    with pytest.raises(TypeError, match="model"):
        writer.watch("model")
    with pytest.raises(TypeError, match="optimizer"):
        writer.watch(model, object())
    with pytest.raises(TypeError, match="log_every"):
        writer.watch(model, log_every=True)
    with pytest.raises(ValueError, match="log_every"):
        writer.watch(model, log_every=0)
    with pytest.raises(TypeError, match="class_names"):
        writer.watch(model, class_names="abcd")
    with pytest.raises(ValueError, match="holds none of the model"):
        writer.watch(model, torch.optim.SGD(make_model().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="no parameters"):
        writer.watch(nn.ReLU())
    # A tag already used with other labels fails at watch() time.
    writer.add_gradient_bars("gradients/norm", {"x": 1.0}, 0)
    with pytest.raises(ValueError, match="labels changed"):
        writer.watch(model)
    writer.close()


def test_class_names_that_do_not_fit_the_output_warn_once(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, class_names=["x", "y", "z"])
    with pytest.warns(RuntimeWarning, match="4 classes but 3 class_names"):
        train(model, optimizer, make_batches(2))
    writer.close()
    got = read(str(tmp_path))["run"]
    assert "outputs/classes" not in got
    assert got["gradients/norm"].steps == [0, 1]


def check_nonfinite_gradients_are_counted_kept_and_warned_once(tmp_path, device):
    model = make_model(device)
    # The poisoned parameters are not stepped, so the weights stay finite.
    optimizer = torch.optim.SGD([model[0].weight], lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)

    def poison(m):
        m[2].weight.grad[0, :3] = float("nan")
        m[4].bias.grad[1] = float("inf")

    with pytest.warns(RuntimeWarning, match=r"2\.weight \(3\), 4\.bias \(1\)") as record:
        train(model, optimizer, make_batches(3, device), after_backward=poison)
        writer.flush()
    assert sum("NaN/Inf" in str(w.message) for w in record) == 1  # once per tag
    writer.close()
    got = read(str(tmp_path))["run"]
    labels = got["gradients/nonfinite"].labels
    for counts, norms in zip(got["gradients/nonfinite"].values, got["gradients/norm"].values):
        assert counts[labels.index("2.weight")] == 3
        assert counts[labels.index("4.bias")] == 1
        assert counts[labels.index("0.weight")] == 0
        assert np.isnan(norms[labels.index("2.weight")])
        assert np.isposinf(norms[labels.index("4.bias")])
        assert np.isfinite(norms[labels.index("0.weight")])


def test_nonfinite_gradients_are_counted_kept_and_warned_once(tmp_path, kernels):
    check_nonfinite_gradients_are_counted_kept_and_warned_once(tmp_path, "cpu")


def test_nonfinite_counts_on_the_device_path_match(tmp_path):
    grads = [torch.tensor([1.0, float("nan"), float("inf")]), torch.ones(4),
             torch.full((2, 2), float("-inf"))]
    np.testing.assert_array_equal(reduce.nonfinite_counts(grads).numpy(), [2, 0, 4])


def test_a_failing_write_never_reaches_training(tmp_path, caplog, monkeypatch):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1)

    def broken(*args):
        raise OSError("disk full")

    # What the writer thread calls to turn each logging step into values.
    monkeypatch.setattr(watch_decode, "event_values", broken)
    with pytest.warns(RuntimeWarning, match="writing a logging step failed"):
        train(model, optimizer, make_batches(3))
        writer.flush()
    assert "disk full" in caplog.text
    monkeypatch.undo()
    writer.close()


# -- torch.compile -------------------------------------------------------------------


def test_compiled_model_keeps_working_without_graph_breaks(tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = make_model()
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(compiled, optimizer, log_every=2, class_names=CLASSES)
    batches = make_batches(6)
    train(compiled, optimizer, batches[:2])
    # After the first steps, any recompilation (e.g. from hooks being added
    # and removed) would raise.
    with torch._dynamo.config.patch(error_on_recompile=True):
        train(compiled, optimizer, batches[2:])
    writer.close()
    assert not counters["graph_break"], dict(counters["graph_break"])
    got = read(str(tmp_path))["run"]
    assert got["gradients/norm"].steps == [0, 2, 4]
    assert got["gradients/norm"].labels[0] == "0.weight"  # unwrapped names
    assert got["outputs/classes"].steps == [0, 2, 4]  # hooks on the wrapper run eagerly
    assert "weights/0.weight" in got and "updates/ratio" in got
    # Inside the compiled region module hooks stay out of the graph.
    for tag in ("activations/zero_fraction", "activations/rms", "activations/max_abs"):
        assert tag not in got
    # Same training as eager: the values equal the unwatched reference.
    expected = reference(steps=6, log_every=2)
    for step in expected:
        for tag in ("activations/zero_fraction", "activations/rms", "activations/max_abs"):
            expected[step].pop(tag)
    assert_logged_equals(got, expected)
    torch._dynamo.reset()


# -- DDP: rank 0 only ------------------------------------------------------------------



def _ddp_rank(rank, port, logdir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = DistributedDataParallel(make_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter(os.path.join(logdir, "rank%d" % rank))
        handle = writer.watch(model, optimizer, log_every=1)
        hooks = _hook_counts(model, optimizer)
        batches = make_batches(4)[rank::2]
        train(model, optimizer, batches)
        active = handle.active
        writer.close()
        with open(os.path.join(logdir, "rank%d.txt" % rank), "w") as out:
            out.write("%s %d %s" % (active, handle.step, hooks))
    except BaseException:
        dist.destroy_process_group()
        raise
    end_rank(rank, 2, logdir)


def test_ddp_only_rank_zero_does_logging_work(tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("this torch build has no torch.distributed with gloo")
    spawn_ranks(_ddp_rank, 2, (free_port(), str(tmp_path)), str(tmp_path))
    status = {rank: (tmp_path / ("rank%d.txt" % rank)).read_text() for rank in (0, 1)}
    assert status[0].startswith("True 2 ")
    # Rank 1 keeps its hooks (the logging steps end in an all_reduce of the
    # class and activation counts) and counts steps, but writes nothing.
    assert status[1].startswith("True 2 ")
    data = read(str(tmp_path))
    assert "rank1" not in data
    got = data["rank0"]
    assert got["gradients/norm"].steps == [0, 1]
    assert got["gradients/norm"].labels[0] == "0.weight"  # DDP's "module." unwrapped


# -- closures and mapping outputs ----------------------------------------------------


class _LogitsDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 3)

    def forward(self, x):
        return {"logits": self.linear(x)}


def test_closure_gradients_and_logits_mappings_are_logged(tmp_path):
    torch.manual_seed(0)
    model = _LogitsDict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, outputs="classes")
    x = torch.ones(4, 2)

    def closure():
        optimizer.zero_grad()
        loss = model(x)["logits"].sum()
        loss.backward()  # inside optimizer.step(): after its pre-hooks
        return loss

    with torch.no_grad():  # by hand: a module call would be measured too
        probabilities = F.linear(x, model.linear.weight, model.linear.bias).softmax(1).mean(0)
    optimizer.step(closure)
    writer.close()
    got = read(str(tmp_path))["run"]
    # d(sum over 4 rows of W x + b)/dW = 4 everywhere (3x2), /db = 4 (3).
    np.testing.assert_allclose(got["gradients/norm"].values[0], [96 ** 0.5, 48 ** 0.5], rtol=1e-6)
    np.testing.assert_allclose(got["outputs/classes"].values[0], probabilities.numpy(), rtol=1e-5)


def test_closure_steps_read_the_gradients_their_closure_made(tmp_path):
    """`step(closure)` runs backward inside the step: the gradients of the
    step before are still in `.grad` (zeroed in place, not freed) when the
    step begins. The CPU pass must not read them then (cpu_pass.py reads
    gradients before the step only where no closure is given)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1)
    batches = [torch.randn(4, 6) * scale for scale in (1.0, 10.0, 0.1)]
    expected = []
    for x in batches:
        def closure(x=x):
            optimizer.zero_grad(set_to_none=False)  # the same .grad tensors, rewritten
            loss = model(x).square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        # After the step, .grad holds what this step's closure computed.
        expected.append([param.grad.norm().item() for param in model.parameters()])
    writer.close()
    got = read(str(tmp_path))["run"]["gradients/norm"]
    assert got.steps == [0, 1, 2]
    # The scales differ 100x between steps: a step read one closure late
    # would be off by far more than rtol.
    np.testing.assert_allclose(np.array(got.values), np.array(expected), rtol=1e-5)
    if fused.available():
        assert handle._reducer.replay.runs == 3  # served by the CPU pass


def test_a_failing_output_measurement_never_reaches_training(tmp_path, monkeypatch):
    """The forward hooks' one-pass read raising (a bug, an out-of-memory)
    is reported once; training and the other tags go on."""
    def broken(tensor):
        raise MemoryError("no room for the row")

    monkeypatch.setattr(fused, "output_statistics", broken)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    handle = writer.watch(model, optimizer, log_every=1)
    with pytest.warns(RuntimeWarning, match="a logging step failed"):
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(5, 4)).square().mean().backward()
            optimizer.step()
    writer.close()
    assert handle._failures >= 3  # every measured output failed, reported once
    assert read(str(tmp_path))["run"]["gradients/norm"].steps == [0, 1, 2]
