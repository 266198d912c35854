"""Findings route and RustBoard latency benchmark.

Two scenarios, each on a logdir shaped like `watch()` output (written with
our `SummaryWriter` by parallel processes; heatmaps are 8x8 to keep writing
fast, which changes nothing for the routes measured here):

1. findings (issue 12): `--runs` runs (10) x `--layers` layers (50) x
   `--steps` logged steps (1,000): the 5 bars tags of watch()
   (gradients/norm|mean_abs|max_abs|nonfinite, updates/ratio), one
   `weights/<layer>` heatmap per layer and a `loss` scalar. Per loader: the
   cold `GET /findings?run=R` (first request for a run: the engine reads and
   checks it) for each run, and the warm `GET /findings` for all runs
   (cached until the data changes). Targets: cold <= 300 ms, warm <= 20 ms.
2. tags/data latency: one run of 50 layers x 2,000 logged steps (5 bars tags)
   + 50 heatmap tags, served with `--samples_per_plugin
   torch_visualization=2000`: `GET /tags` and one bars step of `GET /data`
   (warm: the tag's steps already decoded). Target under RustBoard: <= 10 ms.

Latencies are wall-clock HTTP round trips on loopback (urllib), medians of
`--repeat` requests, after TensorBoard has loaded every step.

    python benchmarks/findings.py                  # both scenarios, both loaders
    python benchmarks/findings.py --steps 200 --runs 3 --latency-steps 500   # quick
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import _get, machine, tensorboard  # noqa: E402  (benchmarks/load.py)

PREFIX = "/data/plugin/torch_visualization"
BARS = ("gradients/norm", "gradients/mean_abs", "gradients/max_abs", "gradients/nonfinite", "updates/ratio")


def _write_run(logdir, run, layers, steps, seed):
    """One healthy-looking watch()-shaped run (one process)."""
    import torch

    from torch_visualization import SummaryWriter

    rng = np.random.default_rng(seed)
    names = ["layer%02d.weight" % i for i in range(layers)]
    base = 10 ** rng.uniform(-2, -0.5, layers)
    grid = torch.from_numpy(rng.standard_normal((8, 8)).astype(np.float32))
    with SummaryWriter(os.path.join(logdir, run), max_queue=4096, flush_secs=60) as writer:
        for step in range(steps):
            noise = rng.uniform(0.8, 1.2, layers)
            norm = base * noise
            stats = {
                "gradients/norm": norm,
                "gradients/mean_abs": norm * 1e-2,
                "gradients/max_abs": norm * 1e-1,
                "gradients/nonfinite": np.zeros(layers),
                "updates/ratio": 1e-3 * noise,
            }
            for tag, values in stats.items():
                writer.add_gradient_bars(tag, dict(zip(names, values.tolist())), step)
            for name in names:
                writer.add_weight_heatmap("weights/" + name, grid * (1 + step * 1e-4), step)
            writer.add_scalar("loss", 2.0 / (1 + step), step)


def write_logdir(logdir, runs, layers, steps, jobs=None):
    """Writes `runs` runs in parallel processes; returns `(run names, seconds)`.

    A logdir that already holds them (from `--logdir` of an earlier run of
    this script with the same sizes) is reused as it is.
    """
    import multiprocessing

    started = time.monotonic()
    names = ["run%02d" % i for i in range(runs)]
    if all(os.path.isdir(os.path.join(logdir, name)) for name in names):
        return names, 0.0
    jobs = max(1, min(jobs or os.cpu_count() or 1, runs))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(_write_run, logdir, name, layers, steps, i) for i, name in enumerate(names)]
        for future in futures:
            future.result()
    return names, time.monotonic() - started


def _timed_get(url):
    started = time.perf_counter()
    status, body = _get(url)
    elapsed = (time.perf_counter() - started) * 1e3
    if status != 200:
        raise RuntimeError("%s answered %d: %s" % (url, status, body[:300]))
    return elapsed, body


def wait_loaded(process, base, runs, last_step, timeout):
    """Waits until every run's tags and loss scalar reach `last_step`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError("tensorboard exited with %s" % process.returncode)
        status, body = _get(base + PREFIX + "/tags", timeout=60)
        if status == 200:
            listing = json.loads(body)["runs"]
            if all(
                run in listing and listing[run] and all(info["max_step"] == last_step for info in listing[run].values())
                for run in runs
            ):
                # The loss scalars load alongside; give the reload a moment.
                status, body = _get(base + "/data/plugin/scalars/tags", timeout=60)
                scalars = json.loads(body) if status == 200 else {}
                if all(run in scalars and "loss" in scalars[run] for run in runs):
                    return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError("tensorboard did not load every step in %ds" % timeout)


