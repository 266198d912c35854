"""Device-side reductions against numpy references."""

import math

import numpy as np
import pytest
import torch

from torch_visualization import pooling, reduce


def adaptive_mean_pool_reference(matrix, out_rows, out_cols):
    """PyTorch's adaptive pooling bins, written out in numpy."""
    rows, cols = matrix.shape
    result = np.empty((out_rows, out_cols), dtype=np.float64)
    for i in range(out_rows):
        r0, r1 = (i * rows) // out_rows, math.ceil((i + 1) * rows / out_rows)
        for j in range(out_cols):
            c0, c1 = (j * cols) // out_cols, math.ceil((j + 1) * cols / out_cols)
            result[i, j] = matrix[r0:r1, c0:c1].mean()
    return result


@pytest.mark.parametrize("shape", [(200, 300), (128, 64), (65, 1000), (10, 4096)])
def test_pooling_matches_numpy_reference(shape):
    tensor = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    grid, reduction = pooling.heatmap_grid("w", tensor)
    assert reduction == "mean_pool"
    out = (min(shape[0], 64), min(shape[1], 64))
    assert tuple(grid.shape) == out
    np.testing.assert_allclose(
        grid.numpy(), adaptive_mean_pool_reference(tensor.double().numpy(), *out), rtol=1e-5, atol=1e-6
    )


def test_small_tensors_are_kept_as_they_are():
    tensor = torch.arange(12.0).reshape(3, 4)
    grid, reduction = pooling.heatmap_grid("w", tensor)
    assert reduction == "none"
    np.testing.assert_array_equal(grid.numpy(), tensor.numpy())


def test_shapes_flatten_as_documented():
    assert tuple(pooling.as_matrix(torch.zeros(7)).shape) == (1, 7)
    assert tuple(pooling.as_matrix(torch.zeros(8, 3, 3, 3)).shape) == (8, 27)
    assert tuple(pooling.as_matrix(torch.zeros(2, 3, 4)).shape) == (2, 12)


def test_max_cells_is_configurable():
    grid, _ = pooling.heatmap_grid("w", torch.randn(100, 100), max_cells=(10, 20))
    assert tuple(grid.shape) == (10, 20)
    grid, _ = pooling.heatmap_grid("w", torch.randn(100, 100), max_cells=16)
    assert tuple(grid.shape) == (16, 16)
    with pytest.raises(ValueError, match="positive"):
        pooling.heatmap_grid("w", torch.randn(3, 3), max_cells=0)
    with pytest.raises(TypeError, match="max_cells"):
        pooling.heatmap_grid("w", torch.randn(3, 3), max_cells="big")


def test_non_finite_stays_visible_after_pooling():
    tensor = torch.zeros(128, 128)
    tensor[5, 5] = float("nan")
    tensor[100, 100] = float("inf")
    grid, _ = pooling.heatmap_grid("w", tensor)
    assert torch.isnan(grid[2, 2])
    assert grid[50, 50] == float("inf")
    assert torch.isfinite(grid).sum() == grid.numel() - 2


def test_low_precision_and_integer_inputs():
    grid, _ = pooling.heatmap_grid("w", torch.ones(4, 4, dtype=torch.bfloat16))
    assert grid.dtype == torch.float32
    grid, _ = pooling.heatmap_grid("w", torch.arange(6, dtype=torch.int64))
    np.testing.assert_array_equal(grid.numpy(), [[0, 1, 2, 3, 4, 5]])


@pytest.mark.parametrize(
    "tensor, error, message",
    [
        (torch.zeros(0, 3), ValueError, "empty"),
        (torch.zeros(2, dtype=torch.complex64), TypeError, "complex64"),
        (torch.zeros(2, dtype=torch.bool), TypeError, "torch.bool"),
    ],
)
def test_heatmap_rejects_bad_tensors(tensor, error, message):
    with pytest.raises(error, match=message):
        pooling.heatmap_grid("weights/x", tensor)


def test_gradient_stats_match_reference():
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    model(torch.randn(3, 5)).pow(2).sum().backward()
    model[0].bias.grad = None  # a missing gradient counts as zero
    for stat, reference in [
        ("norm", lambda g: g.norm().item()),
        ("mean_abs", lambda g: g.abs().mean().item()),
        ("max_abs", lambda g: g.abs().max().item()),
    ]:
        names, values = reduce.parameter_gradient_stats(model.named_parameters(), stat)
        assert names == ["0.weight", "0.bias", "2.weight"]
        expected = [reference(model[0].weight.grad), 0.0, reference(model[2].weight.grad)]
        np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown gradient stat 'median'"):
        reduce.parameter_gradient_stats(model.named_parameters(), "median")


def test_confusion_counts_match_reference():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(200, 4, generator=generator)
    targets = torch.randint(0, 4, (200,), generator=generator)
    counts = reduce.confusion_counts("cm", logits, targets)
    reference = np.zeros((4, 4), dtype=np.int64)
    for true, predicted in zip(targets.tolist(), logits.argmax(dim=1).tolist()):
        reference[true, predicted] += 1
    np.testing.assert_array_equal(counts.numpy(), reference)
    from_indices = reduce.confusion_counts("cm", logits.argmax(dim=1), targets, num_classes=4)
    np.testing.assert_array_equal(from_indices.numpy(), reference)


