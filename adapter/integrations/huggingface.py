"""Hugging Face `Trainer`: a TensorBoard callback that also watches the model.

    from transformers import Trainer, TrainingArguments
    from torch_visualization.integrations.huggingface import TorchVisualizationCallback

    args = TrainingArguments("out", logging_steps=50, report_to="none")
    trainer = Trainer(model, args, train_dataset=ds,
                      callbacks=[TorchVisualizationCallback()])

`TorchVisualizationCallback` IS the Trainer's TensorBoard integration
(`transformers.integrations.TensorBoardCallback`) with our `SummaryWriter`
inside: the Trainer's scalars (loss, learning rate, ...) and the "Model
Insight" tab are written by one writer into one run, the directory the
TensorBoard integration would use (`TENSORBOARD_LOGGING_DIR`, or
`<output_dir>/runs/<date>_<host>`). Use it instead of
`report_to="tensorboard"`, not beside it (that would write the scalars
twice).

At `on_train_begin` it calls `writer.watch(model, optimizer, ...)` with the
Trainer's optimizer (unwrapped from Accelerate's wrapper), logging every
`args.logging_steps` optimizer steps (gradient accumulation respected), and,
for sequence classification, the `outputs/classes` pie labelled with the
model's `config.id2label`, and with the Trainer's tokenizer (its
`processing_class`, or the tokenizer inside a multimodal processor) as the
token labels of the attention card (`tokens=`: each logging step writes the
first example's tokens under `attention/tokens`).
"""

from __future__ import annotations

import os
import warnings

try:
    from transformers.integrations import TensorBoardCallback as _TensorBoardCallback
    from transformers.integrations.integration_utils import default_logdir
except ImportError:
    raise ImportError(
        "torch_visualization.integrations.huggingface needs transformers: "
        "pip install transformers"
    ) from None

import torch

from torch_visualization import watch as watch_module
from torch_visualization.writer import SummaryWriter


def class_names_of(model):
    """`config.id2label` as a list ordered by class index, or None.

    Only for models whose config says they classify (`num_labels > 1`, not a
    regression problem) and whose labels cover `0 .. num_labels - 1`.
    """
    if "Classification" not in type(model).__name__:
        return None  # every config has id2label (2 labels by default); LMs too
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None)
    num_labels = getattr(config, "num_labels", None)
    if not id2label or not isinstance(num_labels, int) or num_labels < 2:
        return None
    if getattr(config, "problem_type", None) == "regression":
        return None
    labels = {int(k): str(v) for k, v in id2label.items()}
    if sorted(labels) != list(range(num_labels)):
        return None
    return [labels[i] for i in range(num_labels)]


def _outputs_logits(model):
    """Whether a Transformers model's output holds class scores: language
    models (logits over the vocabulary) and classifiers."""
    name = type(model).__name__
    return any(part in name for part in ("LMHead", "CausalLM", "MaskedLM", "Classification"))


def tokenizer_of(processing_class):
    """The tokenizer among what a Trainer was given, or None: the
    `processing_class` (or the older `tokenizer`) itself when it turns ids
    into text, else a processor's `.tokenizer` (image processors have none)."""
    for candidate in (processing_class, getattr(processing_class, "tokenizer", None)):
        if candidate is not None and (hasattr(candidate, "convert_ids_to_tokens")
                                      or hasattr(candidate, "decode")):
            return candidate
    return None


def _unwrap_optimizer(optimizer):
    # Accelerate's AcceleratedOptimizer (and similar wrappers) keep the real
    # optimizer in `.optimizer`; its step hooks are the ones that fire.
    seen = set()
    while (
        optimizer is not None
        and id(optimizer) not in seen
        and isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer)
    ):
        seen.add(id(optimizer))
        optimizer = optimizer.optimizer
    return optimizer


class TorchVisualizationCallback(_TensorBoardCallback):
    """The Trainer's TensorBoard logging plus `watch()` of the model.

    Args:
      tb_writer: Optional `torch_visualization.SummaryWriter` to write with
        (one is created in the logging directory otherwise).
      log_every: Log every this many optimizer steps; `args.logging_steps`
        when None.
      class_names: Class names for the `outputs/classes` pie; the model's
        `config.id2label` when None.
      **watch_kwargs: Passed on to `SummaryWriter.watch`.
    """

    def __init__(self, tb_writer=None, *, log_every=None, class_names=None, **watch_kwargs):
        if tb_writer is not None and not isinstance(tb_writer, SummaryWriter):
            raise TypeError(
                "tb_writer must be a torch_visualization.SummaryWriter, got %s"
                % type(tb_writer).__name__
            )
        if log_every is not None and (
            isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1
        ):
            raise ValueError("log_every must be a positive int or None, got %r" % (log_every,))
        super().__init__(tb_writer=tb_writer)
        self.log_every = log_every
        self.class_names = class_names
        self.watch_kwargs = watch_kwargs
        self._handle = None

    def on_train_begin(self, args, state, control, **kwargs):
        report_to = args.report_to or []
        if "tensorboard" in report_to:
            warnings.warn(
                "report_to includes 'tensorboard' and TorchVisualizationCallback is "
                "a TensorBoard callback too: the Trainer's scalars are written twice. "
                "Pass report_to='none' (or drop 'tensorboard') when using it.",
                stacklevel=2,
            )
        if self.tb_writer is None and state.is_world_process_zero:
            # Our writer in the directory the parent would use (its public
            # `logging_dir`, else its default), made before the parent would
            # make a stock one there.
            if state.is_hyper_param_search and state.trial_name is not None:
                self.logging_dir = os.path.join(args.output_dir, default_logdir(), state.trial_name)
            elif self.logging_dir is None:
                self.logging_dir = os.path.join(args.output_dir, default_logdir())
            self.tb_writer = SummaryWriter(log_dir=self.logging_dir)
        super().on_train_begin(args, state, control, **kwargs)
        model = kwargs.get("model")
        if self._handle is not None or model is None:
            return
        optimizer = _unwrap_optimizer(kwargs.get("optimizer"))
        class_names = self.class_names or class_names_of(model)
        options = dict(
            # state.logging_steps is the resolved int (args may hold a ratio).
            log_every=self.log_every or int(state.logging_steps or args.logging_steps),
            class_names=class_names,
            # Classifiers and language models output class scores (logits
            # over labels or the vocabulary).
            outputs="classes" if class_names or _outputs_logits(model) else None,
            # A run resumed from a checkpoint continues its step axis, in
            # line with the Trainer's scalars.
            start_step=state.global_step,
        )
        tokenizer = tokenizer_of(kwargs.get("processing_class") or kwargs.get("tokenizer"))
        if tokenizer is not None and self.watch_kwargs.get("attention", True):
            # Ids are decoded into text on the writer thread (tokens.py).
            options["tokens"] = tokenizer
        options.update(self.watch_kwargs)
        if state.is_world_process_zero:
            self._handle = self.tb_writer.watch(model, optimizer, **options)
        else:
            # Other ranks take part in the logging steps' collectives but
            # write nothing (the parent class gives them no writer).
            self._handle = watch_module.watch(None, model, optimizer, **options)

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        super().on_train_end(args, state, control, **kwargs)
