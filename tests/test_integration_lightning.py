"""The Lightning callback on the real package: a tiny model, a few CPU steps."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

L = pytest.importorskip("lightning.pytorch", reason="lightning (test extra) is not installed")

from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

from conftest import leave_process_group  # noqa: E402

from torch_visualization import read  # noqa: E402
from torch_visualization.integrations.lightning import TorchVisualizationCallback  # noqa: E402

CLASS_NAMES = ["a", "b", "c"]
STEPS = 6        # optimizer steps
ACCUMULATE = 2   # batches per optimizer step
LOG_EVERY = 2


class TinyClassifier(L.LightningModule):
    """Records every gradient Lightning hands to the optimizer, by global step."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        self.grad_norms = {}

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def on_before_optimizer_step(self, optimizer):
        # Lightning calls this after backward (and AMP unscaling), right
        # before the optimizer updates: the gradients the step uses.
        self.grad_norms[self.trainer.global_step] = [
            p.grad.detach().float().norm().item() for p in self.parameters()
        ]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(64, 4, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    )
    return torch.utils.data.DataLoader(data, batch_size=4)


def _fit(trainer_module, tmp_path, **trainer_kwargs):
    torch.manual_seed(0)
    model = TinyClassifier()
    callback = TorchVisualizationCallback(class_names=CLASS_NAMES)
    options = dict(
        max_steps=STEPS,
        accumulate_grad_batches=ACCUMULATE,
        log_every_n_steps=LOG_EVERY,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[callback],
    )
    options.update(trainer_kwargs)
    trainer = trainer_module.Trainer(**options)
    trainer.fit(model, _loader())
    return model, callback, trainer


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_logs_beside_the_tensorboard_logger_with_the_gradients_the_optimizer_used(
    tmp_path, precision
):
    if precision == "16-mixed" and not torch.cuda.is_available():
        pytest.skip("fp16 AMP with a GradScaler needs CUDA; on CPU Lightning "
                    "replaces 16-mixed with bf16-mixed (tested above)")
    logger = TensorBoardLogger(str(tmp_path), name="exp")
    # fp16 runs where it is real: on the GPU, with Lightning's GradScaler.
    device = {"accelerator": "gpu"} if precision == "16-mixed" else {}
    model, callback, trainer = _fit(L, tmp_path, logger=logger, precision=precision, **device)

    # One run: the logger's version directory holds its scalars and our tab.
    run_dir = logger.log_dir
    data = read(os.path.join(str(tmp_path), "exp"))
    assert list(data) == [os.path.basename(run_dir)]
    tags = data[os.path.basename(run_dir)]
    scalars = event_accumulator.EventAccumulator(run_dir)
    scalars.Reload()
    assert "train_loss" in scalars.Tags()["scalars"]

    # Optimizer steps are counted (not the 12 backward passes), logging at
    # the trainer's log_every_n_steps, under the trainer's global step.
    expected_steps = list(range(0, STEPS, LOG_EVERY))
    assert tags["gradients/norm"].steps == expected_steps
    assert trainer.global_step == STEPS
    names = [name for name, _ in model.named_parameters()]
    assert tags["gradients/norm"].labels == names
    for step, values in zip(tags["gradients/norm"].steps, tags["gradients/norm"].values):
        # The whole accumulated (and unscaled) gradient of that step.
        np.testing.assert_allclose(values, model.grad_norms[step], rtol=1e-5, err_msg=str(step))
    assert tags["outputs/classes"].labels == CLASS_NAMES
    assert {"updates/ratio", "activations/zero_fraction", "weights/net.0.weight"} <= set(tags)

    # Fit is over: every hook is gone and the writer is closed.
    assert callback.writer is None
    assert not model.net[1]._forward_hooks and not model._forward_hooks


def test_without_a_tensorboard_logger_it_writes_to_log_dir(tmp_path):
    target = tmp_path / "insight"
    torch.manual_seed(0)
    model = TinyClassifier()
    trainer = L.Trainer(
        max_steps=2, log_every_n_steps=1, logger=False, accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[TorchVisualizationCallback(log_dir=str(target), log_every=1)],
    )
    trainer.fit(model, _loader())
    data = read(str(tmp_path))
    assert list(data) == ["insight"]
    assert data["insight"]["gradients/norm"].steps == [0, 1]


