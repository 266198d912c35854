"""The device work of a logging step: statistics into one packet.

Everything a logging step measures is reduced where it lives (fused
`torch._foreach_*` launches on accelerators; on the CPU one pass per float32
tensor in C (fused.py), else cache-friendly passes and kept buffers; one
pooling per parameter shape), added to a
`PacketBuilder` under its segment name, and leaves the device in ONE copy.
Under FSDP2 the statistics of sharded tensors come from `distributed` (each
call a COLLECTIVE); under DDP/FSDP the step's class and activation counts are
summed over the ranks with one all_reduce.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from torch_visualization import distributed, fused, pooling, reduce
from torch_visualization.watch import cpu_pass, outputs
from torch_visualization.watch import packet as packets
from torch_visualization.watch import plan as plans
from torch_visualization.watch import replay as replays
from torch_visualization.watch import tokens

# Test seam: run the accelerator path (the one CUDA takes) on CPU tensors, so
# that CI, which has no GPU, exercises it too. Never set in production.
ACCELERATOR_PATH_ON_CPU = False

# CUDA graphs for the parameter side (replay.py); off: the same reductions
# run eagerly. A test seam, and a switch should a driver misbehave.
REPLAY_GRAPHS = True

# The CPU's one-call parameter side (cpu_pass.py); off: the general path.
# A test seam.
CPU_PASS = True


@dataclasses.dataclass(frozen=True)
class Roles:
    """What this process does at a logging step.

    Attributes:
      writes: Writes events (the only process that does: global rank 0).
      sync: Sums class/activation counts over ranks (a process group exists).
      sharded: Parameters are sharded DTensors: statistics are collectives
        every rank joins.
    """

    writes: bool = True
    sync: bool = False
    sharded: bool = False

    @property
    def measures_parameters(self):
        """Whether this rank takes gradient, update and weight statistics.

        DDP: rank 0's gradients and weights already are the global ones, so
        the other ranks skip them; FSDP: every rank holds shards and joins.
        """
        return self.writes or self.sharded


@dataclasses.dataclass
class StepState:
    """What the logging step in progress has measured so far (device tensors)."""

    activations: list = dataclasses.field(default_factory=list)  # (index, 0-d count, numel)
    module_stats: list = dataclasses.field(default_factory=list)  # (index, L2 norm, min, max, numel)
    module_rows: object = None  # (indices, [4, entries] tensor) once combined over ranks
    attention: dict = dataclasses.field(default_factory=dict)  # index -> (maps, entropy, shape)
    tokens: object = None  # the first example's token ids as a segment (tokens.take_ids)
    class_sum: object = None
    class_samples: int = 0
    sequence: object = None  # [sum of entropies, max logit, positions] of sequence outputs
    gradient_groups: list = dataclasses.field(default_factory=list)  # (suffix, positions, stats, nonfinite)
    update_groups: list = dataclasses.field(default_factory=list)  # (suffix, positions, norms)
    before: dict = dataclasses.field(default_factory=dict)  # optimizer index -> weight copies
    stepped: set = dataclasses.field(default_factory=set)  # optimizers whose update is measured
    measured: set = dataclasses.field(default_factory=set)  # grad positions already read
    replayed: object = None  # (vector, layout) of replay.ParameterReplay, if it ran
    grids: dict = dataclasses.field(default_factory=dict)  # param index -> heatmap grid pooled already


class StepReducer:
    """Reduces one watch's tensors at logging steps (training thread).

    Args:
      plan: The watch's `WatchPlan`.
      params: Every watched parameter (heatmaps), in `plan.param_names` order.
      grad_params: The trainable ones, in `plan.grad_names` order.
      roles: This process's `Roles`.
    """

    def __init__(self, plan, params, grad_params, roles):
        self.plan = plan
        self.roles = roles
        self._params = params
        self._grad_params = grad_params
        self._param_index = {id(param): index for index, param in enumerate(params)}
        self._pooling_specs = {}  # optimizer group -> (param indices, grid specs) for fused.py
        self.device = params[0].device
        # Kernels for accelerators (fused launches, counts on the device) or
        # tuned for the CPU (BLAS dots, kept buffers, NaN/Inf read on the host).
        self.accelerated = self.device.type != "cpu" or ACCELERATOR_PATH_ON_CPU
        self._before_buffers = {}
        self._scratch_buffer = None
        if roles.sharded:
            # distributed.heatmap_grids pools the shards at logging steps and
            # returns means (scale 1); planning touches no DTensor op here.
            shapes = [pooling.grid_shape(param.shape, plan.max_cells) for param in params]
            scales = [1.0] * len(params)
            order = range(len(params))
            self._heatmaps = None
        else:
            self._heatmaps = pooling.HeatmapPlan(params, plan.max_cells, batch=self.accelerated)
            shapes, scales, order = self._heatmaps.shapes, self._heatmaps.scales, self._heatmaps.order
        # One optimizer stepping every trainable parameter: the parameter
        # side is planned once, then replayed on one accelerator (replay.py)
        # or one kernel call on the CPU (cpu_pass.py).
        self.replay = None
        if (not roles.sharded and roles.measures_parameters and grad_params
                and plan.optimizer_groups == [list(range(len(grad_params)))]):
            if self.accelerated and len({param.device for param in params}) == 1:
                self.replay = replays.ParameterReplay(grad_params, params, self._heatmaps,
                                                      graphs=REPLAY_GRAPHS)
            elif not self.accelerated and CPU_PASS and cpu_pass.applies(grad_params, params):
                self.replay = cpu_pass.CpuParameterPass(grad_params, params, self._heatmaps)
        # (tag, grid shape, what its first event's metadata needs), in the
        # order the grids lie in a packet.
        self.heatmap_entries = [
            (
                plans.TAG_WEIGHTS + plan.param_names[index],
                shapes[index][:2],
                {"original_shape": tuple(params[index].shape), "reduction": shapes[index][2]},
            )
            for index in order
        ]
        self.heatmap_scales = np.concatenate([
            np.full(shapes[index][0] * shapes[index][1], scales[index], dtype=np.float32)
            for index in order
        ])

    # -- around an optimizer step -------------------------------------------

    def copy_weights(self, state, group, gradients_final=False):
        """Keeps the weights optimizer `group` is about to step (for updates).

        `gradients_final`: no closure runs backward inside this step, so
        the CPU pass may read the gradients now (cpu_pass.py)."""
        if not self.roles.measures_parameters or group in state.stepped or group in state.before:
            return
        if self.replay is not None and group == 0:
            grads = None
            if gradients_final and not self.accelerated and not state.gradient_groups:
                grads = [param.grad for param in self._grad_params]
            state.before[group] = self.replay.copy_weights(grads)
            return
        params = [self._grad_params[p] for p in self.plan.optimizer_groups[group]]
        with torch.no_grad():
            if self.roles.sharded:
                # DTensors stay DTensors: the update norms combine across shards.
                state.before[group] = [param.detach().clone() for param in params]
            elif self.accelerated:
                # Fresh blocks from the caching allocator (free again between
                # logging steps) filled by fused copies.
                state.before[group] = reduce.clone_all(params)
            else:
                # Kept buffers: a fresh multi-MB CPU allocation page-faults on
                # every logging step.
                buffers = self._before_buffers.get(group)
                if buffers is None:
                    buffers = self._before_buffers[group] = [torch.empty_like(p) for p in params]
                torch._foreach_copy_(buffers, params)
                state.before[group] = buffers

    def measure_optimizer(self, state, group):
        """Gradients (those not read yet) and update of the parameters
        optimizer `group` holds, after its step."""
        positions = [p for p in self.plan.optimizer_groups[group] if p not in state.measured]
        if self._replay_ready(state, group, positions):
            replayed = self.replay.run([param.grad for param in self._grad_params])
            if replayed is not None:  # None: this step's gradients need the general path
                state.before.pop(group)
                state.replayed = replayed
                state.measured.update(positions)
                state.stepped.add(group)
                state.gradient_groups.append(("g0", positions, None, None))
                state.update_groups.append(("u0", positions, None))
                return
        self.measure_gradients(state, positions)
        self.measure_update(state, group)

    def _replay_ready(self, state, group, positions):
        return (self.replay is not None and group == 0 and not state.gradient_groups
                and state.before.get(group) is self.replay.before
                and len(positions) == len(self._grad_params))

    def measure_update(self, state, group):
        """Squared norms of the weights before optimizer `group`'s step and of
        its update (COLLECTIVE under sharding)."""
        before = state.before.pop(group, None)
        if before is None or group in state.stepped:
            return
        state.stepped.add(group)
        positions = self.plan.optimizer_groups[group]
        params = [self._grad_params[p] for p in positions]
        with torch.no_grad():
            if self.roles.sharded:
                deltas = [old - new for old, new in zip(before, params)]
                norms = distributed.squared_l2_norms(before + deltas)
            else:
                # CPU float32: one pass over each pair (fused.py) that also
                # pools the stepped weights' heatmaps.
                together = None if self.accelerated else self._fused_update(state, group, before, params)
                if together is not None:
                    norms = [together]
                else:
                    norms = [self._squared_norms(before)]
                    torch._foreach_sub_(before, params)
                    norms.append(self._squared_norms(before))
        state.update_groups.append(("u%d" % group, positions, norms))

    def _fused_update(self, state, group, before, params):
        """Update norms in one pass per weight, pooling its heatmap grid
        (kept in `state.grids` for `finish`) in the same pass; None where
        fused.py does not apply."""
        planned = self._pooling_specs.get(group)
        if planned is None:  # once per optimizer group: which grid each weight fills
            indices = [self._param_index.get(id(param)) for param in params]
            planned = self._pooling_specs[group] = (indices, [
                None if index is None or self._heatmaps is None else self._heatmaps.pool_spec(index)
                for index in indices])
        indices, specs = planned
        result = fused.update_statistics(before, params, specs)
        if result is None:
            return None
        norms, pooled = result
        for pair, grid in pooled.items():
            state.grids[indices[pair]] = grid
        return norms

    def _squared_norms(self, tensors):
        by_device = reduce.by_device(tensors)
        if len(by_device) == 1:
            return reduce.squared_l2_norms(tensors, fused=self.accelerated)
        pieces = torch.empty(len(tensors), dtype=torch.float32, device=self.device)
        for positions, members in by_device.values():
            norms = reduce.squared_l2_norms(members, fused=self.accelerated)
            pieces[positions] = norms.to(self.device)
        return pieces

    def measure_gradients(self, state, positions=None):
        """Gradient statistics of the parameters at `positions` (default:
        every trainable parameter not measured yet in this logging step).

        COLLECTIVE under sharding; skipped on DDP ranks other than 0.
        """
        if not self.roles.measures_parameters:
            return
        if positions is None:
            if len(state.measured) == len(self._grad_params):
                return  # all read already (the common case, at a logging step's end)
            positions = [p for p in range(len(self._grad_params)) if p not in state.measured]
        state.measured.update(positions)
        present, grads = [], []
        for position in positions:
            grad = reduce.dense_values(self._grad_params[position].grad)
            if grad is not None:
                present.append(position)
                grads.append(grad)
        if not grads:
            return
        suffix = "g%d" % len(state.gradient_groups)
        with torch.no_grad():
            if self.roles.sharded:
                stats, nonfinite = distributed.gradient_statistics(grads)
            elif len(reduce.by_device(grads)) > 1:
                stats, nonfinite = self._statistics_across_devices(grads)
            else:
                stats, nonfinite = self._statistics(grads, tuple(present))
        state.gradient_groups.append((suffix, present, stats, nonfinite))

    def _statistics(self, grads, key):
        if not self.accelerated and grads[0].device.type == "cpu":
            # One pass per gradient for all four (fused.py), where it applies.
            together = fused.gradient_statistics(grads)
            if together is not None:
                return together
            stats = reduce.gradient_statistics(grads, fused=False, scratch=self._scratch(grads))
            # CPU results are already there (no sync to read them), so only
            # gradients whose max |g| is not finite get counted.
            maxes = stats[2 * len(grads):].numpy()
            only = np.flatnonzero(~np.isfinite(maxes)).tolist()
            return stats, reduce.nonfinite_counts(grads, only=only)
        return reduce.gradient_statistics(grads, fused=True), reduce.nonfinite_counts(grads)

    def _statistics_across_devices(self, grads):
        """Parameters on several devices: per device, then to ours."""
        count = len(grads)
        stats = torch.empty(3 * count, dtype=torch.float32, device=self.device)
        nonfinite = torch.empty(count, dtype=torch.float32, device=self.device)
        for positions, members in reduce.by_device(grads).values():
            vector = reduce.gradient_statistics(members, fused=True).to(self.device)
            for row in range(3):
                stats[[row * count + p for p in positions]] = vector[row * len(members):(row + 1) * len(members)]
            nonfinite[positions] = reduce.nonfinite_counts(members).to(self.device)
        return stats, nonfinite

    def _scratch(self, grads):
        """A kept CPU buffer as large as the largest gradient."""
        size = max(grad.numel() for grad in grads)
        if self._scratch_buffer is None or self._scratch_buffer.numel() < size:
            self._scratch_buffer = torch.empty(size, dtype=torch.float32)
        return self._scratch_buffer

    # -- the end of a logging step ---------------------------------------------

    def finish(self, step, walltime, state, class_width):
        """The rest of the device work; returns the `Packet`, or a
        `packet.Later` that makes it (both have `built()`); None on ranks
        that do not write, once their collectives are done."""
        if self.roles.sync:
            outputs.combine_across_ranks(self.plan, state, class_width, self.device)  # COLLECTIVE
            if not self.roles.measures_parameters:
                return None  # DDP ranks != 0: their share is done
        elif not self.accelerated and state.replayed is not None:
            # Everything a CPU step whose heatmaps are in the pass's vector
            # measured is its own (nothing reads the live parameters again):
            # its packet is laid out on the writer thread, where among other
            # jobs that work costs a fraction of what it costs here, between
            # an optimizer step and the next forward (~100 µs a logging step
            # on the MLP).
            return packets.Later(step, walltime, lambda: self._packet(step, walltime, state))
        return self._packet(step, walltime, state)

    def _packet(self, step, walltime, state):
        """The `Packet` of an ended step (None on FSDP ranks that do not write)."""
        builder = packets.PacketBuilder()
        with torch.no_grad():
            for suffix, _, stats, nonfinite in state.gradient_groups:
                if stats is not None:  # None: in the replayed vector
                    builder.add("grads." + suffix, stats)
                    builder.add("nonfinite." + suffix, nonfinite)
            for suffix, _, norms in state.update_groups:
                if norms is not None:
                    builder.add("updates." + suffix, norms)
            if state.activations:
                builder.add("activations", outputs.vector(
                    [count for _, count, _ in state.activations], self.device))
            module_indices, module_rows, module_numels = outputs.module_rows(state, self.device)
            if module_indices:
                builder.add("module_stats", module_rows.reshape(-1))
            attention = sorted(state.attention.items()) if state.attention else ()
            for index, (maps, entropy, _) in attention:
                builder.add("attention.%d" % index, maps.reshape(-1))
                builder.add("entropy.%d" % index, entropy)
            if state.tokens is not None:
                tokens.add_segment(builder, state)
            if state.class_samples:
                builder.add("classes", state.class_sum)
            if state.sequence is not None:
                builder.add("sequence", state.sequence)
            if state.replayed is not None:
                builder.add_block(*state.replayed)  # holds the heatmaps too
            elif self.roles.sharded:
                # Means pooled shard by shard; only the grids are all-reduced
                # (COLLECTIVE). Their entries carry scale 1 (see __init__).
                grids = [grid.reshape(-1) for grid, _ in distributed.heatmap_grids(
                    zip(self.plan.param_names, self._params), self.plan.max_cells
                )]
                if not self.roles.writes:
                    return None  # FSDP ranks != 0: no host copy, no writing
                builder.add("heatmaps", grids)
            else:
                builder.add("heatmaps", self._heatmaps.flat_grids(self._params, state.grids))
        buffer, ready, segments = builder.build(self.device, host_numpy=not self.accelerated)
        return packets.Packet(
            step=step,
            walltime=walltime,
            buffer=buffer,
            ready=ready,
            segments=segments,
            gradient_groups=[(suffix, positions) for suffix, positions, _, _ in state.gradient_groups],
            update_groups=[(suffix, positions) for suffix, positions, _ in state.update_groups],
            activation_entries=[(index, numel) for index, _, numel in state.activations],
            module_entries=module_indices,
            module_numels=module_numels,
            attention_entries=[(index, tuple(maps.shape), shape) for index, (maps, _, shape) in attention],
            class_samples=state.class_samples,
            heatmaps=self.heatmap_entries,
            heatmap_scales=self.heatmap_scales,
        )
