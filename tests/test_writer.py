"""The writer end to end: real event files read back through TensorBoard."""

import numpy as np
import pytest
import torch

import torch_visualization
from conftest import stored_heatmap
from torch_visualization import SummaryWriter, sink


@pytest.fixture
def writer(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"))
    yield w
    w.close()


def read_run(tmp_path):
    return torch_visualization.read(str(tmp_path))["run"]


def test_is_a_torch_summary_writer_and_stock_api_works(writer, tmp_path):
    assert isinstance(writer, torch.utils.tensorboard.SummaryWriter)
    writer.add_scalar("loss", 0.5, 3)
    writer.add_class_pie("p", [1, 2], 3)
    writer.close()
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(3, 0.5)]
    assert set(read_run(tmp_path)) == {"p"}


def test_four_kinds_round_trip(writer, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    for step in (0, 5):
        writer.add_weight_heatmap("weights/conv", model[0].weight, step)
        writer.add_weight_heatmap("weights/bias", model[0].bias, step)
        writer.add_class_pie("outputs/classes", torch.tensor([[0.2, 0.8], [0.4, 0.6]]), step, class_names=["a", "b"])
        writer.add_gradient_bars("gradients/norm", model, step)
        writer.add_gradient_bars("custom", {"x": 1.5, "y": torch.tensor(2.0), "z": np.float32(3)}, step)
        writer.add_scatter("features", torch.tensor([[1.0, 2.0], [3.0, 4.0]]), step, labels=torch.tensor([1, 0]), class_names=["a", "b"])
    writer.close()
    run = read_run(tmp_path)

    conv = run["weights/conv"]
    assert (conv.kind, conv.steps, conv.original_shape, conv.reduction) == ("heatmap", [0, 5], [4, 3, 3, 3], "none")
    np.testing.assert_array_equal(conv.values[-1], stored_heatmap(model[0].weight.detach().reshape(4, 27).numpy()))
    assert run["weights/bias"].values[0].shape == (1, 4)

    pie = run["outputs/classes"]
    assert (pie.kind, pie.labels) == ("pie", ["a", "b"])
    np.testing.assert_allclose(pie.values[0], [0.3, 0.7], rtol=1e-6)

    bars = run["gradients/norm"]
    assert bars.labels == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_allclose(bars.values[0], [p.grad.norm().item() for p in model.parameters()], rtol=1e-6)
    np.testing.assert_array_equal(run["custom"].values[1], [1.5, 2.0, 3.0])
    assert run["custom"].labels == ["x", "y", "z"]

    scatter = run["features"]
    assert scatter.labels == ["a", "b"]
    np.testing.assert_array_equal(scatter.values[0], [[1, 2, 1], [3, 4, 0]])


def test_big_weight_is_pooled_and_shape_recorded(writer, tmp_path):
    writer.add_weight_heatmap("w", torch.randn(1000, 300), 0)
    writer.add_weight_heatmap("w_small_grid", torch.randn(1000, 300), 0, max_cells=(8, 4))
    writer.close()
    run = read_run(tmp_path)
    assert run["w"].values[0].shape == (64, 64)
    assert (run["w"].original_shape, run["w"].reduction) == ([1000, 300], "mean_pool")
    assert run["w_small_grid"].values[0].shape == (8, 4)


def test_heatmap_event_is_kilobytes(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_weight_heatmap("w", torch.randn(4096, 4096), 0)
    writer.close()
    size = sum(p.stat().st_size for p in (tmp_path / "run").iterdir())
    # A 64x64 float16 grid with its range row (8.3 KB; float32 took 16.5 KB)
    # plus metadata and framing.
    assert size <= 10_000


def test_nan_and_inf_are_accepted_and_kept(writer, tmp_path):
    nan, inf = float("nan"), float("inf")
    writer.add_weight_heatmap("h", torch.tensor([[nan, inf], [-inf, 1.0]]), 0)
    writer.add_class_pie("p", [nan, inf, 1.0], 0)
    writer.add_gradient_bars("b", {"a": nan, "b": -inf}, 0)
    writer.add_scatter("s", [[nan, inf]], 0)
    writer.close()
    run = read_run(tmp_path)
    h = run["h"].values[0]
    assert np.isnan(h[0, 0]) and h[0, 1] == inf and h[1, 0] == -inf
    assert np.isnan(run["p"].values[0][0]) and run["p"].values[0][1] == inf
    assert np.isnan(run["b"].values[0][0]) and run["b"].values[0][1] == -inf
    assert np.isnan(run["s"].values[0][0, 0])


def test_labels_are_frozen_per_tag(writer):
    writer.add_class_pie("p", [1, 2], 0, class_names=["a", "b"])
    writer.add_class_pie("p", [3, 4], 1, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"'p': labels changed from \['a', 'b'\] to \['a', 'c'\]"):
        writer.add_class_pie("p", [3, 4], 2, class_names=["a", "c"])
    writer.add_gradient_bars("b", {"x": 1.0}, 0)
    with pytest.raises(ValueError, match="labels changed"):
        writer.add_gradient_bars("b", {"y": 1.0}, 1)
    with pytest.raises(ValueError, match="first logged as a pie; it cannot be logged as a bars"):
        writer.add_gradient_bars("p", {"x": 1.0}, 1)


def test_rejected_calls_write_nothing(writer, tmp_path):
    writer.add_class_pie("p", [1, 2], 0, class_names=["a", "b"])
    with pytest.raises(ValueError):
        writer.add_class_pie("p", [1, 2], 1, class_names=["a", "c"])
    with pytest.raises(ValueError):
        writer.add_class_pie("p", [1, -2], 2, class_names=["a", "b"])
    writer.close()
    assert read_run(tmp_path)["p"].steps == [0]


@pytest.mark.parametrize(
    "method, args, kwargs, error, message",
    [
        ("add_weight_heatmap", (torch.zeros(0),), {}, ValueError, "'bad': tensor is empty"),
        ("add_weight_heatmap", (torch.zeros(0, 3),), {}, ValueError, "'bad': tensor is empty"),
        ("add_weight_heatmap", (torch.zeros(2, 2, dtype=torch.complex64),), {}, TypeError, "'bad': values must be real numbers"),
        ("add_weight_heatmap", (["a", "b"],), {}, TypeError, "'bad'"),
        ("add_class_pie", ([1, 2, 3],), {"class_names": ["a", "b"]}, ValueError, "'bad': 2 class_names given for 3 values"),
        ("add_class_pie", ([1, -1],), {}, ValueError, "'bad': pie values must be non-negative"),
        ("add_class_pie", (torch.zeros(0),), {}, ValueError, "'bad': values are empty"),
        ("add_class_pie", (torch.ones(2, dtype=torch.complex64),), {}, TypeError, "'bad': values must be real numbers"),
        ("add_scatter", (torch.zeros(4, 3),), {}, ValueError, "'bad': scatter points must be [N, 2]"),
        ("add_scatter", (torch.zeros(2, 2),), {"labels": torch.tensor([0, 3]), "class_names": ["a", "b"]}, ValueError, "'bad': labels out of range"),
        ("add_gradient_bars", ("model",), {}, TypeError, "'bad': expected a torch.nn.Module or a mapping"),
        ("add_gradient_bars", ({},), {}, ValueError, "'bad': the mapping of bar values is empty"),
        ("add_gradient_bars", ({"x": "high"},), {}, TypeError, "'bad': value of 'x' must be a real number"),
        ("add_gradient_bars", ({"x": torch.ones(2)},), {}, ValueError, "'bad': value of 'x' must be a single number"),
        ("add_gradient_bars", (torch.nn.Linear(2, 2),), {"stat": "median"}, ValueError, "unknown gradient stat"),
    ],
)
def test_bad_input_names_the_tag(writer, method, args, kwargs, error, message):
    with pytest.raises(error) as info:
        getattr(writer, method)("bad", *args, 0, **kwargs)
    assert message in str(info.value)


def test_read_returns_numpy_per_run_and_tag(tmp_path):
    for run in ("a", "b"):
        w = SummaryWriter(str(tmp_path / run))
        w.add_gradient_bars("g", {"l": 1.0}, 7)
        w.close()
    result = torch_visualization.read(str(tmp_path))
    assert set(result) == {"a", "b"}
    series = result["b"]["g"]
    assert series.steps == [7] and isinstance(series.values[0], np.ndarray)
    assert len(series.wall_times) == 1


def test_metadata_is_written_once_per_tag_and_event_file(tmp_path):
    from tensorboard.backend.event_processing import event_file_loader

    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(3):
        writer.add_gradient_bars("b", {"layer": float(step)}, step)
    writer.close()
    # Writing after close() opens a new event file, which needs the metadata again.
    writer.add_gradient_bars("b", {"layer": 3.0}, 3)
    writer.close()
    # Ours, beside torch's own event file (which holds the stock scalars).
    files = sorted(p for p in (tmp_path / "run").iterdir() if sink.FILE_MARK in p.name)
    assert len(files) == 2
    with_metadata = []
    for path in files:
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                with_metadata.append((event.step, value.HasField("metadata")))
    assert with_metadata == [(0, True), (1, False), (2, False), (3, True)]
    series = torch_visualization.read(str(tmp_path))["run"]["b"]
    assert series.steps == [0, 1, 2, 3]
    assert [v.tolist() for v in series.values] == [[0.0], [1.0], [2.0], [3.0]]


def test_confusion_matrix_round_trip_and_frozen_names(writer, tmp_path):
    names = ["cat", "dog", "bird"]
    writer.add_confusion_matrix("cm", torch.tensor([[3.0, 1, 0], [0, 0, 2]]), torch.tensor([0, 2]), 1, class_names=names)
    writer.add_confusion_matrix("cm", [0, 1, 1], [0, 1, 2], 2, class_names=names)
    with pytest.raises(ValueError, match="labels changed"):
        writer.add_confusion_matrix("cm", [0], [0], 3, class_names=["a", "b", "c"])
    writer.close()
    series = read_run(tmp_path)["cm"]
    assert (series.kind, series.labels, series.steps) == ("confusion", names, [1, 2])
    np.testing.assert_array_equal(series.values[0], [[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(series.values[1], [[1, 0, 0], [0, 1, 0], [0, 1, 0]])
