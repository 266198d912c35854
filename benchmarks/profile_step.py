"""Where a logging step's host time goes: a torch profile of watch(log_every=1).

Trains the benchmark's ResNet-50 (or another model of overhead.py) for a few
warm-up steps, then profiles `--steps` steps with and without `watch()` and
prints, per step: wall time, host (CPU) time of the training thread's ops and
the ops `watch()` adds, the largest first. On a GPU machine the device's
kernel time is shown too. Part of `make benchmark-gpu`.

Usage:
  python benchmarks/profile_step.py --model resnet50 --device cuda --out profile.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import Workload  # noqa: E402

from torch_visualization import SummaryWriter  # noqa: E402


def profiled(workload, watched, steps, warmup=20):
    """`(seconds per step, profiler)` of `steps` training steps."""
    model, optimizer = workload.fresh()
    writer = None
    if watched:
        writer = SummaryWriter(tempfile.mkdtemp(prefix="tv-profile-"))
        writer.watch(model, optimizer, log_every=1, outputs="classes")
    for index in range(warmup):
        workload.step(model, optimizer, index)
    workload.sync()
    activities = [ProfilerActivity.CPU]
    if workload.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for index in range(steps):
            workload.step(model, optimizer, warmup + index)
        workload.sync()
        if writer is not None:
            writer.flush()
        seconds = (time.perf_counter() - start) / steps
    if writer is not None:
        writer.close()
    return seconds, prof


def _totals(prof, steps):
    """`{op: (calls per step, host µs per step, device µs per step)}`."""
    out = {}
    for event in prof.key_averages():
        device = getattr(event, "device_time_total", 0) or getattr(event, "cuda_time_total", 0)
        out[event.key] = (event.count / steps, event.self_cpu_time_total / steps, device / steps)
    return out


def _largest_additions(base, watched, column, top):
    """Report lines: the ops whose time (`column` of `_totals`) grew most."""
    added = sorted(
        ((watched[key][column] - base.get(key, (0, 0, 0))[column],
          watched[key][0] - base.get(key, (0, 0, 0))[0], key) for key in watched),
        reverse=True,
    )
    return ["  %-48s %9.1f µs  %7.1f calls" % (key[:48], micros, calls)
            for micros, calls, key in added[:top]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="mlp, cnn, gpt or resnet50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=None, help="also write the report here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as overhead.py: denormal gradients would dominate
    workload = Workload(args.model, args.device, args.batch)
    lines = ["%s on %s (%s), batch %d, %d profiled steps, torch %s" % (
        args.model, args.device,
        torch.cuda.get_device_name(workload.device) if workload.device.type == "cuda" else "CPU",
        args.batch, args.steps, torch.__version__)]
    plain_seconds, plain = profiled(workload, False, args.steps)
    ours_seconds, ours = profiled(workload, True, args.steps)
    base, watched = _totals(plain, args.steps), _totals(ours, args.steps)
    host = [sum(v[1] for v in totals.values()) / 1e3 for totals in (base, watched)]
    device = [sum(v[2] for v in totals.values()) / 1e3 for totals in (base, watched)]
    lines.append("wall ms/step: plain %.2f, watch(log_every=1) %.2f (%.2fx)"
                 % (plain_seconds * 1e3, ours_seconds * 1e3, ours_seconds / plain_seconds))
    lines.append("profiled op host ms/step: plain %.2f, watched %.2f (+%.2f)"
                 % (host[0], host[1], host[1] - host[0]))
    if workload.device.type == "cuda":
        lines.append("device kernel ms/step: plain %.2f, watched %.2f (+%.2f)"
                     % (device[0], device[1], device[1] - device[0]))
    columns = [("host", 1)] + ([("device", 2)] if workload.device.type == "cuda" else [])
    for what, column in columns:
        lines.append("ops watch() adds, by %s µs/step (calls/step):" % what)
        lines += _largest_additions(base, watched, column, args.top)
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(report + "\n")
    return report


if __name__ == "__main__":
    main()
