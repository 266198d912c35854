"""A small LRU cache of decoded steps, bounded by bytes.

The data providers have no "read one step" call: every `/data` request would
read and decode all held steps of its tag (1,000 by default) to return one.
Requests for the same tag (slider moves, several viewers) reuse the decoded
steps while the tag is unchanged; a tag changes exactly when its newest
record changes (TensorBoard always keeps the newest step), so the key includes
`max_step` and `max_wall_time` from the cheap listing call.
"""

from __future__ import annotations

import collections
import threading


class StepCache:
    """Thread-safe LRU of `key -> (version, value, nbytes)`."""

    def __init__(self, max_bytes):
        self._max_bytes = max_bytes
        self._entries = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, version):
        """The value stored for `key` at `version`, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key, version, value, nbytes):
        """Stores `value`; evicts least recently used entries past the bound.

        A value larger than the whole bound is not stored.
        """
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            if nbytes > self._max_bytes:
                return
            self._entries[key] = (version, value, nbytes)
            self._bytes += nbytes
            while self._bytes > self._max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    @property
    def nbytes(self):
        """Bytes of values currently held."""
        with self._lock:
            return self._bytes
