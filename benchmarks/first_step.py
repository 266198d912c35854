"""Extra time of watch()'s first logging steps (planning, first events).

Issue 13 asks that planning never stall training for long: this measures,
on ResNet-50 (the benchmark's own, 161 parameters) on the CPU, the wall time
of a plain training step and of the first three logging steps after
`watch(log_every=1)` (the first plans pooling and writes every tag's
metadata; on CUDA the second captures the parameter side's graph), each
minus the plain step. `--accelerator-path` runs the accelerator path on CPU
tensors (watch's test seam), so its planning is timed too.

Usage:
  python benchmarks/first_step.py [--batch 2] [--size 224] [--accelerator-path]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import resnet50  # noqa: E402

from torch_visualization import SummaryWriter  # noqa: E402
from torch_visualization.watch import reducer as watch_reducer  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--accelerator-path", action="store_true")
    args = parser.parse_args(argv)
    watch_reducer.ACCELERATOR_PATH_ON_CPU = args.accelerator_path
    torch.manual_seed(0)
    model = resnet50()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch,))

    def step():
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(3):  # allocator, optimizer state
        step()
    plain = statistics.median(step() for _ in range(5))
    writer = SummaryWriter(tempfile.mkdtemp(prefix="tv-first-step-"))
    start = time.perf_counter()
    writer.watch(model, optimizer, log_every=1, outputs="classes")
    watch_seconds = time.perf_counter() - start
    logging = [step() for _ in range(3)]
    start = time.perf_counter()
    writer.flush()
    flush_seconds = time.perf_counter() - start
    writer.close()
    print("ResNet-50 on the CPU (%s path), batch %d at %dx%d, torch %s, %d threads"
          % ("accelerator" if args.accelerator_path else "CPU", args.batch, args.size, args.size,
             torch.__version__, torch.get_num_threads()))
    print("  plain step (median of 5): %.3f s" % plain)
    print("  watch() call: %.3f s" % watch_seconds)
    for number, seconds in enumerate(logging, 1):
        print("  logging step %d: %.3f s (%+.3f s over plain)" % (number, seconds, seconds - plain))
    print("  flush of the writer thread afterwards: %.3f s" % flush_seconds)


if __name__ == "__main__":
    main()
