"""How many ATen calls a `watch()` logging step adds to a training step.

On a GPU, a ResNet-50 step in eager PyTorch is close to launch-bound: the
host spends about as long dispatching the step's ~1,200 operations as the
device spends running them, so every operation a logging step adds on the
host side costs wall time (benchmarks/RESULTS.md, H200 runs). This script
counts those operations without a GPU: a model with ResNet-50's topology
(161 parameters, 49 ReLU calls; channel widths divided by 16 so the CPU
finishes quickly) trains on the CPU with `watch()` forced down the
accelerator path (the kernels CUDA takes), and a dispatch mode counts every
ATen call of one plain and one watched step.

The count is exact and machine-independent, unlike wall time on a shared
VM; it is a proxy for host cost, not a GPU measurement. Calls are split by
phase: the forward and backward passes (watch()'s forward hooks) and the
optimizer step (watch()'s parameter side, planned once and replayed: on
CUDA one graph replay, which is no ATen call, stands for its reductions; on
the CPU the same reductions run eagerly and are counted). With `--device
cuda` (part of `make benchmark-gpu`) the count is the one a GPU step makes.

Usage:
  python benchmarks/host_ops.py [--device cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import resnet50  # noqa: E402

from torch_visualization import SummaryWriter  # noqa: E402
from torch_visualization.watch import reducer as watch_reducer  # noqa: E402
from torch_visualization.watch import replay as watch_replay  # noqa: E402

REPLAYED = "optimizer step, in the replayed function"


class _CountCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()
        self.phase = "forward+backward"
        self.by_phase = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        self.by_phase[self.phase] += 1
        return func(*args, **(kwargs or {}))


def count_step_calls(watched, device="cpu", depth=1):
    """`(calls by op, calls by phase)` of one training step (the 4th),
    watched at every step or not."""
    torch.manual_seed(0)
    model = resnet50(classes=10, width_divisor=16,
                     blocks=tuple(depth * count for count in (3, 4, 6, 3))).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    writer = None
    if watched:
        writer = SummaryWriter(tempfile.mkdtemp(prefix="tv-host-ops-"))
        writer.watch(model, optimizer, log_every=1, outputs="classes")
    x = torch.randn(2, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (2,), device=device)
    counter = _CountCalls()
    reductions = watch_replay.reductions

    def counted_reductions(*args, **kwargs):
        # On CUDA one graph replay (no ATen call) stands for these calls.
        phase, counter.phase = counter.phase, REPLAYED
        try:
            return reductions(*args, **kwargs)
        finally:
            counter.phase = phase

    watch_replay.reductions = counted_reductions

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        counter.phase = "optimizer step"
        optimizer.step()
        counter.phase = "forward+backward"

    try:
        for _ in range(3):  # optimizer state, first events, kept buffers, graph capture
            step()
        with counter:
            step()
    finally:
        watch_replay.reductions = reductions
    if writer is not None:
        writer.close()
    return counter.calls, counter.by_phase


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (the accelerator path on CPU "
                        "tensors) or cuda")
    parser.add_argument("--depth", type=int, default=1,
                        help="blocks per stage times this (2: twice the layers)")
    parser.add_argument("--json", default=None, help="write the counts here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    previous = watch_reducer.ACCELERATOR_PATH_ON_CPU
    watch_reducer.ACCELERATOR_PATH_ON_CPU = args.device == "cpu"
    try:
        plain, plain_phases = count_step_calls(False, args.device, args.depth)
        watched, watched_phases = count_step_calls(True, args.device, args.depth)
    finally:
        watch_reducer.ACCELERATOR_PATH_ON_CPU = previous
    added = collections.Counter(watched)
    added.subtract(plain)
    phases = {phase: watched_phases[phase] - plain_phases[phase]
              for phase in ("forward+backward", "optimizer step", REPLAYED)}
    report = {
        "torch": torch.__version__,
        "device": args.device,
        "depth": args.depth,
        "plain_step_calls": sum(plain.values()),
        "watched_step_calls": sum(watched.values()),
        "added_calls": sum(watched.values()) - sum(plain.values()),
        "added_by_phase": phases,
        "added_by_op": dict(added.most_common()),
    }
    print("ResNet-50-shaped model (%d x its blocks), accelerator path on %s, one step:"
          % (args.depth, args.device))
    print("  plain step:   %d ATen calls" % report["plain_step_calls"])
    print("  logging step: %d ATen calls (+%d)" % (report["watched_step_calls"], report["added_calls"]))
    print("  added, by phase: " + ", ".join("%s %+d" % item for item in phases.items()))
    if args.device == "cpu":
        report["cuda_equivalent_added_calls"] = report["added_calls"] - phases[REPLAYED] + 3
        print("  on CUDA one graph replay stands for the replayed function's calls, and the "
              "gradients' copy into the graph's buffers and the pinned host copy add 3: %d"
              % report["cuda_equivalent_added_calls"])
    print("  added, by op: " + ", ".join("%s %d" % item for item in added.most_common(8)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print("wrote", args.json)
    return report


if __name__ == "__main__":
    main()
