"""`SummaryWriter.watch()`: hook-based logging of a whole model at near-zero cost.

Every `log_every` counted steps it logs (tags are part of the contract):

- `weights/<param name>`: heatmap of each parameter, pooled on its device to
  at most `max_cells` (64x64 by default; a 0-d parameter is one cell); a
  parameter tied to another (an embedding shared with the LM head) is logged
  once, under its first name;
- `gradients/norm`, `gradients/mean_abs`, `gradients/max_abs`: bars, one per
  parameter that requires gradients (a missing gradient counts as zero; a
  sparse gradient's statistics are those of its stored rows); NaN/Inf stay in
  the values so the tab marks them;
- `gradients/nonfinite`: bars, the number of NaN/Inf gradient elements per
  parameter; the first time any appear a `RuntimeWarning` names the first
  offending parameters (once; likewise once for NaN/Inf weights);
- `updates/ratio` (with optimizers): bars, one per parameter a watched
  optimizer steps: ||w_after - w_before|| / ||w_before|| over that
  optimizer's step (1 for a parameter that was exactly zero before and moved,
  0 if it stayed zero; NaN when its optimizer did not step during the
  logging step);
- `activations/zero_fraction`: bars, the fraction of exactly-zero outputs of
  each activation module (`ACTIVATION_TYPES`) and of each site calling a
  ReLU-family function (`F.relu`, `x.relu()`...: functional.py, labels
  `<module>/relu`), NaN for one that did not run;
- `activations/rms`, `activations/max_abs`: bars, the output of each block
  of the model's ModuleList/Sequential stacks (the residual stream), of each
  activation module and of the modules named in `modules=`;
- `attention/<module>`: per-head attention maps of the first example
  (attention kind, pooled to at most 64x64), and `attention/entropy`: bars,
  mean entropy per head (labels `<module>/head<k>`), see attention.py;
- `attention/tokens` (with `tokens=`): the text of that example's input ids,
  one string per position (tokens kind), see tokens.py;
- `outputs/classes`: pie, the mean softmax of a `[batch, classes]` or
  `[batch, seq, classes]` model output (or of its `"logits"` entry, as in
  Hugging Face's `ModelOutput`), when the output is known to be class scores:
  `class_names` given, or `outputs="classes"`. Otherwise no pie (a regression
  head's softmax means nothing), and a warning says so once. Beyond 32
  classes: the 31 likeliest at the first logging step and "other";
- `outputs/statistics`: bars, for sequence outputs the mean predictive
  entropy and the largest logit.

The parts, along the data path (ARCHITECTURE.md):

- `plan.py`: what is logged (tags, labels, optimizer groups), fixed at start;
- `handle.py`: the `Watch` handle and its hooks (when a step is counted,
  and when a logging step begins and ends);
- `capture.py`: the forward hooks of a logging step (activations, block
  outputs, attention, model outputs); `attention.py`: attention maps;
- `backward.py`: when a backward pass has set every gradient;
- `reducer.py`: the device work of a logging step, into named segments;
- `packet.py`: the named segments of one buffer, one copy to the host;
- `decode.py`: a packet back into tagged values, on the writer thread;
- `tokens.py`: `tokens=`, the first example's input ids per logging step
  (device segment), made text on the writer thread;
- the writer's `EventSink` (sink.py): metadata once, background writes.

`torch.compile`: hooks inside a compiled region do nothing
(`torch.compiler.is_compiling()`), so compiled graphs gain no graph break and
no recompilation; weights, gradients and updates are logged from the
optimizer hooks as usual. Activation fractions are not available inside a
compiled region; pass the compiled module itself to `watch` to keep
`outputs/classes` (its hooks run eagerly around the compiled call).

Distributed (`torch.distributed` initialised with more than one rank): call
`watch` on EVERY rank, after wrapping the model (DDP) or sharding it
(`fully_shard`). Only global rank 0 owns the tags and writes; the other ranks
need no writer (pass `None`). A logging step is a COLLECTIVE: its hooks run on
every rank and end in collectives that every rank must reach, at the same
step, with the same model and the same `log_every`:

- every rank: ONE all_reduce adds the ranks' class sums, sample counts and
  activation counts, so `outputs/classes` and `activations/zero_fraction`
  are those of the global batch;
- DDP: gradients are read after DDP's all-reduce (step post-hook), so rank
  0's gradients, weights and updates already are the global ones;
- FSDP2 / DTensor (`fully_shard`): every rank reduces its local shards and
  `torch_visualization.distributed` combines them (norms, |g| sums and
  NaN/Inf counts from one SUM all_reduce, one MAX all_reduce for `max_abs`,
  heatmaps pooled shard by shard with only the grids all-reduced).
- FSDP1 (`FullyShardedDataParallel`) is refused with a clear error: its
  flat-parameter shards do not map onto parameters without gathering.
"""

from __future__ import annotations

import torch

from torch_visualization import distributed, pooling
from torch_visualization.watch import handle as handles
from torch_visualization.watch import plan as plans
from torch_visualization.watch import reducer as reducers
from torch_visualization.watch import tokens as token_labels
from torch_visualization.watch.handle import Watch
from torch_visualization.watch.plan import ACTIVATION_TYPES

__all__ = ["watch", "Watch", "ACTIVATION_TYPES"]


