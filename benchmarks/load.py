"""Load benchmark: concurrent clients hammering the data route of a big logdir.

Writes a logdir of `--steps` steps x `--tags` tags (one run, small tensors of
every chart kind, written with our `SummaryWriter` by parallel processes into
one event file each), starts a real `tensorboard` subprocess on loopback for
each loader (`--load_fast=false` and `true`), waits until every step is
loaded, then lets `--clients` threads send `--requests` GETs to
`/data/plugin/torch_visualization/data` (random tag, a random served step or
the latest), stopping early after `--duration` seconds.

Reports per loader: requests, errors (non-200 or no answer) and 5xx, latency
p50/p99/max, throughput, the time TensorBoard took to load the logdir, and
peak memory of the TensorBoard process tree (the Python process plus
RustBoard's data server): the highest sampled sum of VmRSS, and the sum of
each process's VmHWM (read from /proc; Linux only).

    python benchmarks/load.py                       # full size: 10,000 x 50, 50 clients
    python benchmarks/load.py --steps 500 --tags 5 --clients 10 --requests 200
    python benchmarks/load.py --json load.json --logdir /tmp/load-logdir   # keep the logdir
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

PREFIX = "/data/plugin/torch_visualization"
RUN = "load"
KINDS = ("pie", "bars", "heatmap", "scatter")


# -- the logdir ----------------------------------------------------------------

def tag_names(tags):
    """`tags` tag names cycling through the four kinds: `pie/000`, `bars/001`, ..."""
    return ["%s/%03d" % (KINDS[i % len(KINDS)], i) for i in range(tags)]


def _write_tags(logdir, steps, names, part):
    """One process's share: every step of `names`, into its own event file."""
    import torch

    from torch_visualization import SummaryWriter

    rng = np.random.default_rng(part)
    classes = ["class%d" % i for i in range(10)]
    layers = ["layer%d.weight" % i for i in range(8)]
    # A big queue and rare flushes: the writer's thread batches the I/O.
    with SummaryWriter(
        os.path.join(logdir, RUN), max_queue=4096, flush_secs=60, filename_suffix=".part%d" % part
    ) as writer:
        pie = rng.random(10) + 0.1
        heat = torch.from_numpy(rng.standard_normal((8, 8)).astype(np.float32))
        points = rng.standard_normal((16, 2)).astype(np.float32)
        for step in range(steps):
            scale = 1.0 + step / steps  # values change with the step
            for name in names:
                kind = name.split("/")[0]
                if kind == "pie":
                    writer.add_class_pie(name, pie * scale, step, class_names=classes)
                elif kind == "bars":
                    writer.add_gradient_bars(name, {l: scale * (i + 1) for i, l in enumerate(layers)}, step)
                elif kind == "heatmap":
                    writer.add_weight_heatmap(name, heat * scale, step)
                else:
                    writer.add_scatter(name, points * scale, step)


def write_logdir(logdir, steps, tags, jobs=None):
    """Writes `steps` x `tags` into `logdir/load`; returns the seconds it took."""
    names = tag_names(tags)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    started = time.monotonic()
    groups = [names[i::jobs] for i in range(jobs)]
    if jobs == 1:
        _write_tags(logdir, steps, groups[0], 0)
    else:
        # Separate processes: proto building is Python, one GIL per writer.
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            for future in [pool.submit(_write_tags, logdir, steps, g, i) for i, g in enumerate(groups)]:
                future.result()
    return time.monotonic() - started


# -- memory of a process tree ---------------------------------------------------

def _children(pid):
    """Direct children of `pid` (scans /proc: works without CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def process_tree(pid):
    """`pid` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def _status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Samples the summed VmRSS of a process tree in a background thread."""

    def __init__(self, pid, interval=0.2):
        self.pid = pid
        self.interval = interval
        self.peak_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        total = sum(_status_kib(p, "VmRSS") for p in process_tree(self.pid))
        self.peak_rss_kib = max(self.peak_rss_kib, total)

    def hwm_kib(self):
        """Sum of each live process's own peak (VmHWM): an upper bound of the tree's peak."""
        return sum(_status_kib(p, "VmHWM") for p in process_tree(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# -- the server -----------------------------------------------------------------

def _free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=60):
    """`(status, body)`; status 0 when no HTTP answer came back."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError) as e:
        return 0, repr(e).encode()


