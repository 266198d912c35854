"""The pieces under watch(): the batched device reductions."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from torch_visualization import SummaryWriter, pooling, reduce


SHAPES = [(512, 784), (100, 37), (512,), (8, 3, 3, 3), (130, 130), (10, 128), (3,), (70, 200)]


@pytest.mark.parametrize("batch", [False, True])
def test_heatmap_plan_flat_grids_hold_every_grid_in_plan_order(batch):
    torch.manual_seed(0)
    # Same matrix view, other shapes: a 1x1 conv and a linear layer, both 16x16.
    shapes = SHAPES + [(16, 16, 1, 1), (16, 16), (16, 16, 1, 1), (512,)]
    tensors = [torch.randn(shape) for shape in shapes]
    tensors[-2] = tensors[-2].to(memory_format=torch.channels_last)
    tensors.append(torch.randn(10, 128).to(torch.bfloat16))
    plan = pooling.HeatmapPlan(tensors, batch=batch)
    assert sorted(plan.order) == list(range(len(tensors)))
    pieces = plan.flat_grids(tensors)
    assert all(piece.dtype == torch.float32 for piece in pieces)
    flat = torch.cat(pieces)
    offset = 0
    for index in plan.order:
        rows, cols, reduction = plan.shapes[index]
        grid = flat[offset : offset + rows * cols].reshape(rows, cols) * plan.scales[index]
        offset += rows * cols
        want, want_reduction = pooling.heatmap_grid("t", tensors[index])
        assert (rows, cols) == tuple(want.shape)
        assert reduction == want_reduction
        np.testing.assert_allclose(grid.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert offset == flat.numel()


def test_heatmap_plan_rejects_other_tensors():
    plan = pooling.HeatmapPlan([torch.zeros(3)])
    with pytest.raises(ValueError, match="1 planned"):
        plan.flat_grids([torch.zeros(3), torch.zeros(3)])
    with pytest.raises(ValueError, match="empty"):
        pooling.HeatmapPlan([torch.zeros(0)])


def test_a_0d_tensor_is_one_cell():
    """A learnable temperature (CLIP's logit_scale) is a parameter too."""
    scalar = torch.tensor(2.5)
    grid, reduction = pooling.heatmap_grid("t", scalar)
    assert grid.tolist() == [[2.5]] and reduction == "none"
    plan = pooling.HeatmapPlan([torch.randn(3, 4), scalar])
    assert plan.shapes[1] == (1, 1, "none")
    assert torch.cat(plan.flat_grids([torch.randn(3, 4), scalar]))[-1].item() == 2.5


def test_nonzero_count_counts_nan_as_nonzero():
    value = torch.tensor([0.0, 1.0, float("nan"), -0.0, -2.0])
    assert int(reduce.nonzero_count(value)) == 3


def test_module_is_documented():
    from torch_visualization import watch

    for name in ("watch", "Watch", "ACTIVATION_TYPES"):
        assert hasattr(watch, name)
    assert watch.Watch.remove.__doc__
    assert "log_every" in SummaryWriter.watch.__doc__
    # A package of small parts, one job each (ARCHITECTURE.md names them).
    folder = os.path.dirname(watch.__file__)
    parts = sorted(f for f in os.listdir(folder) if f.endswith(".py"))
    assert {"__init__.py", "capture.py", "handle.py", "reducer.py", "replay.py"} <= set(parts)
    with open(os.path.join(os.path.dirname(__file__), "..", "ARCHITECTURE.md")) as source:
        architecture = source.read()
    for part in parts:
        if part != "__init__.py":
            assert "`%s`" % part in architecture, "ARCHITECTURE.md does not name watch/%s" % part
    for part in parts:
        with open(os.path.join(folder, part)) as source:
            assert len(source.read().splitlines()) <= 400, part


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.linspace(-1, 1, 300).astype(np.float64),
    np.full((64, 64), np.nan, dtype=np.float32),
    np.linspace(-1, 1, 65 * 64).astype(np.float16).reshape(65, 64),
])
def test_value_encoder_bytes_equal_protobufs(array):
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    from torch_visualization import sink

    tag = "weights/layer." + "x" * 200  # a tag longer than one varint byte
    dtype = {np.dtype(np.float64): types_pb2.DT_DOUBLE, np.dtype(np.float32): types_pb2.DT_FLOAT,
             np.dtype(np.float16): types_pb2.DT_HALF}[array.dtype]
    expected = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_pb2.TensorProto(
            dtype=dtype,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]
            ),
            tensor_content=array.tobytes(),
        ),
    )]).SerializeToString()
    encoder = sink._ValueEncoder()
    for _ in range(2):  # the second call reuses the kept prefix
        assert encoder.prefix(tag, array) + array.tobytes() == expected


def test_outputs_none_turns_the_pie_off_without_a_warning(tmp_path):
    import warnings

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, outputs="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.randn(5, 4)).sum().backward()
            optimizer.step()
    writer.close()
    assert not [w for w in caught if "outputs/classes" in str(w.message)]
