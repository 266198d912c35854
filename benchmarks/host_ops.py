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
VM; it is a proxy for host cost, not a GPU measurement.

Usage:
  python benchmarks/host_ops.py [--json PATH]
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


class _CountCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_step_calls(watched):
    """ATen calls of one training step (the 4th), watched at every step or not."""
    torch.manual_seed(0)
    model = resnet50(classes=10, width_divisor=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    writer = None
    if watched:
        writer = SummaryWriter(tempfile.mkdtemp(prefix="tv-host-ops-"))
        writer.watch(model, optimizer, log_every=1)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(3):  # optimizer state, first events, kept buffers
        step()
    counter = _CountCalls()
    with counter:
        step()
    if writer is not None:
        writer.close()
    return counter.calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="write the counts here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    previous = watch_reducer.ACCELERATOR_PATH_ON_CPU
    watch_reducer.ACCELERATOR_PATH_ON_CPU = True
    try:
        plain = count_step_calls(False)
        watched = count_step_calls(True)
    finally:
        watch_reducer.ACCELERATOR_PATH_ON_CPU = previous
    added = collections.Counter(watched)
    added.subtract(plain)
    report = {
        "torch": torch.__version__,
        "plain_step_calls": sum(plain.values()),
        "watched_step_calls": sum(watched.values()),
        "added_calls": sum(watched.values()) - sum(plain.values()),
        "added_by_op": dict(added.most_common()),
    }
    print("ResNet-50-shaped model (161 parameters), accelerator path, one step:")
    print("  plain step:   %d ATen calls" % report["plain_step_calls"])
    print("  logging step: %d ATen calls (+%d)" % (report["watched_step_calls"], report["added_calls"]))
    print("  added, by op: " + ", ".join("%s %d" % item for item in added.most_common(8)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print("wrote", args.json)
    return report


if __name__ == "__main__":
    main()
