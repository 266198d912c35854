"""Our event file bytes: TensorBoard's framing with a fast checksum, Event encoding, the sink."""

import io
import random

import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as stock_masked
from tensorboard.summary.writer import record_writer

from torch_visualization import event_records, sink


@pytest.mark.parametrize("size", [0, 1, 3, 8, 63, 64, 65, 4096, 65537, 200001])
def test_checksum_equals_tensorboards(size):
    data = random.Random(size).randbytes(size)
    assert event_records.masked_crc32c(data) == stock_masked(data)


class _Buffer(io.BytesIO):
    def close(self):  # keep the bytes readable after close()
        pass


def test_records_are_byte_identical_to_tensorboards():
    stock = _Buffer()
    reference = record_writer.RecordWriter(stock)
    ours = b""
    for size in (0, 10, 5000):
        data = random.Random(size).randbytes(size)
        ours += event_records.frame(data)
        reference.write(data)
    assert ours == stock.getvalue()


@pytest.mark.parametrize("walltime", [0.0, 1.5, 1764240000.123456])
@pytest.mark.parametrize("step", [0, 1, 127, 128, 300, 2**40])
def test_event_bytes_equal_protobufs_serialisation(walltime, step):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summaries = [
        summary_pb2.Summary(),
        summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="a/b", simple_value=2.5)]),
        summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="x" * 300, simple_value=1.0)] * 3),
    ]
    for summary in summaries:
        data = summary.SerializeToString()
        expected = event_pb2.Event(wall_time=walltime, step=step, summary=summary).SerializeToString()
        assert event_records.event_bytes(walltime, step, data) == expected


def test_event_bytes_reject_negative_steps():
    with pytest.raises(ValueError, match="step must be >= 0"):
        event_records.event_bytes(1.0, -1, b"")
    with pytest.raises(ValueError, match="negative"):
        event_records.varint(-5)


def test_sink_events_read_back_through_tensorboard(tmp_path):
    """Jobs run on the sink's thread; each becomes one event of our file."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.proto import summary_pb2

    events_sink = sink.EventSink(str(tmp_path / "run"))
    value = summary_pb2.Summary.Value(tag="loss", simple_value=0.25)
    events_sink.submit(lambda: [value], 7, 12.5)
    events_sink.close()
    (path,) = (tmp_path / "run").iterdir()
    assert sink.FILE_MARK in path.name and "tfevents" in path.name
    events = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    (scalar,) = events.Scalars("loss")
    assert (scalar.step, scalar.wall_time, scalar.value) == (7, 12.5, 0.25)


def test_a_sink_that_never_writes_leaves_no_file(tmp_path):
    """A distributed rank other than 0 owns a writer but writes nothing."""
    events_sink = sink.EventSink(str(tmp_path / "run"))
    events_sink.flush()
    events_sink.close()
    assert not (tmp_path / "run").exists()


def test_a_failing_job_is_reported_once_and_later_jobs_still_write(tmp_path):
    from tensorboard.compat.proto import summary_pb2

    events_sink = sink.EventSink(str(tmp_path / "run"))

    def broken():
        raise RuntimeError("injected")

    with pytest.warns(RuntimeWarning, match="writing a logging step failed"):
        events_sink.submit(broken, 0)
        events_sink.submit(broken, 1)
        events_sink.submit(lambda: [summary_pb2.Summary.Value(tag="x", simple_value=1.0)], 2)
        events_sink.flush()
    events_sink.close()
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [s.step for s in events.Scalars("x")] == [2]


def test_sink_rejects_negative_steps(tmp_path):
    with pytest.raises(ValueError, match="global_step must be >= 0"):
        sink.EventSink(str(tmp_path)).submit(lambda: [], -1)
