"""Distributed statistics: 2 gloo processes on CPU equal one process.

Each test spawns 2 ranks (torch.multiprocessing, gloo, loopback), runs the
same model and data split in halves, and compares what rank 0 computed or
logged with the same model trained on the whole batch in this process.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import end_rank, free_port, spawn_ranks
from torch_visualization import distributed, pooling

WORLD = 2
BATCH = 8  # split evenly: each rank's mean loss averages to the full mean

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no torch.distributed with gloo",
)



def spawn(worker, *args):
    """Runs `worker(rank, port, *args)` on 2 gloo ranks; raises if one fails."""
    markers = tempfile.mkdtemp(prefix="tv-ranks-")
    spawn_ranks(_bootstrap, WORLD, (worker, free_port(), markers, args), markers)


def _bootstrap(rank, worker, port, markers, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    # One thread per rank: the two ranks share the machine's cores.
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        worker(rank, *args)
    except BaseException:
        dist.destroy_process_group()
        raise
    end_rank(rank, WORLD, markers)


# -- models and data shared by both sides ----------------------------------


class ConvNet(torch.nn.Module):
    """Conv (4-D weight), a pooled Linear (130 x 100) and an odd-sized head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)
        self.fc = torch.nn.Linear(5 * 4 * 4, 130)
        self.fc2 = torch.nn.Linear(130, 100)
        self.head = torch.nn.Linear(100, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x)).flatten(1)
        return self.head(torch.relu(self.fc2(torch.relu(self.fc(x)))))


def _model_and_batch():
    torch.manual_seed(0)
    model = ConvNet()
    x = torch.randn(BATCH, 3, 6, 6)
    y = torch.randint(0, 3, (BATCH,))
    return model, x, y


def _loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def _half(tensor, rank):
    size = BATCH // WORLD
    return tensor[rank * size:(rank + 1) * size]


# -- FSDP2: sharded statistics and pooled grids ----------------------------


def _fsdp_stats_worker(rank, out_path):
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    model, x, y = _model_and_batch()
    for module in (model.conv, model.fc, model.fc2, model.head):
        fully_shard(module)
    fully_shard(model)
    _loss(model, _half(x, rank), _half(y, rank)).backward()

    params = list(model.named_parameters())
    assert all(distributed.is_sharded(p) for _, p in params)
    assert distributed.needs_collectives([p for _, p in params])
    grads = distributed.global_stats(
        [p.grad for _, p in params], stats=("norm", "mean_abs", "max_abs", "nonfinite")
    )
    weights = distributed.global_stats([p for _, p in params], stats=("norm",))
    grids = distributed.heatmap_grids(
        [(name, p) for name, p in params], max_cells=(64, 64)
    )

    # Column shards, a 3-D tensor sharded on a trailing dim, planted NaN/Inf.
    mesh = init_device_mesh("cpu", (WORLD,))
    extra = _extra_tensors()
    extra_grids = distributed.heatmap_grids(
        [
            ("cols", distribute_tensor(extra["cols"], mesh, [Shard(1)])),
            ("deep", distribute_tensor(extra["deep"], mesh, [Shard(2)])),
            ("nan", distribute_tensor(extra["nan"], mesh, [Shard(0)])),
            ("tiny", distribute_tensor(extra["tiny"], mesh, [Shard(0)])),
        ],
        max_cells=(8, 8),
    )
    if rank == 0:
        torch.save(
            {
                "names": [name for name, _ in params],
                "grads": grads,
                "weights": weights,
                "grids": [(g.clone(), r) for g, r in grids],
                "extra_grids": [(g.clone(), r) for g, r in extra_grids],
            },
            out_path,
        )


def _extra_tensors():
    gen = torch.Generator().manual_seed(1)
    nan = torch.randn(21, 19, generator=gen)
    nan[3, 4] = float("nan")
    nan[17, 2] = float("inf")
    return {
        "cols": torch.randn(9, 23, generator=gen),
        "deep": torch.randn(5, 3, 7, generator=gen),
        "nan": nan,
        "tiny": torch.randn(1, 3, generator=gen),  # rank 1 holds an empty shard
    }


