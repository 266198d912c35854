"""PyTorch Lightning: a `Callback` that watches the LightningModule.

    from lightning.pytorch import Trainer
    from torch_visualization.integrations.lightning import TorchVisualizationCallback

    trainer = Trainer(callbacks=[TorchVisualizationCallback(class_names=names)])

What it does, at `on_train_start` (the optimizers and a resumed run's global
step exist by then):

- finds the run's `TensorBoardLogger` and writes into its `log_dir` (our
  events go in a file of their own beside the logger's, so the "Model
  Insight" tab sits beside the logger's scalars in the same run); without a
  TensorBoard logger it writes into `trainer.log_dir` (or `log_dir=`);
- calls `writer.watch(pl_module, optimizer, log_every=...)` with the
  trainer's optimizer and, by default, `trainer.log_every_n_steps`.

`watch()` counts optimizer steps, so `accumulate_grad_batches` is respected,
and reads gradients in the optimizer's step hook: Lightning's mixed-precision
plugin unscales gradients before it calls `optimizer.step`, so `16-mixed`
gives the same norms as `32-true`. Under the `ddp` / `ddp_spawn` strategies
and FSDP2 (`ModelParallelStrategy` with `fully_shard`) the callback is active
on every rank (watch's collectives need every rank); only global rank 0
writes. Lightning's `fsdp` strategy wraps the model in FSDP1
(`FullyShardedDataParallel`), which `watch()` refuses with a clear error: its
flat-parameter shards cannot be logged per parameter. A run resumed from a
checkpoint continues at the trainer's global step.

Works with both `lightning` (`lightning.pytorch`) and the standalone
`pytorch_lightning` package: the hooks are plain methods Lightning looks up by
name.
"""

from __future__ import annotations

import os

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning import Callback as _Callback
    except ImportError:
        raise ImportError(
            "torch_visualization.integrations.lightning needs PyTorch Lightning: "
            "pip install lightning"
        ) from None

from torch_visualization import watch as watch_module
from torch_visualization.writer import SummaryWriter


def _is_tensorboard_logger(logger):
    # By class name, so that loggers of either Lightning package match.
    return any(cls.__name__ == "TensorBoardLogger" for cls in type(logger).__mro__)


class TorchVisualizationCallback(_Callback):
    """Logs weights, gradients, updates, activations and class shares.

    Args:
      log_every: Log every this many optimizer steps; the trainer's
        `log_every_n_steps` when None.
      class_names: Names of the model output's classes (for the
        `outputs/classes` pie of `[batch, classes]` outputs).
      log_dir: Where to write when the trainer has no `TensorBoardLogger`;
        `trainer.log_dir` when None.
      optimizer_index: Which of the trainer's optimizers `watch()` follows
        (its steps are the ones counted); 0 by default.
      **watch_kwargs: Passed on to `SummaryWriter.watch`.
    """

    def __init__(self, log_every=None, *, class_names=None, log_dir=None, optimizer_index=0,
                 **watch_kwargs):
        super().__init__()
        if log_every is not None and (
            isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1
        ):
            raise ValueError("log_every must be a positive int or None, got %r" % (log_every,))
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int) or (
            optimizer_index < 0
        ):
            raise ValueError("optimizer_index must be an int >= 0, got %r" % (optimizer_index,))
        self.log_every = log_every
        self.class_names = class_names
        self.log_dir = log_dir
        self.optimizer_index = optimizer_index
        self.watch_kwargs = watch_kwargs
        self.writer = None
        self._handle = None

    def resolve_log_dir(self, trainer):
        """The directory our events go to (the TensorBoardLogger's run)."""
        for logger in trainer.loggers:
            if _is_tensorboard_logger(logger):
                return logger.log_dir
        if self.log_dir is not None:
            return os.fspath(self.log_dir)
        return trainer.log_dir or trainer.default_root_dir

    def on_train_start(self, trainer, pl_module):
        # Not on_fit_start: a resumed fit restores its global step (and the
        # optimizers' state) between the two.
        if self._handle is not None:
            return  # a second fit() on the same callback keeps watching
        optimizers = trainer.optimizers
        if optimizers and self.optimizer_index >= len(optimizers):
            raise ValueError(
                "optimizer_index %d: the trainer has only %d optimizer(s)"
                % (self.optimizer_index, len(optimizers))
            )
        optimizer = optimizers[self.optimizer_index] if optimizers else None
        options = dict(
            log_every=self.log_every or trainer.log_every_n_steps,
            class_names=self.class_names,
            # A run resumed from a checkpoint continues its step axis, in
            # line with the logger's scalars.
            start_step=trainer.global_step,
        )
        options.update(self.watch_kwargs)
        if trainer.is_global_zero:
            self.writer = SummaryWriter(self.resolve_log_dir(trainer))
            self._handle = self.writer.watch(pl_module, optimizer, **options)
        else:
            # Other ranks take part in the logging steps' collectives but
            # write nothing: no writer, so no event file and no version
            # directory of the logger is created on them.
            self._handle = watch_module.watch(None, pl_module, optimizer, **options)

    def _stop(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_fit_end(self, trainer, pl_module):
        self._stop()

    def on_exception(self, trainer, pl_module, exception):
        self._stop()
