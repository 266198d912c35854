"""What a watch logs, fixed when it starts: tags, labels and roles.

Tags are part of the contract (README, "Watch a whole model"). Everything
here is decided once, at `watch()` time, from the model and its optimizers;
nothing changes afterwards (labels are frozen per tag).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from torch_visualization import metadata
from torch_visualization.watch import attention
from torch_visualization.watch import functional

TAG_WEIGHTS = "weights/"
TAG_GRAD_NORM = "gradients/norm"
TAG_GRAD_MEAN_ABS = "gradients/mean_abs"
TAG_GRAD_MAX_ABS = "gradients/max_abs"
TAG_GRAD_NONFINITE = "gradients/nonfinite"
TAG_UPDATE_RATIO = "updates/ratio"
TAG_ZERO_FRACTION = "activations/zero_fraction"
TAG_RMS = "activations/rms"
TAG_MAX_ABS = "activations/max_abs"
TAG_ATTENTION = "attention/"
TAG_ENTROPY = "attention/entropy"
TAG_CLASSES = "outputs/classes"
TAG_SEQUENCE = "outputs/statistics"

# Labels of `outputs/statistics` (sequence outputs).
SEQUENCE_STATS = ["entropy", "max_logit"]

# A class pie keeps at most this many slices: beyond, the classes most
# likely at the first logging step and one "other" slice.
PIE_CLASSES = 32

GRADIENT_TAGS = (TAG_GRAD_NORM, TAG_GRAD_MEAN_ABS, TAG_GRAD_MAX_ABS, TAG_GRAD_NONFINITE)

# Modules whose outputs are measured for exact zeros ("dead units").
ACTIVATION_TYPES = (
    torch.nn.ReLU,
    torch.nn.ReLU6,
    torch.nn.LeakyReLU,
    torch.nn.PReLU,
    torch.nn.RReLU,
    torch.nn.ELU,
    torch.nn.SELU,
    torch.nn.CELU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Mish,
    torch.nn.Hardswish,
    torch.nn.Hardsigmoid,
    torch.nn.Hardtanh,
    torch.nn.Threshold,
    torch.nn.Sigmoid,
    torch.nn.Tanh,
)

# What `outputs=` accepts.
OUTPUT_MODES = (None, "classes", "none")


@dataclasses.dataclass
class WatchPlan:
    """Tags and labels of one watch.

    Attributes:
      param_names: Every watched parameter (one heatmap each), in the
        model's order; a tied parameter appears once, under its first name.
      grad_names: The parameters that require gradients (gradient bars).
      grad_numels: Their element counts (float64, for mean |g|).
      optimizer_groups: Per watched optimizer, the positions in `grad_names`
        of the parameters it steps (`updates/ratio` follows them).
      update_positions: Positions in `grad_names` of the parameters some
        watched optimizer steps, in order.
      update_names: Their names: the labels of `updates/ratio`.
      activation_names: Activation modules measured for exact zeros.
      stat_names: Modules whose outputs' rms and max |x| are logged: the
        blocks of the model's ModuleList/Sequential stacks (the residual
        stream), the activation modules and the user's `modules=`.
      attention_names: Modules whose attention maps are captured.
      class_names: Names for the `outputs/classes` pie (may be empty).
      classes: Whether the output is logged as class scores at all.
      outputs_off: The user turned the pie off (`outputs="none"`).
      max_cells: Largest heatmap grid.
      tied: `{alias: first name}` of parameters that share a tensor.
      functional: The `functional.Sites` of ReLU-family calls made as
        functions, found at the first measured forward (their labels join
        `activations/zero_fraction` then).
      tokens: The `tokens.TokenText` of `watch(tokens=...)`, or None (the
        ids of each logging step become `attention/tokens`, see tokens.py).
    """

    param_names: list
    grad_names: list
    grad_numels: np.ndarray
    optimizer_groups: list
    update_positions: list
    update_names: list
    activation_names: list
    stat_names: list
    attention_names: list
    class_names: list
    classes: bool
    max_cells: tuple
    tied: dict = dataclasses.field(default_factory=dict)
    outputs_off: bool = False
    functional: object = dataclasses.field(default_factory=functional.Sites)
    tokens: object = None

    def frozen_tags(self):
        """`[(tag, kind, labels)]` this watch writes: claimed at watch() time
        so that a clash with another tag's labels fails there, not later."""
        tags = [(TAG_WEIGHTS + name, "heatmap", ()) for name in self.param_names]
        if self.grad_names:
            tags += [(tag, "bars", tuple(self.grad_names)) for tag in GRADIENT_TAGS]
        if self.update_names:
            tags.append((TAG_UPDATE_RATIO, "bars", tuple(self.update_names)))
        # `activations/zero_fraction` is claimed at its first event instead:
        # functional ReLU calls found by then join its labels (functional.py).
        if self.stat_names:
            tags += [(tag, "bars", tuple(self.stat_names)) for tag in (TAG_RMS, TAG_MAX_ABS)]
        if self.classes and self.class_names and len(self.class_names) <= PIE_CLASSES:
            tags.append((TAG_CLASSES, "pie", tuple(self.class_names)))
        if self.tokens is not None and self.attention_names:
            tags.append((metadata.TOKENS_TAG, "tokens", ()))
        return tags