def test_fsdp_shard_stats_and_grids_equal_single_process(tmp_path):
    out_path = str(tmp_path / "rank0.pt")
    spawn(_fsdp_stats_worker, out_path)
    got = torch.load(out_path)

    model, x, y = _model_and_batch()
    _loss(model, x, y).backward()
    params = list(model.named_parameters())
    assert got["names"] == [name for name, _ in params]
    grads = [p.grad for _, p in params]
    expected = {
        "norm": [g.norm().item() for g in grads],
        "mean_abs": [g.abs().mean().item() for g in grads],
        "max_abs": [g.abs().max().item() for g in grads],
        "nonfinite": [0.0] * len(grads),
    }
    for stat, values in expected.items():
        np.testing.assert_allclose(got["grads"][stat].numpy(), values, rtol=1e-5, atol=1e-8,
                                   err_msg="gradient %s" % stat)
    np.testing.assert_allclose(
        got["weights"]["norm"].numpy(), [p.norm().item() for _, p in params], rtol=1e-6
    )
    for (name, p), (grid, reduction) in zip(params, got["grids"]):
        want, want_reduction = pooling.heatmap_grid(name, p.detach(), (64, 64))
        assert reduction == want_reduction, name
        np.testing.assert_allclose(grid.numpy(), want.numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
    # fc (130 x 80) and fc2 (100 x 130) are pooled: the bins cross the shard
    # boundary, so this is the case that needs the per-bin partial sums.
    assert dict(zip(got["names"], [r for _, r in got["grids"]]))["fc.weight"] == "mean_pool"

    for (name, tensor), (grid, reduction) in zip(_extra_tensors().items(), got["extra_grids"]):
        want, want_reduction = pooling.heatmap_grid(name, tensor, (8, 8))
        assert reduction == want_reduction, name
        np.testing.assert_allclose(grid.numpy(), want.numpy(), rtol=1e-5, atol=1e-7,
                                   equal_nan=True, err_msg=name)
    nan_grid = got["extra_grids"][2][0]
    # NaN and Inf stay inside the bins that hold them, as in adaptive pooling.
    assert 0 < torch.isnan(nan_grid).sum() < nan_grid.numel()
    assert torch.isinf(nan_grid).any()


# -- without a process group nothing communicates --------------------------


def test_single_process_functions_equal_reduce():
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.is_writer()
    weight = torch.randn(70, 9)
    weight[0, 0] = float("nan")
    stats = distributed.global_stats([weight, None], stats=("norm", "nonfinite", "max_abs"))
    assert torch.isnan(stats["norm"][0]) and stats["norm"][1] == 0
    assert stats["nonfinite"].tolist() == [1.0, 0.0]
    (grid, reduction), = distributed.heatmap_grids([("w", weight)], max_cells=8)
    want, want_reduction = pooling.heatmap_grid("w", weight, 8)
    assert reduction == want_reduction == "mean_pool"
    torch.testing.assert_close(grid, want, equal_nan=True)
    counts = torch.tensor([1.0, 2.0])
    assert distributed.sum_across_ranks(counts) is counts and counts.tolist() == [1.0, 2.0]
    assert not distributed.needs_collectives([weight, None])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stats must be some of"):
        distributed.global_stats([torch.ones(2)], stats=("median",))
    with pytest.raises(TypeError, match="torch.Tensor"):
        distributed.sum_across_ranks([1.0, 2.0])


# -- watch() end to end: DDP and FSDP2 against one process ------------------

WATCH_STEPS = 3
WATCH_CLASSES = ["a", "b", "c"]


def _watch_model_and_data():
    """A pooled first layer (130 x 70 > 64 x 64) so FSDP pools across shards."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(70, 130), torch.nn.ReLU(), torch.nn.Linear(130, 3)
    )
    x = torch.randn(BATCH, 70)
    y = torch.randint(0, 3, (BATCH,))
    return model, x, y


def _train_watched(writer, model, x, y, watched=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = writer.watch(
        watched if watched is not None else model, optimizer,
        log_every=1, class_names=WATCH_CLASSES,
    )
    for _ in range(WATCH_STEPS):
        optimizer.zero_grad()
        _loss(model, x, y).backward()
        optimizer.step()
    handle.remove()
    writer.close()


def _watch_worker(rank, logdir, mode):
    from torch.nn.parallel import DistributedDataParallel

    from torch_visualization import SummaryWriter

    model, x, y = _watch_model_and_data()
    if mode == "ddp":
        model = DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard

        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
    # Every rank calls watch (the logging steps end in collectives); each
    # rank gets its own directory here so the test can see who wrote what.
    writer = SummaryWriter(os.path.join(logdir, "rank%d" % rank))
    _train_watched(writer, model, _half(x, rank), _half(y, rank))


def _reference(logdir):
    from torch_visualization import SummaryWriter

    model, x, y = _watch_model_and_data()
    _train_watched(SummaryWriter(os.path.join(logdir, "single")), model, x, y)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_watch_on_two_ranks_logs_what_one_process_logs(tmp_path, mode):
    from torch_visualization import read

    logdir = str(tmp_path)
    spawn(_watch_worker, logdir, mode)
    _reference(logdir)
    data = read(logdir)
    # Rank 1 took part in the collectives but wrote nothing of ours.
    assert "rank1" not in data
    got, want = data["rank0"], data["single"]
    assert set(got) == set(want)
    assert {"gradients/norm", "updates/ratio", "activations/zero_fraction",
            "outputs/classes", "weights/0.weight"} <= set(got)
    for tag in sorted(want):
        assert got[tag].steps == want[tag].steps == list(range(WATCH_STEPS)), tag
        assert got[tag].labels == want[tag].labels, tag
        # Heatmaps are stored in float16 (metadata.encode_heatmap_grid): pooled
        # shard by shard, a mean that differs in the last float32 bits from the
        # single process's may round to the neighbouring float16 value.
        rtol = 2.0**-10 if got[tag].kind == "heatmap" else 2e-5
        for step, a, b in zip(want[tag].steps, got[tag].values, want[tag].values):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7,
                                       err_msg="%s %s step %d" % (mode, tag, step))
    assert got["weights/0.weight"].reduction == "mean_pool"
