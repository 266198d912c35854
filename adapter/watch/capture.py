"""What a logging step measures on the forward pass (hooks exist only then).

Forward passes OF THE MODEL in training mode are measured: the model's own
forward pre/post hooks keep a stack of the forwards in progress, and every
other hook here measures only inside a measured one (so the recomputation of
activation checkpointing, which runs during backward, is not counted twice,
and a frozen eval-mode backbone inside a training model is measured):

- activation modules: nonzero counts (`activations/zero_fraction`), and
  ReLU-family functions called in a forward (`F.relu`: functional.py);
- stat modules (the blocks of the model's ModuleList/Sequential stacks, the
  activation modules, and `modules=` named by the user): sum of squares,
  element count and max |x| of the output (`activations/rms`, `/max_abs`);
- attention modules: the first example's maps (attention.py), once per
  module and logging step;
- the model output: class shares (`[batch, classes]` or `[batch, seq,
  classes]`) and, for sequences, predictive entropy and the largest logit.
"""

from __future__ import annotations

import warnings

import torch

from torch_visualization import fused, reduce
from torch_visualization.watch import attention, classes, deferred, functional
from torch_visualization.watch import plan as plans
from torch_visualization.watch import tokens


def _compiling():
    return torch.compiler.is_compiling()


def _raise(error):
    """Raises `error` again: handed to `guarded` from an `except` block, so
    that a failure caught in a hook is reported as guarded ones are."""
    raise error


# -- the device work of each measurement (into the step's StepState) ----------


def count_activation(state, index, output, accelerated=False):
    """Counts the nonzero outputs of activation module `index` (`accelerated`:
    the kernel accelerators take, also on CPU tensors)."""
    row = None if accelerated else fused.output_statistics(output)
    if row is not None:
        state.activations.append((index, row[3], output.numel()))
        return
    with torch.no_grad():
        state.activations.append((index, reduce.nonzero_count(output, fused=accelerated),
                                  output.numel()))


def add_module_stats(state, index, output, accelerated=False):
    """L2 norm and the extremes (or max |x|) of a module's output (residual
    stream), reduced over the tensor as it lies: a channels-last activation
    reshaped to 1-D would first be copied whole (on a GPU that copy cost
    more than the statistics). A contiguous float32 CPU tensor is read once
    for all three (fused.py), otherwise a BLAS dot, amin and amax.
    `accelerated`: the kernels accelerators take, also on CPU tensors
    (watch's test seam)."""
    cpu = output.device.type == "cpu" and not accelerated
    row = fused.output_statistics(output) if cpu else None
    if row is not None:
        state.module_stats.append((index, row[0], row[1], row[2], output.numel()))
        return
    with torch.no_grad():
        if output.dtype == torch.float32 and cpu and output.is_contiguous():
            flat = output.view(-1)
            norm = torch.dot(flat, flat).sqrt_()
        else:
            norm = torch.linalg.vector_norm(output, 2, dtype=reduce.norm_dtype([output]))
        if cpu:
            # amin and amax are vectorised (together faster than aminmax here;
            # an inf-norm is ~10x slower).
            low, high = output.amin(), output.amax()
        else:
            # aminmax copies a channels-last tensor first; the inf-norm reads
            # it in place. max(-low, high), all that is read of the pair, is
            # max|x| either way.
            low = high = torch.linalg.vector_norm(output, float("inf"), dtype=reduce.norm_dtype([output]))
    state.module_stats.append((index, norm, low, high, output.numel()))


def add_attention(state, index, maps):
    """One module's attention maps of the first example: pooled maps and
    the entropy per head (of the full maps), kept on the device."""
    state.attention[index] = (attention.pooled(maps), attention.entropy(maps), tuple(maps.shape))