@pytest.mark.parametrize(
    "predictions, targets, num_classes, error, message",
    [
        (torch.tensor([0, 5]), torch.tensor([0, 1]), 3, ValueError, "must be in [0, 3), got values in [0, 5]"),
        (torch.tensor([0, 1]), torch.tensor([0, -1]), 3, ValueError, "must be in [0, 3)"),
        (torch.tensor([0, 1]), torch.tensor([0]), 3, ValueError, "2 predictions but 1 targets"),
        (torch.tensor([0.5, 1.0]), torch.tensor([0, 1]), 3, ValueError, "integer class indices or [N, classes] logits"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), None, ValueError, "targets must be [N] integer"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), 4, ValueError, "logits have 3 classes but num_classes is 4"),
        (torch.tensor([0, 1]), torch.tensor([0, 1]), None, ValueError, "give num_classes or class_names"),
        ([0, 1], torch.tensor([0, 1]), 2, TypeError, "predictions must be a torch.Tensor"),
        (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), 2, ValueError, "empty"),
    ],
)
def test_confusion_rejects_bad_input(predictions, targets, num_classes, error, message):
    with pytest.raises(error) as info:
        reduce.confusion_counts("eval/cm", predictions, targets, num_classes)
    assert message in str(info.value) and "'eval/cm'" in str(info.value)


def test_transposed_weights_pool_like_their_contiguous_copy():
    weight = torch.randn(300, 130, generator=torch.Generator().manual_seed(5))
    transposed = weight.t()
    assert not transposed.is_contiguous()
    grid, reduction = pooling.heatmap_grid("w", transposed)
    expected, _ = pooling.heatmap_grid("w", transposed.contiguous())
    assert reduction == "mean_pool" and tuple(grid.shape) == (64, 64)
    np.testing.assert_allclose(grid.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_gradient_statistics_every_kernel_equals_torch(dtype):
    """The one statistics path: CPU passes (with and without a scratch
    buffer) and the fused accelerator launches give the same vector."""
    torch.manual_seed(0)
    tensors = [
        torch.randn(37, 11).to(dtype),
        torch.randn(5).to(dtype),
        torch.randn(8, 6).to(dtype).t(),  # not contiguous
        torch.tensor([1.0, float("nan"), -2.0]).to(dtype),
        torch.tensor([[float("-inf"), 3.0]]).to(dtype),
    ]
    wide = [t.double() for t in tensors]
    expected = torch.tensor(
        [float((t * t).sum()) for t in wide]
        + [float(t.abs().sum()) for t in wide]
        + [float(t.abs().max()) for t in wide],
        dtype=torch.float32,
    )
    scratch = torch.empty(max(t.numel() for t in tensors))
    tolerance = dict(rtol=1e-2, atol=1e-2) if dtype == torch.bfloat16 else {}
    for got in (
        reduce.gradient_statistics(tensors, fused=False, scratch=scratch),
        reduce.gradient_statistics(tensors, fused=False),
        reduce.gradient_statistics(tensors, fused=True),
    ):
        assert got.dtype == torch.float32 and got.shape == (3 * len(tensors),)
        torch.testing.assert_close(got, expected, equal_nan=True, **tolerance)
    rows = reduce.split_statistics(expected, len(tensors))
    assert list(rows) == list(reduce.STAT_ROWS)
    torch.testing.assert_close(rows["abs_max"], expected[2 * len(tensors):], equal_nan=True)
    squares = reduce.squared_l2_norms(tensors, fused=False)
    torch.testing.assert_close(squares, reduce.squared_l2_norms(tensors, fused=True), equal_nan=True)


def test_nonfinite_counts_fused_and_selected_agree():
    tensors = [torch.tensor([1.0, float("nan"), float("inf")]), torch.ones(4),
               torch.full((2, 2), float("-inf"))]
    fused = reduce.nonfinite_counts(tensors)
    assert fused.tolist() == [2.0, 0.0, 4.0]
    assert reduce.nonfinite_counts(tensors, only=[0, 2]).tolist() == [2.0, 0.0, 4.0]
    assert reduce.nonfinite_counts(tensors, only=[]).tolist() == [0.0, 0.0, 0.0]
    # Laid end to end (the CUDA graph's way): the same counts.
    lengths = reduce.device_tensor([t.numel() for t in tensors], "cpu", torch.int64)
    assert reduce.nonfinite_counts(tensors, lengths=lengths).tolist() == [2.0, 0.0, 4.0]


def test_sparse_and_missing_gradients_are_summarised_by_their_values():
    assert reduce.dense_values(None) is None
    # Duplicate indices are summed (coalesced): the stored rows are 1 and -2 + 4.
    sparse = torch.sparse_coo_tensor([[0, 3, 3]], [1.0, -2.0, 4.0], (5,))
    assert sorted(reduce.dense_values(sparse).tolist()) == [1.0, 2.0]
    assert reduce.dense_values(torch.zeros(0)) is None


def test_stack_scalars_keeps_mixed_dtypes_exact():
    values = [torch.tensor(1.5), torch.tensor(7, dtype=torch.int64), torch.tensor(2.0, dtype=torch.bfloat16)]
    got = reduce.stack_scalars(values)
    assert got.dtype == torch.float32
    assert got.tolist() == [1.5, 7.0, 2.0]
    assert reduce.stack_scalars([torch.tensor(3), torch.tensor(4)]).tolist() == [3.0, 4.0]