def bench_findings(logdir, runs, steps, load_fast, repeat, workdir):
    log_path = os.path.join(workdir, "tb-findings-%s.log" % load_fast)
    with tensorboard(logdir, load_fast, log_path) as (process, base):
        loaded = wait_loaded(process, base, runs, steps - 1, timeout=1800)
        cold = []
        for run in runs:
            elapsed, body = _timed_get(base + PREFIX + "/findings?" + urllib.parse.urlencode({"run": run}))
            cold.append(elapsed)
            found = json.loads(body)["runs"][run]
            if found:
                raise RuntimeError("healthy synthetic run %s has findings: %s" % (run, found))
        _timed_get(base + PREFIX + "/findings")
        warm = [_timed_get(base + PREFIX + "/findings")[0] for _ in range(repeat)]
    return {
        "loader": load_fast, "load_seconds": round(loaded, 1),
        "cold_one_run_ms": {"median": round(statistics.median(cold), 1), "max": round(max(cold), 1)},
        "warm_all_runs_ms": {"median": round(statistics.median(warm), 1), "max": round(max(warm), 1)},
    }


def bench_latency(logdir, run, steps, load_fast, repeat, workdir):
    log_path = os.path.join(workdir, "tb-latency-%s.log" % load_fast)
    extra = ["--samples_per_plugin", "torch_visualization=%d" % steps]
    with tensorboard(logdir, load_fast, log_path, extra) as (process, base):
        loaded = wait_loaded(process, base, [run], steps - 1, timeout=1800)
        tags = [_timed_get(base + PREFIX + "/tags")[0] for _ in range(repeat)]
        # Spaced past the plugin's listing reuse (tb_plugin/listing.py):
        # what a request costs when it has to list again.
        spaced = []
        for _ in range(5):
            time.sleep(1.2)
            spaced.append(_timed_get(base + PREFIX + "/tags")[0])
        rng = np.random.default_rng(0)
        url = base + PREFIX + "/data?" + urllib.parse.urlencode({"run": run, "tag": "gradients/norm"})
        first, body = _timed_get(url)
        held = len(json.loads(body)["steps"])
        data = [_timed_get(url + "&step=%d" % rng.integers(0, steps))[0] for _ in range(repeat)]
    return {
        "loader": load_fast, "load_seconds": round(loaded, 1), "steps_held": held,
        "tags_ms": {"median": round(statistics.median(tags), 1), "max": round(max(tags), 1)},
        "tags_relisting_ms": {"median": round(statistics.median(spaced), 1), "max": round(max(spaced), 1)},
        "data_first_ms": round(first, 1),
        "data_bars_step_ms": {"median": round(statistics.median(data), 1), "max": round(max(data), 1)},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1000, help="logged steps per run (findings)")
    parser.add_argument("--latency-steps", type=int, default=2000, help="logged steps (tags/data latency)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--loaders", default="false,true", help="--load_fast values to run")
    parser.add_argument("--scenarios", default="findings,latency")
    parser.add_argument("--logdir", help="keep the logdirs here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    workdir = args.logdir or tempfile.mkdtemp(prefix="findings-bench-")
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "args": vars(args)}
    scenarios = args.scenarios.split(",")
    loaders = args.loaders.split(",")
    if "findings" in scenarios:
        logdir = os.path.join(workdir, "findings")
        runs, seconds = write_logdir(logdir, args.runs, args.layers, args.steps)
        print("wrote %d runs x %d layers x %d steps in %.0f s" % (args.runs, args.layers, args.steps, seconds))
        for load_fast in loaders:
            result = bench_findings(logdir, runs, args.steps, load_fast, args.repeat, workdir)
            results.setdefault("findings", []).append(result)
            print("findings load_fast=%s: cold one run %s ms, warm all runs %s ms (loaded in %s s)" % (
                load_fast, result["cold_one_run_ms"], result["warm_all_runs_ms"], result["load_seconds"]))
    if "latency" in scenarios:
        logdir = os.path.join(workdir, "latency")
        (run,), seconds = write_logdir(logdir, 1, args.layers, args.latency_steps)
        print("wrote 1 run x %d layers x %d steps in %.0f s" % (args.layers, args.latency_steps, seconds))
        for load_fast in loaders:
            result = bench_latency(logdir, run, args.latency_steps, load_fast, args.repeat, workdir)
            results.setdefault("latency", []).append(result)
            print("latency load_fast=%s: /tags %s ms (relisting: %s ms), /data bars step %s ms "
                  "(first %s ms, %d steps held)" % (
                      load_fast, result["tags_ms"], result["tags_relisting_ms"],
                      result["data_bars_step_ms"], result["data_first_ms"], result["steps_held"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
