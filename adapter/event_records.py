"""The event file's records: a fast checksum, and writes that never kill training.

TensorBoard frames every event as a TFRecord with masked CRC-32C checksums.
Without TensorFlow it computes them in pure Python (about 2 ms for one 64x64
heatmap event, holding the GIL on the writer thread while training runs);
`google-crc32c` gives the same checksum in microseconds.

TensorBoard's writer thread also dies on the first failed write (a full disk,
a vanished directory), prints a traceback and re-raises the error in whichever
thread logs next: in the middle of training. `GuardedRecordWriter` keeps that
error away from training: the first failure is reported once as a
`RuntimeWarning` naming the file, every later record of the file is dropped
(a partial record may be on disk, so nothing is appended after it) and
counted, and `close()` reports the count: a loss, never silent.

`install` puts one `GuardedRecordWriter` under a `torch.utils.tensorboard`
FileWriter; `torch_visualization.SummaryWriter` does so for every event file.
"""

from __future__ import annotations

import struct
import threading
import warnings

import google_crc32c
from tensorboard.summary.writer import record_writer

_MASK = 0xFFFFFFFF


def masked_crc32c(data):
    """The masked CRC-32C of TFRecord framing (same value as TensorBoard's)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & _MASK


def frame(data):
    """One TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    header = struct.pack("<Q", len(data))
    return b"".join(
        (header, struct.pack("<I", masked_crc32c(header)), data, struct.pack("<I", masked_crc32c(data)))
    )


class GuardedRecordWriter(record_writer.RecordWriter):
    """TensorBoard's `RecordWriter`, with the fast checksum and guarded writes.

    Writes the same bytes as TensorBoard's; see the module docstring for what
    happens on a failure.

    Args:
      file: The open event file (what TensorBoard's RecordWriter wraps).
      path: The file's name, for messages.
    """

    def __init__(self, file, path):
        super().__init__(file)
        self._path = path
        self._lock = threading.Lock()
        self._failure = None
        self.lost_records = 0

    def _fail(self, error):
        with self._lock:
            if self._failure is not None:
                return
            self._failure = error
        warnings.warn(
            "torch_visualization: writing events to %s failed (%s: %s); training "
            "continues, but further events of this writer are lost (counted at "
            "close())" % (self._path, type(error).__name__, error),
            RuntimeWarning,
            stacklevel=2,
        )

    def write(self, data):
        if self._failure is None:
            try:
                self._writer.write(frame(data))
                return
            except Exception as e:  # noqa: BLE001 -- any write failure, see the module doc
                self._fail(e)
        with self._lock:
            self.lost_records += 1

    def flush(self):
        if self._failure is None:
            try:
                self._writer.flush()
            except Exception as e:  # noqa: BLE001
                self._fail(e)

    def close(self):
        try:
            self._writer.close()
        except Exception as e:  # noqa: BLE001
            self._fail(e)
        if self._failure is not None:
            warnings.warn(
                "torch_visualization: %d event(s) were not written to %s after a "
                "write failure (%s: %s)"
                % (self.lost_records, self._path, type(self._failure).__name__, self._failure),
                RuntimeWarning,
                stacklevel=2,
            )


def install(event_writer):
    """Puts a `GuardedRecordWriter` under TensorBoard's `EventFileWriter`.

    Reaches into TensorBoard's writer (pinned to 2.21 in setup.py): the
    record writer is held by `_AsyncWriter._writer` and by its thread's
    `_record_writer`; both must point at the guard. Idempotent; when the
    layout is not found, nothing changes (tests fail if it ever is not).

    Returns:
      The installed `GuardedRecordWriter`, or None when the layout was not
      found.
    """
    async_writer = getattr(event_writer, "_async_writer", None)
    worker = getattr(async_writer, "_worker", None)
    records = getattr(async_writer, "_writer", None)
    if isinstance(records, GuardedRecordWriter):
        return records
    if worker is None or type(records) is not record_writer.RecordWriter:
        return None
    guarded = GuardedRecordWriter(records._writer, getattr(event_writer, "_file_name", "?"))
    with async_writer._lock:
        async_writer._writer = guarded
        worker._record_writer = guarded
    return guarded


def varint(value):
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0:
        raise ValueError("varint of a negative value: %d" % value)
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def event_bytes(walltime, step, summary):
    """A serialised `Event(wall_time, step, summary)` from serialised Summary
    bytes, byte-identical to protobuf's own serialisation (fields in number
    order: wall_time = 1, double; step = 2, varint; summary = 5, bytes).

    Building the Event from bytes spares parsing the Summary back into a
    proto and serialising it again (megabytes per step on a large model).
    """
    if step < 0:
        raise ValueError("event step must be >= 0, got %d" % step)
    # proto3 leaves zero scalars out; a set message field is always written.
    head = (b"\x09" + struct.pack("<d", walltime)) if walltime else b""
    head += (b"\x10" + varint(step)) if step else b""
    return head + b"\x2a" + varint(len(summary)) + summary


def write_event_bytes(file_writer, data):
    """Hands serialised Event bytes to a torch `FileWriter`'s writer thread.

    Returns False, writing nothing, when TensorBoard's `EventFileWriter` does
    not have the layout this relies on (pinned to 2.21 in setup.py); the
    caller then goes through `add_event`.
    """
    async_writer = getattr(getattr(file_writer, "event_writer", None), "_async_writer", None)
    write = getattr(async_writer, "write", None)
    if write is None:
        return False
    write(data)
    return True
