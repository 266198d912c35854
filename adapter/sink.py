"""The event sink: the one owner of our event file, frozen labels and writes.

Everything the project writes (the writer's `add_*` chart methods and every
`watch()` logging step) goes through one `EventSink` per writer:

- **Frozen labels.** TensorBoard keeps the metadata of a tag's FIRST event
  only, and our labels (class, layer, token names) live there. `freeze`
  remembers each tag's kind and labels and raises `ValueError` when a later
  call changes them.
- **Metadata once.** Only a tag's first value in an event file carries its
  metadata; later values are its tag and tensor alone (a bars tag of a large
  model has kilobytes of labels).
- **Background writes.** Values are serialised, framed and written on one
  daemon thread behind a bounded queue (a full queue makes the caller wait
  rather than drop data), which it polls while jobs come in rather than
  being woken for each (`_POLL_SECS`), writing the records of all the jobs
  it found in one write(). A failed write never reaches training: the first
  failure is reported once (`RuntimeWarning` and the log), later records of
  that file are counted, and `close()` says how many were lost.

Our events go to the project's OWN event file in the run directory, beside
the one `torch.utils.tensorboard` writes the stock scalars to: both of
TensorBoard's loaders read every event file of a run (the plugin turns on
the Python loader's multi-file polling, see tb_plugin/loader.py). It is
written through public, stable pieces only: TensorBoard's protos and its
filesystem layer (`tensorboard.compat.tf.io.gfile` serves `s3://` and other
URLs; a local file is kept open), with records framed by `event_records.frame` (CRC-32C from
google-crc32c: TensorBoard's pure-Python CRC holds the GIL for milliseconds
per heatmap). The file is opened on the first write, so a process that never
writes (a distributed rank other than 0) leaves no file behind.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
import time
import warnings

import numpy as np
from tensorboard.compat import tf
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from torch_visualization import event_records

logger = logging.getLogger(__name__)

# How many submitted jobs may wait for the thread before the caller blocks
# (bounds host memory: a logging step's packet is tens of kB on an MLP, a
# few MB with a large model's heatmaps and attention maps).
MAX_PENDING = 16

# Waking the writer thread for every job costs the training thread a thread
# switch and a GIL hand-off (50-100 µs on a 2-core VM). While jobs come in,
# the thread instead looks at the queue every _POLL_SECS and runs all it
# finds; a submit wakes it only when the queue is two jobs short of full
# (before a full queue makes submit wait), flush() and close() at once.
# After _IDLE_SECS without a job it sleeps until the next submit wakes it.
# 100 ms (not 20): logging every 10 steps of ~1.5 ms, a 20 ms look found one
# job per wake, and the wakes alone cost ~1.5% of training (MLP ours@10
# 1.075x -> 1.059x). 250 ms and 16 jobs (not 100 ms and a wake at 4 of 8):
# ~0.6% more (MLP ours@10 1.068x -> 1.061x, interleaved in one process).
# TensorBoard reloads every few seconds.
_POLL_SECS = 0.25
_IDLE_SECS = 1.0

# Records a local event file holds back before one write() (the thread
# writes what it holds after each round of jobs, and at every flush).
_HELD_BYTES = 1 << 20

# Marks our event files apart from torch's (both contain "tfevents", which is
# what TensorBoard's loaders look for).
FILE_MARK = ".torch_visualization"

_file_numbers = itertools.count()

# numpy dtype -> TensorProto dtype of the tensors we store.
_DTYPES = {
    np.dtype(np.float16): types_pb2.DT_HALF,
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int64): types_pb2.DT_INT64,
}


class FastValues:
    """The values of ONE event, cheap to write (a `watch()` logging step's).

    One object for the whole event: no per-value object or closure is built
    on the writer thread, which runs beside training.

    Args:
      tags: The tags, in order.
      arrays: Per tag, its tensor content: a C-contiguous numpy array of a
        stored dtype (float16/32/64, int64); None for a value written whole
        every time (`first_value`, its metadata dropped once in the file).
      first_value: `first_value(i)` returns the complete `Summary.Value` of
        `tags[i]`, metadata included; called only where the file does not
        hold that tag's metadata yet, or where `arrays[i]` is None.
    """

    __slots__ = ("tags", "arrays", "first_value")

    def __init__(self, tags, arrays, first_value):
        self.tags = tags
        self.arrays = arrays
        self.first_value = first_value

    def __len__(self):
        return len(self.tags)


class _ValueEncoder:
    """Serialises `Summary.value` entries, caching each tag's prefix.

    After a tag's first event only its tensor bytes change, so each (tag,
    dtype, shape) gets its serialised prefix once from protobuf and every
    later value is two byte strings (protobuf wire format: Summary.value = 1,
    Value.tag = 1, Value.tensor = 8, TensorProto.tensor_content = 4; fields
    may come in any order).
    """

    def __init__(self):
        self.prefixes = {}  # (tag, dtype, shape) -> prefix

    def prefix(self, tag, array):
        """The entry of the C-contiguous `array` under `tag`, up to its
        tensor content (which follows it: the array's bytes)."""
        key = (tag, array.dtype, array.shape)
        prefix = self.prefixes.get(key)
        if prefix is None:
            prefix = self.prefixes[key] = value_prefix(tag, array.dtype, array.shape)
        return prefix


def value_prefix(tag, dtype, shape):
    """The bytes of a `Summary.value` entry (no metadata) of a `dtype` tensor
    of `shape` under `tag`, up to its tensor content, which follows it: the
    array's C-order bytes (a stored dtype, see `FastValues`)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    shape_proto = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]
    )
    head = tensor_pb2.TensorProto(dtype=_DTYPES[dtype], tensor_shape=shape_proto).SerializeToString()
    head += b"\x22" + event_records.varint(nbytes)
    tensor_size = len(head) + nbytes
    value_head = summary_pb2.Summary.Value(tag=tag).SerializeToString()
    value_head += b"\x42" + event_records.varint(tensor_size) + head
    value_size = len(value_head) + nbytes
    return b"\x0a" + event_records.varint(value_size) + value_head


class RenderedEvent:
    """ONE event's `Summary` bytes, rendered whole (a `watch()` logging
    step's, see watch/render.py): written as they are where the file holds
    every tag's metadata already.

    Args:
      tags: The tags the bytes hold.
      summary: The serialised `Summary.value` entries, no metadata.
      values: Called where a tag's metadata is not in the file yet: returns
        the same event as `FastValues` (or a list of values).
    """

    __slots__ = ("tags", "summary", "values")

    def __init__(self, tags, summary, values):
        self.tags = tags
        self.summary = summary
        self.values = values


def _entry(value):
    """A complete `Summary.Value` as one `Summary.value` entry."""
    data = value.SerializeToString()
    return b"\x0a" + event_records.varint(len(data)) + data


class _EventFile:
    """One event file of ours, written record by record (worker thread only)."""

    def __init__(self, log_dir, suffix):
        tf.io.gfile.makedirs(log_dir)
        # Loaders read a run's files in name order: the zero-padded number
        # keeps this process's files in the order they were opened.
        name = "events.out.tfevents.%010d.%s.%d.%06d%s%s" % (
            time.time(), socket.gethostname(), os.getpid(), next(_file_numbers), FILE_MARK, suffix,
        )
        self.path = os.path.join(log_dir, name)
        if "://" in log_dir:  # s3:// and the like: TensorBoard's filesystem layer
            self._file = tf.io.gfile.GFile(self.path, "wb")
        else:
            # A local file stays open, unbuffered: the records of a round of
            # jobs are one write() (readers see them at once, as with GFile,
            # which opens, appends and closes the file per write: ~70 µs).
            self._file = open(self.path, "wb", buffering=0)
        self.failure = None
        self.lost = 0
        self._held, self._held_sizes, self._held_bytes = [], [], 0
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        self.flush()

    def _fail(self, error):
        if self.failure is None:
            self.failure = error
            logger.error("torch_visualization: writing events to %s failed: %s", self.path, error)
            warnings.warn(
                "torch_visualization: writing events to %s failed (%s: %s); training "
                "continues, but further events of this writer are lost (counted at "
                "close())" % (self.path, type(error).__name__, error),
                RuntimeWarning,
                stacklevel=2,
            )

    def write(self, data):
        """Writes one record holding `data` (a serialised Event)."""
        self.write_record((event_records.frame(data),))

    def write_record(self, pieces):
        """Writes one framed record, given as the bytes pieces it joins into
        (`event_records.event_record`). It is held back (up to `_HELD_BYTES`)
        until `write_held`: one write() per round of jobs, as a system call
        also slows the Python code after it."""
        size = sum(len(piece) for piece in pieces)
        self._held += pieces
        self._held_sizes.append(size)
        self._held_bytes += size
        if self._held_bytes >= _HELD_BYTES:
            self.write_held()

    def write_held(self):
        """Writes the records held back, in one write()."""
        held, sizes = self._held, self._held_sizes
        if not sizes:
            return
        self._held, self._held_sizes, self._held_bytes = [], [], 0
        data = b"".join(held)
        done = 0
        # After a failure a partial record may be on disk: nothing is
        # appended after it (a reader would stop there anyway).
        if self.failure is None:
            try:
                # A local write() may write less than asked (a full disk):
                # the rest is tried again, and so fails with the reason.
                while done < len(data):
                    written = self._file.write(memoryview(data)[done:] if done else data)
                    done = len(data) if written is None else done + written  # GFile: None
                return
            except Exception as e:  # noqa: BLE001 -- any write failure, see the module doc
                self._fail(e)
        for size in sizes:  # the records not written whole are lost
            done -= size
            if done < 0:
                self.lost += 1

    def flush(self):
        self.write_held()
        if self.failure is None:
            try:
                self._file.flush()
            except Exception as e:  # noqa: BLE001
                self._fail(e)

    def close(self):
        self.write_held()
        try:
            self._file.close()
        except Exception as e:  # noqa: BLE001
            self._fail(e)
        return self.lost


class EventSink:
    """Frozen labels, metadata once, background writes into our event file.

    Args:
      log_dir: The run directory (local path or any URL TensorBoard's
        filesystem layer serves, e.g. `s3://bucket/run`).
      filename_suffix: Appended to our event file's name.
      flush_secs: Longest time between a write and its flush to the file.
      max_pending: Jobs that may wait before `submit` blocks.
    """

    _STOP = object()

    def __init__(self, log_dir, *, filename_suffix="", flush_secs=120, max_pending=MAX_PENDING):
        self.log_dir = log_dir
        self._suffix = filename_suffix or ""
        self._flush_secs = flush_secs
        self._frozen = {}
        self._frozen_lock = threading.Lock()
        # The queue: jobs, flush callbacks and _STOP; see _POLL_SECS.
        self._jobs = collections.deque()
        self._max_pending = max_pending if max_pending > 0 else float("inf")
        self._wake_at = max(1, self._max_pending - 2)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer thread waits on it
        self._room = threading.Condition(self._lock)  # a submit waits on it (queue full)
        self._idle = True  # the writer thread sleeps until woken
        self._thread = None
        self._thread_lock = threading.Lock()
        # Worker-thread state: the open file, tags whose metadata it holds.
        self._file = None
        self._seen = set()
        self._encoder = _ValueEncoder()
        self._last_flush = time.monotonic()
        self._job_failures = 0

    # -- frozen labels ---------------------------------------------------

    def freeze(self, tag, kind, labels=(), stat_names=()):
        """Claims `tag` for a chart kind and labels, or checks an earlier claim.

        Raises:
          ValueError: the tag was first logged as another kind or with other
            labels / stat names (TensorBoard keeps only the first event's
            metadata, so they are fixed per tag).
        """
        key = (kind, tuple(labels), tuple(stat_names))
        with self._frozen_lock:
            first = self._frozen.setdefault(tag, key)
        if first == key:
            return
        if first[0] != kind:
            raise ValueError(
                "%r was first logged as a %s; it cannot be logged as a %s "
                "(use another tag)" % (tag, first[0], kind)
            )
        what = "labels" if first[1] != key[1] else "stat_names"
        old, new = (first[1], key[1]) if what == "labels" else (first[2], key[2])
        raise ValueError(
            "%r: %s changed from %s to %s; TensorBoard keeps only the first "
            "event's metadata, so %s are fixed per tag (use a new tag)"
            % (tag, what, list(old)[:8], list(new)[:8], what)
        )

    # -- writing -----------------------------------------------------------

    def add_summary(self, summary, step=None, walltime=None):
        """Queues a `Summary` of ours (built by `torch_visualization.summary`).

        Its values' metadata is written only where the tag is new to the file.
        """
        values = list(summary.value)
        self.submit(lambda: values, step, walltime)

    def submit(self, job, step=None, walltime=None):
        """Queues `job` for the writer thread: it runs there and returns the
        values of ONE event (a list of `Summary.Value` protos, one
        `FastValues`, or one `RenderedEvent`).

        A job that raises is reported once (later failures are counted in the
        log) and never reaches the caller.
        """
        walltime = time.time() if walltime is None else float(walltime)
        step = 0 if step is None else int(step)
        if step < 0:
            raise ValueError("global_step must be >= 0, got %d" % step)
        self._ensure_thread()
        self._put((job, step, walltime))

    def flush(self):
        """Waits until everything queued is written, then flushes the file."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            done = threading.Event()

            def flush_now():
                self._flush_now()
                done.set()

            self._put(flush_now, wake=True)
            while not done.wait(0.5):
                if not thread.is_alive():  # stopped by a close() elsewhere
                    return

    def close(self):
        """Writes everything queued, closes the file and stops the thread.

        Reports (`RuntimeWarning`) how many events were lost to write
        failures. Writing again afterwards opens a new event file (with the
        metadata again), as `torch.utils.tensorboard` does after `close()`.
        """
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is None or not thread.is_alive():
            return
        self._put(self._STOP, wake=True)
        thread.join()

    def _put(self, item, wake=False):
        """Queues `item`, waking the writer thread only where needed (see
        _POLL_SECS); waits while the queue is full."""
        with self._lock:
            while len(self._jobs) >= self._max_pending:
                self._wake.notify()
                self._room.wait()
            self._jobs.append(item)
            if wake or self._idle or len(self._jobs) >= self._wake_at:
                self._wake.notify()

    # -- the writer thread -------------------------------------------------

    def _ensure_thread(self):
        if self._thread is not None:
            return
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="torch-visualization-writer", daemon=True
                )
                self._thread.start()

    def _run(self):
        last_job = time.monotonic()
        while True:
            with self._lock:
                if not self._jobs:
                    now = time.monotonic()
                    self._idle = now - last_job >= _IDLE_SECS
                    due = self._last_flush + self._flush_secs - now
                    self._wake.wait(max(0.0, due) if self._idle else min(_POLL_SECS, max(0.0, due)))
                    self._idle = False
                items = list(self._jobs)
                self._jobs.clear()
                self._room.notify_all()
            if items:
                last_job = time.monotonic()
                if self._work(items):
                    return
            if time.monotonic() - self._last_flush >= self._flush_secs:
                self._flush_now()

    def _work(self, items):
        """Runs a round of queued items, then writes their records; True
        after _STOP (items queued after it wait for the next thread)."""
        try:
            for index, item in enumerate(items):
                if item is self._STOP:
                    with self._lock:
                        self._jobs.extendleft(reversed(items[index + 1:]))
                    self._close_file()
                    return True
                if callable(item):
                    item()
                else:
                    self._write_job(*item)
        finally:
            if self._file is not None:
                self._file.write_held()
        return False

    def _write_job(self, job, step, walltime):
        values = self._run_job(job)
        if not values:
            return
        if self._file is None:
            try:
                self._file = _EventFile(self.log_dir, self._suffix)
            except Exception as e:  # noqa: BLE001 -- an unwritable log_dir, a full disk
                self._job_failures += 1
                if self._job_failures == 1:
                    warnings.warn(
                        "torch_visualization: cannot open an event file in %r (%s: %s); "
                        "training goes on without our charts" % (self.log_dir, type(e).__name__, e),
                        RuntimeWarning,
                    )
                return
            self._seen = set()
        if isinstance(values, RenderedEvent):
            if self._seen.issuperset(values.tags):
                self._file.write_record(event_records.event_record(walltime, step, (values.summary,)))
                return
            values = self._run_job(values.values)  # the first event of a tag here
            if not values:
                return
        if isinstance(values, FastValues):
            entries, tags = self._fast_entries(values), values.tags
        else:
            entries, tags = [self._whole_entry(value) for value in values], [value.tag for value in values]
        self._file.write_record(event_records.event_record(walltime, step, entries))
        # A failed first event must carry the metadata again next time (a
        # record held back fails with the file: nothing more is written).
        if self._file.failure is None:
            self._seen.update(tags)

    def _run_job(self, job):
        """`job()`, or None after reporting its failure (once; later ones
        are counted in the log)."""
        try:
            return job()
        except Exception:  # noqa: BLE001 -- training must never see it
            self._job_failures += 1
            if self._job_failures == 1:
                logger.exception("torch_visualization: writing a logging step failed")
                warnings.warn(
                    "torch_visualization: writing a logging step failed (traceback "
                    "logged to %r); training goes on, later failures are only logged"
                    % logger.name,
                    RuntimeWarning,
                )
            else:
                logger.warning("torch_visualization: writing a logging step failed again "
                               "(%d times)", self._job_failures)
            return None

    def _fast_entries(self, values):
        """The entries of a `FastValues`: after a tag's first event, a kept
        prefix and the array's bytes (bytes.join reads the array itself)."""
        entries, seen, prefixes = [], self._seen, self._encoder.prefixes
        for index, (tag, array) in enumerate(zip(values.tags, values.arrays)):
            if array is not None and tag in seen:
                prefix = prefixes.get((tag, array.dtype, array.shape))
                entries += (prefix or self._encoder.prefix(tag, array), array)
            else:
                entries.append(self._whole_entry(values.first_value(index)))
        return entries

    def _whole_entry(self, value):
        """A complete `Summary.Value`'s entry, its metadata dropped where the
        file already holds the tag's."""
        if value.tag in self._seen and value.HasField("metadata"):
            stripped = summary_pb2.Summary.Value()
            stripped.CopyFrom(value)  # whatever value field it holds
            stripped.ClearField("metadata")
            value = stripped
        return _entry(value)

    def _flush_now(self):
        self._last_flush = time.monotonic()
        if self._file is not None:
            self._file.flush()

    def _close_file(self):
        file, self._file = self._file, None
        if file is None:
            return
        lost = file.close()
        if file.failure is not None:
            warnings.warn(
                "torch_visualization: %d event(s) were not written to %s after a "
                "write failure (%s: %s)"
                % (lost, file.path, type(file.failure).__name__, file.failure),
                RuntimeWarning,
            )