def _unwrap(model):
    """The module that owns the parameters, inside compile/DDP/DataParallel
    wrappers (their parameter names carry a prefix the user never wrote)."""
    inner = model
    for _ in range(8):
        if isinstance(inner, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            inner = inner.module
        elif type(inner).__name__ == "OptimizedModule":
            # torch.compile's wrapper holds the original module as its only
            # child (found through the public children(), not its attribute).
            children = list(inner.children())
            if len(children) != 1:
                break
            inner = children[0]
        else:
            break
    return inner


def _refuse_fsdp1(model):
    """FSDP1 keeps each rank's share of flattened parameters: statistics of
    them would be those of a shard, silently (one bar for four parameters)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # builds without distributed support
        return
    if any(isinstance(module, FullyShardedDataParallel) for module in model.modules()):
        raise ValueError(
            "watch: the model is wrapped in FullyShardedDataParallel (FSDP1); its flat "
            "parameter shards cannot be logged per parameter without gathering them. "
            "Shard it with FSDP2 (torch.distributed.fsdp.fully_shard; Lightning: "
            "ModelParallelStrategy) instead, or watch the model before wrapping it "
            "with a single process"
        )


def _inactive_rank():
    """True on every rank but 0 of an initialised process group."""
    return distributed.rank() != 0


def watch(
    writer,
    model,
    optimizer=None,
    *,
    log_every=100,
    class_names=None,
    outputs=None,
    modules=None,
    attention=True,
    tokens=None,
    max_cells=pooling.DEFAULT_MAX_CELLS,
    start_step=0,
):
    """Starts logging `model` through `writer` (what `SummaryWriter.watch` calls).

    Args:
      writer: A `torch_visualization.SummaryWriter` (or None on distributed
        ranks != 0, which write nothing).
      model: The `torch.nn.Module` to watch.
      optimizer: Optional `torch.optim.Optimizer`, or a list of them (a GAN's
        two, a head with its own): the first one's steps are counted, each
        one's updates are measured around its own step.
      log_every: Log on steps divisible by log_every.
      class_names: Optional names for the `outputs/classes` pie (they also
        say the output holds class scores).
      outputs: "classes" logs the pie of a `[batch, classes]` (or `[batch,
        seq, classes]`) output without class names; "none" never logs it;
        None decides from `class_names`.
      modules: Names of more modules (as in `model.named_modules()`) whose
        outputs' rms and max |x| are logged.
      attention: Capture attention maps and their entropy (False: none).
      tokens: Token labels of the attention maps: a tokenizer (Hugging
        Face's), a function `ids (list of int) -> list of str`, or a
        vocabulary (a sequence of strings indexed by id). Each logging step
        then writes `attention/tokens`, the text of the first example's
        input ids (see tokens.py).
      max_cells: Largest weight heatmap, an int or `(rows, cols)`.
      start_step: The first step's number: a resumed run passes its global
        step so that the tab's steps line up with its scalars.

    Under `torch.distributed` call it on every rank (with the same model and
    arguments): each logging step is a collective that every rank must reach
    (see the module docstring).

    Returns:
      A `Watch` handle.

    Raises:
      TypeError, ValueError: bad arguments, a model already watched, a
        writer already watching, an FSDP1 model, or a tag already used with
        other labels.
    """
    optimizers, names = plans.check_arguments(
        model, optimizer, log_every, class_names, outputs, start_step
    )
    max_cells = pooling.parse_max_cells(max_cells)
    token_text = token_labels.check_tokens(tokens, attention)
    inner = _unwrap(model)
    _refuse_fsdp1(model)
    plan, named, grad_named, measured = plans.build(
        inner, optimizers, class_names=names, outputs=outputs, max_cells=max_cells,
        modules=plans.check_modules(inner, modules), attention_maps=bool(attention),
    )
    plan.tokens = token_labels.for_plan(token_text, plan)
    writes = not _inactive_rank()
    if writes and writer is None:
        raise TypeError("watch: writer is None (only distributed ranks != 0 may pass None)")
    sync = distributed.is_distributed()
    roles = reducers.Roles(
        writes=writes,
        sync=sync,
        sharded=sync and distributed.needs_collectives([param for _, param in named]),
    )
    with handles.watched_lock:
        for key in (model, inner):
            if key in handles.watched:
                raise ValueError(
                    "watch: this %s is already watched; call remove() on its handle first"
                    % type(inner).__name__
                )
        if writer is not None and any(h.active for h in writer._watch_handles):
            raise ValueError(
                "watch: this writer already watches a model and the tags would clash; "
                "use one SummaryWriter (log_dir) per watched model"
            )
        sink = writer._sink if writes else None
        if sink is not None:
            # Claimed now, so that a clash with other labels fails here.
            for tag, kind, labels in plan.frozen_tags():
                sink.freeze(tag, kind, labels)
        handle = Watch(
            model=model,
            inner=inner,
            optimizers=optimizers,
            plan=plan,
            reducer=reducers.StepReducer(
                plan, [p for _, p in named], [p for _, p in grad_named], roles
            ),
            sink=sink,
            log_every=log_every,
            start_step=start_step,
            grad_params=[p for _, p in grad_named],
            modules=measured,
            owner=writer,
        )
        if writer is not None:
            # So that writer.close() removes the hooks (on every rank).
            writer._watch_handles.append(handle)
        handles.watched[model] = handle
        handles.watched[inner] = handle
    return handle