def check_modules(model, modules):
    """The `modules=` names, checked against the model; returns a list."""
    if modules is None:
        return []
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
        raise TypeError("watch: modules must be a list of module names, got %r" % (modules,))
    known = dict(model.named_modules())
    for name in modules:
        if not isinstance(name, str):
            raise TypeError("watch: modules must be names (strings), got %s" % type(name).__name__)
        if name not in known:
            raise ValueError("watch: the model has no module named %r (see model.named_modules())"
                             % name)
    return list(modules)


def stat_modules(model, extra=()):
    """`[(name, module)]` whose outputs' rms and max |x| are logged, in model
    order: the children of every ModuleList/Sequential (the blocks of a
    transformer's or a ResNet's stack), activation modules, and `extra`."""
    chosen = set(extra)
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
            chosen.update(prefixed(name, child) for child, _ in module.named_children())
        elif isinstance(module, ACTIVATION_TYPES):
            chosen.add(name)
    return [(name or type(module).__name__, module)
            for name, module in model.named_modules() if name in chosen and name]


def prefixed(prefix, name):
    return prefix + "." + name if prefix else name


def check_arguments(model, optimizers, log_every, class_names, outputs, start_step):
    """Validates `watch()`'s arguments; returns `(optimizers list, class names)`.

    Raises:
      TypeError, ValueError: naming the argument and what was wrong.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError("watch: model must be a torch.nn.Module, got %s" % type(model).__name__)
    if optimizers is None:
        optimizers = []
    elif isinstance(optimizers, torch.optim.Optimizer):
        optimizers = [optimizers]
    elif isinstance(optimizers, (list, tuple)):
        optimizers = list(optimizers)
    else:
        raise TypeError(
            "watch: optimizer must be a torch.optim.Optimizer, a list of them or None, got %s"
            % type(optimizers).__name__
        )
    for optimizer in optimizers:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                "watch: optimizer must be a torch.optim.Optimizer, a list of them or None; "
                "the list holds a %s" % type(optimizer).__name__
            )
    if len({id(optimizer) for optimizer in optimizers}) != len(optimizers):
        raise ValueError("watch: the same optimizer is given twice")
    for name, value, lowest in (("log_every", log_every, 1), ("start_step", start_step, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("watch: %s must be an int, got %r" % (name, value))
        if value < lowest:
            raise ValueError("watch: %s must be >= %d, got %d" % (name, lowest, value))
    if outputs not in OUTPUT_MODES:
        raise ValueError("watch: outputs must be one of %s, got %r" % (OUTPUT_MODES, outputs))
    if class_names is None:
        return optimizers, []
    if isinstance(class_names, str):
        raise TypeError("watch: class_names must be a sequence of strings, not one string")
    names = list(class_names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError("watch: class_names must be strings, got %s" % type(name).__name__)
    if len(names) < 2:
        raise ValueError("watch: class_names needs at least 2 names, got %d" % len(names))
    if outputs == "none":
        raise ValueError("watch: class_names were given but outputs='none' turns the pie off")
    return optimizers, names


def named_parameters(model):
    """`(named, tied)`: the model's non-empty parameters, each tensor once
    under its first name, and `{alias: first name}` of tied ones (an
    embedding shared with the LM head)."""
    first, named, tied = {}, [], {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if param.numel() == 0:
            continue
        key = id(param)
        if key in first:
            tied[name] = first[key]
            continue
        first[key] = name
        named.append((name, param))
    return named, tied


def build(model, optimizers, *, class_names, outputs, max_cells, modules=(), attention_maps=True):
    """The plan of a watch of `model` (already unwrapped) and its optimizers.

    Returns:
      `(plan, named, grad_named, measured)`: the plan, the `(name,
      parameter)` lists it was made from, and the modules to hook:
      `{"activations": [...], "stats": [...], "attention": [...]}` in the
      plan's label order, and `"named"`: `[(name, module)]` of every module.

    Raises:
      ValueError: no parameters, or an optimizer holding none of them.
    """
    named, tied = named_parameters(model)
    if not named:
        raise ValueError("watch: %s has no parameters to watch" % type(model).__name__)
    grad_named = [(name, param) for name, param in named if param.requires_grad]
    positions = {id(param): index for index, (_, param) in enumerate(grad_named)}
    groups = []
    for number, optimizer in enumerate(optimizers):
        held = [
            positions[id(param)]
            for group in optimizer.param_groups
            for param in group["params"]
            if id(param) in positions
        ]
        if not held:
            raise ValueError(
                "watch: optimizer %d (%s) holds none of the model's trainable parameters"
                % (number, type(optimizer).__name__)
            )
        groups.append(sorted(set(held)))
    claimed = {}
    for number, group in enumerate(groups):
        for position in group:
            if position in claimed:
                raise ValueError(
                    "watch: parameter %r is held by optimizers %d and %d"
                    % (grad_named[position][0], claimed[position], number)
                )
            claimed[position] = number
    activations = [
        (name or type(module).__name__, module)
        for name, module in model.named_modules()
        if isinstance(module, ACTIVATION_TYPES)
    ]
    stats = stat_modules(model, modules)
    everything = [(name or type(module).__name__, module) for name, module in model.named_modules()]
    attentions = [(name or type(module).__name__, module) for name, module in model.named_modules()
                  if attention_maps and attention.is_attention_module(module)]
    grad_names = [name for name, _ in grad_named]
    plan = WatchPlan(
        param_names=[name for name, _ in named],
        grad_names=grad_names,
        grad_numels=np.array([param.numel() for _, param in grad_named], dtype=np.float64),
        optimizer_groups=groups,
        update_positions=sorted(claimed),
        update_names=[grad_names[p] for p in sorted(claimed)],
        activation_names=[name for name, _ in activations],
        stat_names=[name for name, _ in stats],
        attention_names=[name for name, _ in attentions],
        class_names=class_names,
        classes=bool(class_names) or outputs == "classes",
        outputs_off=outputs == "none",
        max_cells=max_cells,
        tied=tied,
        functional=functional.Sites([name for name, _ in everything]),
    )
    measured = {
        "activations": [module for _, module in activations],
        "stats": [module for _, module in stats],
        "attention": [module for _, module in attentions],
        "named": everything,  # every module: functional.py finds calls in them
    }
    return plan, named, grad_named, measured