def test_a_resumed_fit_continues_the_step_axis(tmp_path):
    """Resuming from a checkpoint: the tab's steps go on where SCALARS do."""
    target = tmp_path / "insight"

    def fit(max_steps, ckpt_path=None):
        torch.manual_seed(0)
        trainer = L.Trainer(
            max_steps=max_steps, log_every_n_steps=2, logger=False, accelerator="cpu",
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            callbacks=[TorchVisualizationCallback(log_dir=str(target), log_every=2)],
        )
        trainer.fit(TinyClassifier(), _loader(), ckpt_path=ckpt_path)
        return trainer

    first = fit(4)
    checkpoint = str(tmp_path / "step4.ckpt")
    first.save_checkpoint(checkpoint)
    second = fit(8, ckpt_path=checkpoint)
    assert second.global_step == 8
    assert read(str(tmp_path))["insight"]["gradients/norm"].steps == [0, 2, 4, 6]


def test_standalone_pytorch_lightning_package(tmp_path):
    pl = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    from pytorch_lightning.loggers import TensorBoardLogger as PLLogger

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = PLLogger(str(tmp_path), name="pl")
    trainer = pl.Trainer(
        max_steps=3, log_every_n_steps=1, logger=logger, accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[TorchVisualizationCallback()],
    )
    trainer.fit(Module(), _loader())
    data = read(os.path.join(str(tmp_path), "pl"))
    (run,) = data.values()
    assert run["gradients/norm"].steps == [0, 1, 2]
    assert run["gradients/norm"].labels == ["net.weight", "net.bias"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="log_every"):
        TorchVisualizationCallback(log_every=0)
    with pytest.raises(ValueError, match="optimizer_index"):
        TorchVisualizationCallback(optimizer_index=-1)


def test_importing_the_package_imports_no_framework():
    code = (
        "import sys, torch_visualization, torch_visualization.integrations\n"
        "from torch_visualization import SummaryWriter, read\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'transformers') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


class ShardedDataClassifier(TinyClassifier):
    """Each DDP rank reads every other sample of each global batch of 8."""

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(
            torch.randn(64, 4, generator=generator), torch.randint(0, 3, (64,), generator=generator)
        )
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = torch.utils.data.distributed.DistributedSampler(
            data, num_replicas=world, rank=rank, shuffle=False
        )
        return torch.utils.data.DataLoader(data, batch_size=8 // world, sampler=sampler)


class _LeaveTogether(L.Callback):
    """Lightning leaves a gloo group to the process's exit; ranks then tear it
    down in any order, and one can abort after its work is done. This leaves
    it at the end of fit, every rank together, rank 0 last."""

    def __init__(self, marker_dir):
        self.marker_dir = marker_dir

    def on_fit_end(self, trainer, pl_module):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            leave_process_group(trainer.global_rank, trainer.world_size, self.marker_dir)


def _fit_ddp_or_single(root, **trainer_kwargs):
    torch.manual_seed(0)
    os.makedirs(root, exist_ok=True)
    trainer = L.Trainer(
        max_steps=3, log_every_n_steps=1, logger=TensorBoardLogger(root, name="run"),
        accelerator="cpu", use_distributed_sampler=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        callbacks=[TorchVisualizationCallback(class_names=CLASS_NAMES), _LeaveTogether(root)],
        **trainer_kwargs,
    )
    trainer.fit(ShardedDataClassifier())
    return read(os.path.join(root, "run"))


def test_ddp_on_two_cpu_ranks_logs_what_one_process_logs(tmp_path):
    ddp = _fit_ddp_or_single(str(tmp_path / "ddp"), strategy="ddp_spawn", devices=2)
    single = _fit_ddp_or_single(str(tmp_path / "single"), devices=1)
    # Rank 1 created no run directory of its own.
    assert list(ddp) == list(single) == ["version_0"]
    got, want = ddp["version_0"], single["version_0"]
    assert set(got) == set(want)
    for tag in sorted(want):
        assert got[tag].steps == want[tag].steps == [0, 1, 2], tag
        # Heatmaps are stored in float16 (metadata.encode_heatmap_grid): a mean
        # that differs in its last float32 bits may round to the neighbouring
        # float16 value.
        rtol = 2.0**-10 if got[tag].kind == "heatmap" else 1e-5
        for a, b in zip(got[tag].values, want[tag].values):
            # Class shares and dead-unit fractions too: summed over ranks.
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7, err_msg=tag)