class ForwardCapture:
    """The forward hooks of a logging step and what they measure.

    Args:
      model: The module as passed to `watch()` (its forward is what counts).
      plan: The watch's `WatchPlan`.
      modules: `{"activations": [...], "stats": [...], "attention": [...]}`
        modules in the plan's label order, and `"named"`: every `(name,
        module)` (functional ReLU calls are looked for in them).
      state: Returns the open window's `StepState` (None outside a window).
      outputs_on_end: Measure the model's output when its forward ends (with
        an optimizer; without one the step-counting hook does it).
      guarded: Runs a measurement so that its failure is reported once and
        never reaches training: `guarded(function, *args)`.
      defer: Hold outputs autograd keeps and measure them together when the
        forward ends (deferred.py; the accelerator path).
    """

    def __init__(self, model, plan, modules, state, outputs_on_end, guarded, defer=False):
        self._model = model
        self._plan = plan
        self._modules = modules
        self._state = state
        self._handles = []
        self._forwards = []  # per model forward in progress: is it measured?
        self._attention_stack = []  # attention modules running (indices)
        self._mode = None
        self._mode_owner = None  # attention stack depth whose module entered the mode
        self._outputs_on_end = outputs_on_end
        self._guarded = guarded
        self._accelerated = defer  # the kernels of immediate measurements
        self._deferred = deferred.DeferredOutputs(defer)
        self._functional = functional.FunctionalCapture(
            modules.get("named", ()), plan.functional, modules["activations"],
            len(plan.activation_names), self._measuring, self._count_functional)
        # One hook per measured module: (module, its activation index or
        # None, its stat index or None); an activation module is usually a
        # stat module too, and each hook costs a registration per window.
        roles = {}
        for index, module in enumerate(modules["activations"]):
            roles.setdefault(id(module), [module, None, None])[1] = index
        for index, module in enumerate(modules["stats"]):
            roles.setdefault(id(module), [module, None, None])[2] = index
        self._output_modules = [tuple(role) for role in roles.values()]
        # Made once: `arm` runs before every logging step, cold.
        self._output_hooks = [self._output_hook(count_index, stat_index)
                              for _, count_index, stat_index in self._output_modules]
        self.class_width = None
        self._class_off = not plan.classes
        # outputs="none" turned the pie off: nothing to tell.
        self._classes_told = plan.outputs_off

    @property
    def logs_classes(self):
        """Whether the output is logged as class scores (so far)."""
        return not self._class_off

    def arm(self):
        """Adds the hooks (idempotent)."""
        if self._handles:
            return
        add = self._handles.append
        add(self._model.register_forward_pre_hook(self._on_model_start))
        add(self._model.register_forward_hook(self._on_model_end, always_call=True))
        for (module, _, _), hook in zip(self._output_modules, self._output_hooks):
            add(module.register_forward_hook(hook))
        for index, module in enumerate(self._modules["attention"]):
            add(module.register_forward_pre_hook(self._attention_start(index, module), with_kwargs=True))
            add(module.register_forward_hook(self._attention_end, always_call=True))
        if self._plan.tokens is not None and self._modules["attention"]:
            # After _on_model_start (hooks run in order): it says whether
            # this forward is measured.
            add(self._model.register_forward_pre_hook(self._on_model_tokens, with_kwargs=True))
        self._functional.arm()  # last: its pre-hooks run after those above

    def disarm(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._functional.disarm()

    def _measuring(self):
        return bool(self._forwards) and self._forwards[-1] and not _compiling()

    # -- the model ---------------------------------------------------------

    def _on_model_start(self, module, inputs):
        measured = not _compiling() and module.training and self._state() is not None
        self._forwards.append(measured)

    def _on_model_tokens(self, module, args, kwargs):
        """The first measured forward's token ids (tokens.py), once a step."""
        state = self._state()
        if state is not None and state.tokens is None and self._forwards and self._forwards[-1]:
            self._guarded(tokens.take_ids, state, args, kwargs)

    def _on_model_end(self, module, inputs, output):
        measured = self._forwards.pop() if self._forwards else False
        state = self._state()
        if measured:
            self.flush(state)
        if measured and self._outputs_on_end and state is not None:
            self._guarded(self.add_outputs, state, output)

    def flush(self, state):
        """Measures the outputs held since the forward began (deferred.py)
        into `state`; forgets them when the window has closed."""
        if not self._deferred.enabled:  # the CPU kernels measure at once: nothing held
            return
        if state is None:
            self._deferred.clear()
        else:
            self._guarded(self._deferred.finish, state)

    # -- modules ----------------------------------------------------------

    def _output_hook(self, count_index, stat_index):
        """The hook of a module whose output's zeros are counted
        (`count_index`, an activation module) and/or whose output's
        statistics are taken (`stat_index`); either may be None."""
        forwards, state_of, measure = self._forwards, self._state, self._measure_output
        accelerated = self._accelerated

        def hook(module, inputs, output):
            # Checks written out, the kernel called here: this runs for
            # every measured module of a logging step's forward, its Python
            # cold after the plain steps (~30 µs less per MLP forward).
            if not (forwards and forwards[-1]) or _compiling():
                return
            state = state_of()
            if state is None:
                return
            try:
                # A contiguous float32 CPU tensor: one pass (fused.py) gives
                # both its zero count and its statistics.
                row = None
                if not accelerated and type(output) is torch.Tensor:
                    row = fused.output_statistics(output)
                if row is None:
                    measure(state, count_index, stat_index, output)
                    return
                if count_index is not None:
                    state.activations.append((count_index, row[3], row[4]))
                if stat_index is not None:
                    state.module_stats.append((stat_index, row[0], row[1], row[2], row[4]))
            except Exception as error:  # noqa: BLE001 -- reported once, never reaches training
                self._guarded(_raise, error)

        return hook

    def _measure_output(self, state, count_index, stat_index, output):
        """What `_output_hook` does where the one-pass kernel does not
        read the output (another device, dtype or layout, a tuple)."""
        if count_index is not None and isinstance(output, torch.Tensor) and output.numel() \
                and not self._deferred.offer(deferred.COUNTS, count_index, output):
            count_activation(state, count_index, output, self._accelerated)
        if stat_index is None:
            return
        tensor = classes.first_tensor(output)
        if tensor is not None and tensor.numel() and tensor.is_floating_point() \
                and not self._deferred.offer(deferred.STATS, stat_index, tensor):
            add_module_stats(state, stat_index, tensor, self._accelerated)

    def _count_functional(self, index, output):
        """Zeros of a functional ReLU call (functional.py), counted as those
        of activation module `index`."""
        state = self._state()
        if state is not None:
            self._guarded(count_activation, state, index, output)

    def _attention_start(self, index, module):
        def hook(module, args, kwargs):
            self._attention_stack.append(index)
            if not self._measuring():
                return
            state = self._state()
            if isinstance(module, torch.nn.MultiheadAttention):
                self._record_attention(index, lambda: attention.mha_probabilities(module, args, kwargs))
            elif self._mode is None and state is not None and index not in state.attention:
                # The function mode sees every torch call while it is on:
                # only inside an attention module not captured yet this step.
                self._mode = attention.AttentionCapture(self._record_attention, self._current_attention)
                self._mode.__enter__()
                self._mode_owner = len(self._attention_stack)

        return hook

    def _attention_end(self, module, inputs, output):
        if self._mode is not None and self._mode_owner == len(self._attention_stack):
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if self._attention_stack:
            self._attention_stack.pop()

    def _current_attention(self):
        """The innermost attention module running, unless its maps come from
        its own pre-hook (MultiheadAttention)."""
        if not self._attention_stack:
            return None
        index = self._attention_stack[-1]
        if isinstance(self._modules["attention"][index], torch.nn.MultiheadAttention):
            return None
        return index

    def _record_attention(self, index, compute):
        state = self._state()
        if state is None or index in state.attention or not self._measuring():
            return
        self._guarded(self._add_attention, state, index, compute)

    def _add_attention(self, state, index, compute):
        with torch.no_grad():
            maps = compute()
        if maps is not None:
            add_attention(state, index, maps)

    # -- the output ---------------------------------------------------------

    def add_outputs(self, state, output):
        """Class shares (and sequence statistics) of a measured model output."""
        if self._class_off:
            self._tell_no_classes(output)
            return
        # A plain tensor is its own scores (skips the mapping checks).
        scores = output if type(output) is torch.Tensor else classes.class_scores(output)
        if scores is None:
            return
        names = self._plan.class_names
        if scores.dim() not in (2, 3) or not scores.is_floating_point() or scores.shape[-1] < 2:
            # Once class scores were seen, other outputs are skipped, not fatal:
            # under a DDP strategy Lightning calls training_step through the
            # module's __call__ (hooks see the loss).
            if self.class_width is None:
                self._disable_classes("the model output has shape %s, not [batch, classes] "
                                      "or [batch, seq, classes]" % list(scores.shape))
            return
        width = scores.shape[-1]
        if names and width != len(names):
            self._disable_classes("the model output has %d classes but %d class_names were given"
                                  % (width, len(names)))
            return
        if self.class_width is None:
            self.class_width = width
        elif width != self.class_width:
            return
        sequence = scores.dim() == 3
        classes.add_class_scores(state, scores.reshape(-1, width) if sequence else scores,
                                 sequence=sequence, accelerated=self._accelerated)

    def _disable_classes(self, why):
        self._class_off = True
        self._classes_told = True
        warnings.warn("torch_visualization watch: %r is not logged: %s"
                      % (plans.TAG_CLASSES, why), RuntimeWarning, stacklevel=5)

    def _tell_no_classes(self, output):
        """Says once why there is no pie when the output might be class
        scores but nothing says it is."""
        if self._classes_told:
            return
        self._classes_told = True
        scores = classes.class_scores(output)
        if scores is not None and scores.dim() in (2, 3) and scores.is_floating_point() \
                and scores.shape[-1] >= 2:
            warnings.warn(
                "torch_visualization watch: %r is not logged: nothing says the model's %s "
                "output holds class scores (it may be a regression or multi-output head); "
                "pass class_names=... or outputs='classes' to log the mean softmax"
                % (plans.TAG_CLASSES, list(scores.shape)),
                RuntimeWarning, stacklevel=5,
            )