@contextlib.contextmanager
def tensorboard(logdir, load_fast, log_path, extra_flags=()):
    """A real `tensorboard` on a free loopback port; yields `(process, base url)`.

    `extra_flags` are passed on (e.g. `--samples_per_plugin`; benchmarks/findings.py).
    """
    port = _free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "tensorboard.main",
                "--logdir", logdir,
                "--host", "127.0.0.1",
                "--port", str(port),
                "--load_fast=%s" % load_fast,
                *extra_flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process, "http://127.0.0.1:%d" % port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_loaded(process, url, names, last_step, timeout):
    """Waits until /tags lists every tag at `last_step`; returns seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError("tensorboard exited with %s" % process.returncode)
        status, body = _get(url + PREFIX + "/tags", timeout=30)
        if status == 200:
            tags = json.loads(body)["runs"].get(RUN, {})
            if all(tags.get(n, {}).get("max_step") == last_step for n in names):
                return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError("tensorboard did not load every step in %ds" % timeout)


# -- the load -------------------------------------------------------------------

def _data_url(base, tag, step=None):
    query = {"run": RUN, "tag": tag}
    if step is not None:
        query["step"] = str(step)
    return base + PREFIX + "/data?" + urllib.parse.urlencode(query)


def hammer(base, names, clients, requests, duration, seed=0):
    """Sends `requests` data-route GETs from `clients` threads.

    Returns:
      A dict: requests, errors, errors_5xx, statuses, latencies (seconds),
      seconds, steps_served (per tag, from one latest-step answer each).
    """
    steps = {}
    for name in names:
        status, body = _get(_data_url(base, name))
        if status != 200:
            raise RuntimeError("%s answered %d: %s" % (name, status, body[:200]))
        steps[name] = json.loads(body)["steps"]

    plan_rng = random.Random(seed)
    plan = []
    for _ in range(requests):
        name = plan_rng.choice(names)
        # One in ten asks for the latest step (what a card loads first).
        step = None if plan_rng.random() < 0.1 else plan_rng.choice(steps[name])
        plan.append(_data_url(base, name, step))

    lock = threading.Lock()
    latencies, statuses, failures = [], {}, []
    deadline = time.monotonic() + duration
    cursor = iter(plan)

    def client():
        while time.monotonic() < deadline:
            with lock:
                url = next(cursor, None)
            if url is None:
                return
            started = time.perf_counter()
            status, body = _get(url)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200 and len(failures) < 5:
                    failures.append((status, url, body[:300]))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    done = len(latencies)
    return {
        "requests": done,
        "errors": done - statuses.get(200, 0),
        "errors_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "failures": [[s, u, b.decode("utf-8", "replace")] for s, u, b in failures],
        "latencies": latencies,
        "seconds": seconds,
        "steps_served": {n: len(s) for n, s in steps.items()},
    }


def bench_loader(logdir, load_fast, names, steps, clients, requests, duration, load_timeout, workdir):
    """Runs one loader end to end; returns its figures (latencies summarised)."""
    log_path = os.path.join(workdir, "tensorboard-load_fast-%s.log" % load_fast)
    with tensorboard(logdir, load_fast, log_path) as (process, url):
        with MemorySampler(process.pid) as memory:
            load_seconds = wait_until_loaded(process, url, names, steps - 1, load_timeout)
            result = hammer(url, names, clients, requests, duration)
            memory.sample()
            hwm = memory.hwm_kib()
        alive = process.poll() is None
    lat = np.array(result.pop("latencies")) * 1000.0
    served = result.pop("steps_served")
    return {
        "loader": "rustboard (--load_fast=true)" if load_fast == "true" else "python (--load_fast=false)",
        "load_fast": load_fast,
        **result,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
        "requests_per_s": result["requests"] / result["seconds"] if result["seconds"] else None,
        "load_seconds": load_seconds,
        "peak_rss_mib": memory.peak_rss_kib / 1024.0,
        "sum_vmhwm_mib": hwm / 1024.0,
        "steps_served_per_tag": [min(served.values()), max(served.values())],
        "server_alive": alive,
        "log": log_path,
    }


def format_table(results):
    header = ("loader", "requests", "errors", "5xx", "p50 ms", "p99 ms", "max ms", "req/s",
              "load s", "peak RSS MiB", "sum VmHWM MiB", "steps/tag")
    rows = [header]
    for r in results:
        rows.append((
            r["loader"], str(r["requests"]), str(r["errors"]), str(r["errors_5xx"]),
            "%.1f" % r["p50_ms"], "%.1f" % r["p99_ms"], "%.1f" % r["max_ms"],
            "%.0f" % r["requests_per_s"], "%.1f" % r["load_seconds"],
            "%.0f" % r["peak_rss_mib"], "%.0f" % r["sum_vmhwm_mib"],
            "%d..%d" % tuple(r["steps_served_per_tag"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine():
    import tensorboard

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorboard": tensorboard.__version__,
    }


def run(steps=10_000, tags=50, clients=50, requests=5_000, duration=120.0,
        loaders=("false", "true"), logdir=None, jobs=None, load_timeout=600):
    """The whole benchmark; returns `{"config", "machine", "write_seconds", "results"}`."""
    workdir = tempfile.mkdtemp(prefix="tv-load-")
    try:
        if logdir is None:
            logdir = os.path.join(workdir, "logs")
        marker = os.path.join(logdir, ".complete-%dx%d" % (steps, tags))
        write_seconds = None
        if not os.path.exists(marker):
            shutil.rmtree(logdir, ignore_errors=True)
            os.makedirs(logdir)
            write_seconds = write_logdir(logdir, steps, tags, jobs)
            open(marker, "w").close()
        names = tag_names(tags)
        results = [
            bench_loader(logdir, lf, names, steps, clients, requests, duration, load_timeout, workdir)
            for lf in loaders
        ]
        for r in results:
            r.pop("log")
        return {
            "config": {"steps": steps, "tags": tags, "clients": clients, "requests": requests,
                       "duration_s": duration, "loaders": list(loaders)},
            "machine": machine(),
            "write_seconds": write_seconds,
            "results": results,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5_000, help="per loader")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds, per loader")
    parser.add_argument("--loaders", default="false,true", help="--load_fast values to run")
    parser.add_argument("--logdir", help="keep (and reuse) the written logdir here")
    parser.add_argument("--jobs", type=int, help="writer processes (default: CPU count)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report = run(args.steps, args.tags, args.clients, args.requests, args.duration,
                 tuple(args.loaders.split(",")), args.logdir, args.jobs)
    config = report["config"]
    print("%d steps x %d tags, %d clients, up to %d requests or %.0f s per loader; %s, %d CPUs"
          % (config["steps"], config["tags"], config["clients"], config["requests"],
             config["duration_s"], report["machine"]["platform"], report["machine"]["cpus"]))
    if report["write_seconds"] is not None:
        print("wrote the logdir in %.1f s" % report["write_seconds"])
    print(format_table(report["results"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    failed = any(r["errors"] or not r["server_alive"] for r in report["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
