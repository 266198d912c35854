"""What measuring functional ReLUs (`F.relu` in a forward) costs a logging step.

The GPT-style model of overhead.py ("gpt": its MLP uses an `nn.GELU`
module, so no functional ReLU) and the same model with `F.relu` called in
each block's MLP ("gptrelu"), timed in ONE process with overhead.py's
interleaved, repeated blocks. Modes, besides overhead.py's `plain`,
`ours@N` and `noattn@N`:

  nofunc@N   ours@N with the functional-ReLU capture (watch/functional.py)
             turned off after watch(): the cost of that capture is
             ours@N - nofunc@N

The call sites are found on the first logging step, inside the warm-up: the
timed blocks show the steady cost (on "gpt", none is expected).

Usage:
  python benchmarks/functional_overhead.py --models gpt,gptrelu --repeats 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402


class ReluMlp(nn.Module):
    """The GPT block's MLP with its activation called as a function."""

    def __init__(self, width):
        super().__init__()
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.down(F.relu(self.up(x)))


def workload(name, batch):
    """overhead.py's "gpt" workload, or with ReluMlp blocks ("gptrelu")."""
    base = overhead.Workload("gpt", "cpu", batch)
    if name == "gptrelu":
        torch.manual_seed(0)
        for block in base.base.blocks:
            block.mlp = ReluMlp(block.ln2.normalized_shape[0])
    elif name != "gpt":
        raise ValueError("unknown model %r (expected gpt or gptrelu)" % name)
    return base


class Mode(overhead.Mode):
    """overhead.Mode plus `nofunc@N`."""

    def __init__(self, label, workload, root):
        functional_off = label.startswith("nofunc@")
        if functional_off:
            root = os.path.join(root, "nofunc")
        super().__init__(label.replace("nofunc@", "ours@"), workload, root)
        self.label = label
        if functional_off:
            # Measurement aid: the watch's own capture, switched off.
            capture = self.handle._capture._functional
            capture.disarm()
            capture.arm = lambda: None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="gpt,gptrelu")
    parser.add_argument("--modes", default="plain,ours@1,nofunc@1,noattn@1")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    overhead.Mode = Mode  # measure() builds its modes by this name
    labels = [label.strip() for label in args.modes.split(",") if label.strip()]
    if "plain" not in labels:
        labels.insert(0, "plain")
    root = tempfile.mkdtemp(prefix="tv-functional-")
    try:
        for name in args.models.split(","):
            print("%s on cpu, batch %d, %d steps x %d repeats, %d threads"
                  % (name, args.batch, args.steps, args.repeats, args.threads), flush=True)
            results = overhead.measure(workload(name, args.batch), labels, args.steps, args.repeats,
                                       os.path.join(root, name),
                                       log=lambda line: print(line, flush=True))
            print(overhead.table("%s (cpu)" % name, results), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
