"""What logging costs a training step: `watch()` against the stock practice.

Same model, data and number of steps for every mode, all in ONE process;
modes are interleaved (the order rotates every repeat) and each is measured
several times, so drifting machine load hits all of them alike. Reported:
the median ms per step of each mode, and its ratio to plain training as the
median over repeats of (this mode / plain in the same repeat).

Modes:
  plain         training only
  hist@N        stock torch.utils.tensorboard.SummaryWriter.add_histogram of
                every weight and every gradient every N steps
  image@N       stock add_image of every weight as a heatmap every N steps
  ours@N        torch_visualization SummaryWriter.watch(model, optimizer,
                log_every=N)
  noattn@N      the same with attention capture off (attention=False): the
                cost of capturing attention is ours@N - noattn@N
  torchops@N    ours@N with PyTorch ops where the one-pass C kernels of
                fused.py would run (fused.ENABLED off during its blocks: what
                a build without the C extension computes on the training
                thread; the writer thread still encodes heatmaps in C)
  norm@N        the cheap stock habit: per-parameter grad.norm().item()
                every N steps (nothing written)
  gradstats@N   a floor, not a product: only the three gradient statistics
                that ours logs (L2 norm, sum and max of |g|) for every
                parameter, computed as watch() does (on the CPU one pass
                per gradient, fused.py), right after optimizer.step(); no
                weights, no updates, nothing written, no thread
  passes@N      a floor, not a product (CPU): only the parameter side's
                memory traffic as watch() does it there (watch/cpu_pass.py):
                the kernel call before the step that reads every gradient
                and copies every weight, and the one after it that reads
                every weight and copy (update norms, heatmap grids); no
                forward hooks, nothing decoded or written, no thread.
                ours@N - passes@N is what the rest of a logging step costs

Every writer mode ends each timed block with `writer.flush()`, inside the
timing, so work left to background threads is paid by the mode that made it.

Models: "mlp", a 4-layer MLP (784-512-256-128-10, 0.57M parameters, batch
64, SGD with momentum) on the CPU; "gpt", a GPT-style character model (4
blocks of SDPA attention, width 128, 64 positions, 0.8M parameters; batch
from --batch) on the CPU; "cnn", two conv layers (run it with --batch 128:
16x16 inputs) on the CPU; "resnet50", a ResNet-50 built here (no
downloads, no torchvision) trained in bf16 autocast with channels-last,
batch 64, when CUDA is available. For the writer modes the event bytes
written per logging step are reported too.

Usage (see benchmarks/README.md):
  python benchmarks/overhead.py --json benchmarks/overhead.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter as StockWriter

from torch_visualization import SummaryWriter, fused, reduce

# -- models --------------------------------------------------------------------


def mlp():
    """4-layer MLP, 784-512-256-128-10 (567,434 parameters)."""
    return nn.Sequential(
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride here) -> 1x1, x4 expansion."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def resnet50(classes=1000, width_divisor=1, blocks=(3, 4, 6, 3)):
    """ResNet-50 (25.6M parameters), the torchvision layout, built locally;
    every width divided by `width_divisor` (same layers and parameter list);
    `blocks` per stage (twice as many: a ResNet-50 with twice the layers)."""
    width = 64 // width_divisor
    layers = [
        nn.Conv2d(3, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    inplanes = width
    for planes, count, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
        planes //= width_divisor
        for index in range(count):
            layers.append(Bottleneck(inplanes, planes, stride if index == 0 else 1))
            inplanes = planes * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inplanes, classes)]
    return nn.Sequential(*layers)


def cnn():
    """A small CNN: two 3x3 conv layers (16 and 32 channels) with ReLU and
    pooling, then a linear classifier, for 16x16 RGB inputs (~24K parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


class _CausalSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class _Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = _CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Gpt(nn.Module):
    """A GPT-style character model: 4 pre-LayerNorm blocks, width 128, 4
    heads, SDPA attention, 64 positions, vocabulary 65 (0.8M parameters)."""

    def __init__(self, vocab=65, width=128, heads=4, blocks=4, length=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(length, width))
        self.blocks = nn.ModuleList([_Block(width, heads) for _ in range(blocks)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class Workload:
    """A model, its batches and one training step."""

    def __init__(self, name, device, batch):
        self.name = name
        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        if name == "mlp":
            self.base = mlp()
            shape, classes, pool = (batch, 784), 10, 16
        elif name == "resnet50":
            self.base = resnet50()
            shape, classes, pool = (batch, 3, 224, 224), 1000, 2
        elif name == "gpt":
            self.base = Gpt()
            shape, classes, pool = None, 65, 16
        elif name == "cnn":
            self.base = cnn()
            shape, classes, pool = (batch, 3, 16, 16), 10, 16
        else:
            raise ValueError("unknown model %r (expected mlp, cnn, gpt or resnet50)" % name)
        self.autocast = name == "resnet50" and self.device.type == "cuda"
        memory_format = torch.channels_last if name == "resnet50" else torch.contiguous_format
        self.base = self.base.to(self.device, memory_format=memory_format)
        # Random inputs and labels, cycled; see main() about denormals.
        if name == "gpt":  # next-character prediction on random text
            text = [torch.randint(0, classes, (batch, 65), generator=generator) for _ in range(pool)]
            self.batches = [(t[:, :-1].to(self.device), t[:, 1:].to(self.device)) for t in text]
            return
        self.batches = [
            (
                torch.randn(shape, generator=generator).to(self.device, memory_format=memory_format)
                if len(shape) == 4
                else torch.randn(shape, generator=generator).to(self.device),
                torch.randint(0, classes, (batch,), generator=generator).to(self.device),
            )
            for _ in range(pool)
        ]

    def fresh(self):
        """A copy of the model with its own optimizer (one per mode)."""
        model = copy.deepcopy(self.base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return model, optimizer

    def step(self, model, optimizer, index):
        x, y = self.batches[index % len(self.batches)]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = model(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# -- modes -----------------------------------------------------------------------


def _dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


class Mode:
    """One way of training: a model copy plus (maybe) a writer."""

    def __init__(self, label, workload, root):
        self.label = label
        self.workload = workload
        self.model, self.optimizer = workload.fresh()
        self.index = 0
        self.kind, _, every = label.partition("@")
        self.every = int(every) if every else 0
        self.writer = None
        self.handle = None
        self.logdir = os.path.join(root, label.replace("@", "_"))
        if self.kind in ("ours", "noattn", "torchops"):
            self.writer = SummaryWriter(self.logdir)
            # Classifiers (and the GPT's next-character logits): the
            # class-share pie is part of the work measured.
            self.handle = self.writer.watch(self.model, self.optimizer, log_every=self.every,
                                            outputs="classes", attention=self.kind != "noattn")
        elif self.kind in ("hist", "image"):
            self.writer = StockWriter(self.logdir)
        elif self.kind == "gradstats":
            self._scratch = torch.empty(max(p.numel() for p in self.model.parameters()),
                                        device=workload.device)
        elif self.kind == "passes":
            self._passes_hooks()
        elif self.kind != "norm" and label != "plain":
            raise ValueError("unknown mode %r (see --help)" % label)
        self.logged_steps = 0
        self.bytes_at_start = None

    def _passes_hooks(self):
        """passes@N: watch()'s CPU parameter pass on the logging steps,
        around each optimizer step, as the watch's own hooks run it."""
        from torch_visualization import pooling
        from torch_visualization.watch import cpu_pass

        params = [p for p in self.model.parameters() if p.requires_grad]
        if not cpu_pass.applies(params, params):
            raise ValueError("passes@N needs contiguous float32 CPU parameters and the C kernels")
        heatmaps = pooling.HeatmapPlan(params, pooling.DEFAULT_MAX_CELLS, batch=False)
        floor = cpu_pass.CpuParameterPass(params, params, heatmaps)

        def before_step(*_):
            if self.index % self.every == 0:  # the gradients are final: no closure here
                floor.copy_weights([p.grad for p in params])

        def after_step(*_):
            if self.index % self.every == 0 and floor.run([p.grad for p in params]) is None:
                raise RuntimeError("passes@N: the CPU pass did not take this step")

        self.optimizer.register_step_pre_hook(before_step)
        self.optimizer.register_step_post_hook(after_step)

    def _gradient_norms(self):
        """norm@N: what a quick hand-rolled "gradient flow" logger does."""
        return [param.grad.norm().item() for param in self.model.parameters()
                if param.grad is not None]

    def _gradient_stats(self):
        """gradstats@N: the gradient statistics with the kernels watch() uses
        (CPU: the one-pass kernel of fused.py where it is built, else a dot
        product, |g| into a kept buffer, its sum and its max; elsewhere
        `_foreach_norm` of order 2, 1 and inf)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            cpu = grads[0].device.type == "cpu"
            if cpu and fused.gradient_statistics(grads) is not None:
                return
            reduce.gradient_statistics(grads, fused=not cpu, scratch=self._scratch if cpu else None)

    def _stock_log(self, step):
        for name, param in self.model.named_parameters():
            if self.kind == "hist":
                self.writer.add_histogram("weights/" + name, param, step)
                if param.grad is not None:
                    self.writer.add_histogram("gradients/" + name, param.grad, step)
            else:
                matrix = param.detach().float()
                matrix = matrix.reshape(1, -1) if matrix.dim() == 1 else matrix.reshape(matrix.shape[0], -1)
                low, high = matrix.min(), matrix.max()
                image = (matrix - low) / (high - low).clamp_min(1e-12)
                self.writer.add_image("weights/" + name, image, step, dataformats="HW")

    def run(self, steps):
        """Trains `steps` steps; returns wall seconds (writer flush included)."""
        workload = self.workload
        fused.ENABLED = self.kind != "torchops"
        workload.sync()
        start = time.perf_counter()
        for _ in range(steps):
            workload.step(self.model, self.optimizer, self.index)
            if self.every and self.index % self.every == 0:
                if self.kind in ("hist", "image"):
                    self._stock_log(self.index)
                elif self.kind == "norm":
                    self._gradient_norms()
                elif self.kind == "gradstats":
                    self._gradient_stats()
            if self.every and self.index % self.every == 0:
                self.logged_steps += 1
            self.index += 1
        workload.sync()
        if self.writer is not None:
            self.writer.flush()
        return time.perf_counter() - start

    def start_counting_bytes(self):
        if self.writer is not None:
            self.writer.flush()
            self.bytes_at_start = _dir_bytes(self.logdir)
            self.logged_steps = 0

    def bytes_per_logging_step(self):
        if self.writer is None or not self.logged_steps:
            return None
        self.writer.flush()
        return (_dir_bytes(self.logdir) - self.bytes_at_start) / self.logged_steps

    def close(self):
        if self.writer is not None:
            self.writer.close()


def measure(workload, labels, steps, repeats, root, log=print, slow_steps=None):
    """Interleaved, repeated timing of every mode; returns per-mode results.

    `slow_steps` (default `steps`) is the block length of the stock modes
    that log at every step: on ResNet-50 they take seconds per step, and a
    ratio per step needs no more than a few of them.
    """
    modes = [Mode(label, workload, root) for label in labels]
    block = {
        mode.label: (slow_steps or steps) if mode.kind in ("hist", "image") and mode.every == 1 else steps
        for mode in modes
    }
    for mode in modes:  # warm-up: caches, first events and metadata, CRC tables
        mode.run(max(1, min(block[mode.label], 2 * max(mode.every, 1))))
        mode.start_counting_bytes()
    samples = {mode.label: [] for mode in modes}
    for repeat in range(repeats):
        shift = repeat % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            seconds = mode.run(block[mode.label])
            samples[mode.label].append(seconds / block[mode.label] * 1e3)
        log(
            "  repeat %d/%d: %s"
            % (
                repeat + 1,
                repeats,
                ", ".join("%s %.2f" % (m.label, samples[m.label][-1]) for m in modes),
            )
        )
    results = {}
    for mode in modes:
        results[mode.label] = {
            "ms_per_step": statistics.median(samples[mode.label]),
            "samples_ms_per_step": samples[mode.label],
            "event_bytes_per_logging_step": mode.bytes_per_logging_step(),
        }
        mode.close()
    plain = results["plain"]
    for label, result in results.items():
        # Within one repeat every mode ran back to back, so per-repeat ratios
        # cancel most of the drift in machine load; their median is reported.
        result["ratio_to_plain"] = statistics.median(
            mine / base for mine, base in zip(result["samples_ms_per_step"], plain["samples_ms_per_step"])
        )
        result["ratio_of_medians"] = result["ms_per_step"] / plain["ms_per_step"]
    return results


def table(model, results):
    lines = [
        "%s" % model,
        "| mode | ms/step (median) | ratio to plain (median of per-repeat ratios) "
        "| ratio of medians | event bytes / logging step |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, result in results.items():
        size = result["event_bytes_per_logging_step"]
        lines.append(
            "| %s | %.3f | %.3fx | %.3fx | %s |"
            % (label, result["ms_per_step"], result["ratio_to_plain"],
               result["ratio_of_medians"], "-" if size is None else "%d" % size)
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None,
                        help="comma-separated: mlp, cnn, gpt, resnet50 (default: mlp, plus resnet50 with CUDA)")
    parser.add_argument("--modes", default="plain,hist@1,image@1,norm@1,gradstats@1,ours@1,ours@10,ours@100",
                        help="comma-separated modes (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps per timed block (default 100: one ours@100 logging step per block)")
    parser.add_argument("--slow-steps", type=int, default=10,
                        help="steps per timed block of hist@1 and image@1 (default 10)")
    parser.add_argument("--repeats", type=int, default=25,
                        help="timed blocks per mode (default 25: short blocks, many rounds, so that "
                        "a shared machine's load swings hit every mode alike)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default=None, help="device for resnet50 (default cuda)")
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    # The MLP memorises its 16 batches within a few hundred steps; its tiny
    # gradients would then turn denormal and slow every CPU kernel 10x+,
    # drowning what is measured. Flushing denormals to zero (all modes alike)
    # keeps the step time steady.
    torch.set_flush_denormal(True)
    labels = [label.strip() for label in args.modes.split(",") if label.strip()]
    if "plain" not in labels:
        labels.insert(0, "plain")
    if args.models:
        models = [name.strip() for name in args.models.split(",")]
    else:
        models = ["mlp"] + (["resnet50"] if torch.cuda.is_available() else [])
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "steps": args.steps,
        "slow_steps": args.slow_steps,
        "repeats": args.repeats,
        "batch": args.batch,
        "models": {},
    }
    root = tempfile.mkdtemp(prefix="tv-overhead-")
    try:
        for name in models:
            device = "cpu" if name in ("mlp", "cnn", "gpt") else (args.device or "cuda")
            if device.startswith("cuda"):
                report["gpu"] = torch.cuda.get_device_name(torch.device(device))
            print("%s on %s, batch %d, %d steps x %d repeats, %d threads"
                  % (name, device, args.batch, args.steps, args.repeats, args.threads), flush=True)
            workload = Workload(name, device, args.batch)
            results = measure(workload, labels, args.steps, args.repeats,
                              os.path.join(root, name),
                              log=lambda line: print(line, flush=True),
                              slow_steps=args.slow_steps)
            report["models"][name] = {"device": device, "results": results}
            print(table("%s (%s)" % (name, device), results), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print("wrote", args.json)
    return report


if __name__ == "__main__":
    main()
