"""Listings of our tags (and loss scalars), reused briefly under RustBoard.

Every route starts with a listing: `/tags` returns it, `/data` and `/series`
take the tag's metadata and version (`max_step`, `max_wall_time`) from it,
`/findings` keys its cache on it. The Python loader lists in well under a
millisecond. RustBoard answers over gRPC, and its data server does not turn
off Nagle's algorithm on its sockets: a response of a few hundred bytes to
some tens of KiB (a listing of bars tags with their layer names, one bars
step) waits for the client's delayed ACK, ~40 ms on Linux, whatever the
work behind it (benchmarks/RESULTS.md, "Findings and RustBoard latency").
Tiny and large responses are not delayed.

So under RustBoard (a `GrpcDataProvider`) one listing of every run serves
all requests for `ttl` seconds (1 s; RustBoard itself reloads every 5 s by
default), and `/data` reads come from the plugin's decoded-steps cache keyed
on the versions in that listing: a slider drag or a page of cards costs one
gRPC listing per second instead of one per request. New data therefore
reaches the tab at most `ttl` later than TensorBoard loaded it. Under the
Python loader nothing is reused (`ttl` 0): a reload is visible at once.
"""

from __future__ import annotations

import threading
import time

from tensorboard.data import grpc_provider

from torch_visualization import metadata

# Seconds a RustBoard listing is reused.
RUSTBOARD_TTL_S = 1.0


def default_ttl(data_provider):
    """`RUSTBOARD_TTL_S` for RustBoard's gRPC provider, else 0."""
    return RUSTBOARD_TTL_S if isinstance(data_provider, grpc_provider.GrpcDataProvider) else 0.0


class ListingCache:
    """`list_tensors` / `list_scalars` of every run, reused for `ttl` seconds."""

    def __init__(self, data_provider, ttl):
        self._provider = data_provider
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries = {}  # (what, experiment_id) -> (monotonic time, listing)

    @property
    def ttl(self):
        """Seconds a listing is reused (0: never)."""
        return self._ttl

    def tensors(self, ctx, experiment_id):
        """`{run: {tag: TensorTimeSeries}}` of our plugin, every run."""
        return self._get("tensors", ctx, experiment_id, lambda: self._provider.list_tensors(
            ctx, experiment_id=experiment_id, plugin_name=metadata.PLUGIN_NAME
        ))

    def scalars(self, ctx, experiment_id, plugin_name):
        """`{run: {tag: ScalarTimeSeries}}` of `plugin_name`, every run."""
        return self._get(("scalars", plugin_name), ctx, experiment_id, lambda: self._provider.list_scalars(
            ctx, experiment_id=experiment_id, plugin_name=plugin_name
        ))

    def _get(self, what, ctx, experiment_id, fetch):
        del ctx  # one local TensorBoard serves one set of users
        key = (what, experiment_id)
        now = time.monotonic()
        if self._ttl > 0:
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self._ttl:
                return entry[1]
        listing = fetch()
        if self._ttl > 0:
            with self._lock:
                self._entries[key] = (now, listing)
        return listing
