"""The fast decoding and writing path gives the same numbers and bytes.

decode.py turns a packet into values through a cached `Layout` (index
arrays per packet layout) and the sink writes `FastValues` with held-back
records and a polling writer thread. These tests hold them to a plain,
loop-by-loop restatement of what the values mean (`_reference_values`),
bit for bit, over packets of real watched training: several optimizers,
one of them skipping steps (layouts that change), functional ReLUs, a
module called twice and one that sometimes does not run, attention and
tokens, a big pie, counts combined over ranks, NaN and infinities.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import load_benchmark

import torch_visualization
from torch_visualization import SummaryWriter, reduce, sink
from torch_visualization.watch import decode
from torch_visualization.watch import functional
from torch_visualization.watch import plan as plans
from torch_visualization.watch import tokens


# -- the reference: every number by its definition, one loop at a time ------------


def _sum_in_order(values):
    """NaN-free sum added left to right (not pairwise, not compensated as
    Python 3.12's sum() is): how the pie's "other" slice is defined."""
    total = 0.0
    for value in values:
        if value == value:
            total += float(value)
    return total


def _reference_values(packet, array, plan, state):
    """`[(tag, kind, values, extra)]` as decode.step_values must give them."""
    out = []
    count = len(plan.grad_names)
    if packet.gradient_groups:
        norm, mean_abs, max_abs, nonfinite = np.zeros((4, count))
        for suffix, positions in packet.gradient_groups:
            stats = packet.segment("grads." + suffix, array).astype(np.float64)
            rows = {name: stats[i * len(positions):(i + 1) * len(positions)]
                    for i, name in enumerate(reduce.STAT_ROWS)}
            norm[positions] = np.sqrt(rows["sq_sum"])
            mean_abs[positions] = rows["abs_sum"] / plan.grad_numels[positions]
            max_abs[positions] = rows["abs_max"]
            nonfinite[positions] = packet.segment("nonfinite." + suffix, array)
        labels = {"labels": plan.grad_names}
        out += [(plans.TAG_GRAD_NORM, "bars", norm, labels),
                (plans.TAG_GRAD_MEAN_ABS, "bars", mean_abs, labels),
                (plans.TAG_GRAD_MAX_ABS, "bars", max_abs, labels),
                (plans.TAG_GRAD_NONFINITE, "bars", nonfinite, labels)]
    if packet.update_groups:
        ratio = np.full(count, np.nan)
        for suffix, positions in packet.update_groups:
            norms = np.sqrt(packet.segment("updates." + suffix, array).astype(np.float64))
            before, delta = norms[:len(positions)], norms[len(positions):]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio[positions] = np.where(before == 0, np.where(delta == 0, 0.0, 1.0),
                                            delta / before)
        out.append((plans.TAG_UPDATE_RATIO, "bars", ratio[plan.update_positions],
                    {"labels": plan.update_names}))
    if packet.activation_entries:
        if "zero_fraction" not in state:
            state["zero_fraction"] = functional.zero_fraction_layout(plan.activation_names,
                                                                     plan.functional)
        labels, slots = state["zero_fraction"]
        nonzero, total = np.zeros((2, len(labels)))
        for (index, numel), value in zip(packet.activation_entries,
                                         packet.segment("activations", array)):
            if index < len(slots):
                nonzero[slots[index]] += value
                total[slots[index]] += numel
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(total > 0, 1.0 - nonzero / total, np.nan)
        out.append((plans.TAG_ZERO_FRACTION, "bars", fraction, {"labels": labels}))
    if packet.module_entries:
        stats = packet.segment("module_stats", array).astype(np.float64)
        if packet.module_numels is None:
            stats = stats.reshape(4, -1)
        else:
            stats = np.vstack([stats.reshape(3, -1), np.asarray(packet.module_numels, np.float64)[None]])
        squares, numels = np.zeros((2, len(plan.stat_names)))
        top = np.full(len(plan.stat_names), np.nan)
        for index, square, low, high, numel in zip(packet.module_entries, *stats):
            if not numel:
                continue
            biggest = np.maximum(-low, high)
            top[index] = biggest if numels[index] == 0 else np.maximum(top[index], biggest)
            squares[index] += square
            numels[index] += numel
        with np.errstate(divide="ignore", invalid="ignore"):
            rms = np.where(numels > 0, np.sqrt(squares / numels), np.nan)
        labels = {"labels": plan.stat_names}
        out += [(plans.TAG_RMS, "bars", rms, labels), (plans.TAG_MAX_ABS, "bars", top, labels)]
    if packet.attention_entries:
        entropies = {}
        for index, pooled_shape, original in packet.attention_entries:
            maps = packet.segment("attention.%d" % index, array).reshape(pooled_shape)
            reduction = "none" if tuple(pooled_shape) == tuple(original) else "mean_pool"
            out.append((plans.TAG_ATTENTION + plan.attention_names[index], "attention", maps,
                        {"original_shape": original, "reduction": reduction}))
            entropies[index] = packet.segment("entropy.%d" % index, array)
        heads = state.setdefault("heads", {i: len(v) for i, v in sorted(entropies.items())})
        values = []
        for index, count in heads.items():
            got = entropies.get(index)
            values += list(got) if got is not None and len(got) == count else [np.nan] * count
        labels = ["%s/head%d" % (plan.attention_names[i], h) for i, n in heads.items() for h in range(n)]
        out.append((plans.TAG_ENTROPY, "bars", np.array(values, np.float64), {"labels": labels}))
    out += tokens.token_values(packet, array, plan.tokens)
    if packet.class_samples:
        shares = packet.segment("classes", array).astype(np.float64) / packet.class_samples
        if len(shares) <= plans.PIE_CLASSES:
            out.append((plans.TAG_CLASSES, "pie", shares, {"class_names": plan.class_names}))
        else:
            if "pie" not in state:
                top = np.argsort(-np.nan_to_num(shares, nan=-1.0), kind="stable")
                state["pie"] = sorted(int(i) for i in top[:plans.PIE_CLASSES - 1])
            names = plan.class_names or [str(i) for i in range(len(shares))]
            kept = shares[state["pie"]]
            rest = max(0.0, _sum_in_order(shares) - _sum_in_order(kept))
            out.append((plans.TAG_CLASSES, "pie", np.append(kept, rest),
                        {"class_names": [names[i] for i in state["pie"]] + ["other"]}))
    sequence = packet.segment("sequence", array)
    if sequence is not None and sequence[2] > 0:
        entropy_sum, top, positions = sequence.astype(np.float64)
        out.append((plans.TAG_SEQUENCE, "bars", np.array([entropy_sum / positions, top]),
                    {"labels": plans.SEQUENCE_STATS}))
    grids = packet.segment("heatmaps", array)
    if grids is not None:
        grids = grids * packet.heatmap_scales
        offset = 0
        for tag, (rows, cols), extra in packet.heatmaps:
            out.append((tag, "heatmap", grids[offset:offset + rows * cols].reshape(rows, cols), extra))
            offset += rows * cols
    return out


# -- packets of real training ------------------------------------------------------


class _Branchy(nn.Module):
    """Functional ReLUs, a module called twice, one running on odd steps."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.extra = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.head, self.act, self.odd = nn.Linear(8, 40), nn.ReLU(), False

    def forward(self, x):
        h = self.act(self.fc2(self.act(self.fc2(F.relu(self.fc1(x))))))
        if self.odd:
            h = h + F.relu(self.extra(h))
        return self.head(h)  # 40 classes: a pie with an "other" slice


class _Dead(nn.Module):
    """Six classes (a pie the renderer writes), a layer whose output is all
    zeros called twice (max |x| of -0.0 against 0.0), a functional ReLU and
    a module running on odd steps."""

    def __init__(self):
        super().__init__()
        self.fc1, self.zero, self.extra = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.head, self.act, self.odd = nn.Linear(8, 6), nn.ReLU(), False
        nn.init.zeros_(self.zero.weight)
        nn.init.zeros_(self.zero.bias)

    def forward(self, x):
        h = self.act(F.relu(self.fc1(x)) + self.zero(self.zero(x.new_zeros(len(x), 8))))
        if self.odd:
            h = h + self.act(self.extra(h))
        return self.head(h)


def _causal_self_attention(width, heads):
    """The benchmark GPT's SDPA self-attention."""
    return load_benchmark("overhead")._CausalSelfAttention(width, heads)


class _Tiny(nn.Module):
    def __init__(self, vocab=11):
        super().__init__()
        self.embed, self.attn = nn.Embedding(vocab, 8), _causal_self_attention(8, 2)
        self.head = nn.Linear(8, vocab)

    def forward(self, ids):
        return self.head(self.attn(self.embed(ids)))


def _packets(tmp_path, monkeypatch, name):
    """`(plan, packets)` of 8 logging steps of one scenario."""
    torch.manual_seed(0)
    seen = []
    real = decode.event_values

    def record(packet, plan, memory):
        packet.wait()
        seen.append((plan, dataclasses.replace(packet, buffer=packet.host_array().copy())))
        return real(packet, plan, memory)

    monkeypatch.setattr(decode, "event_values", record)
    writer = SummaryWriter(str(tmp_path / name))
    if name == "branchy":
        model = _Branchy()
        first, second = torch.optim.SGD(model.parameters(), lr=0.1), None
        inputs, labels = torch.randn(5, 6), torch.randint(0, 40, (5,))
        writer.watch(model, first, log_every=1, outputs="classes", modules=["extra", "fc2", "act"])
    elif name == "dead":
        model = _Dead()
        first, second = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None
        inputs, labels = torch.randn(5, 6), torch.randint(0, 6, (5,))
        writer.watch(model, first, log_every=1, outputs="classes", modules=["zero", "extra", "act", "head"])
    elif name == "cnn":
        model = load_benchmark("overhead").cnn()
        first, second = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), None
        inputs, labels = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
        writer.watch(model, first, log_every=1, outputs="classes")
    elif name == "two_optimizers":
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        params = list(model.parameters())
        first = torch.optim.SGD(params[:2], lr=0.1, momentum=0.9)
        second = torch.optim.Adam(params[2:], lr=0.01)
        inputs, labels = torch.randn(5, 6), torch.randint(0, 3, (5,))
        writer.watch(model, [first, second], log_every=1, class_names=["a", "b", "c"])
    else:  # attention (with token text) or lm (40 tokens: a pie with an "other" slice)
        vocab = 11 if name == "attention" else 40
        model = _Tiny(vocab)
        first, second = torch.optim.SGD(model.parameters(), lr=0.1), None
        ids = torch.randint(0, vocab, (3, 7))
        inputs, labels = ids[:, :-1], ids[:, 1:]
        writer.watch(model, first, log_every=1, outputs="classes",
                     tokens=["t%d" % i for i in range(11)] if name == "attention" else None)
    for step in range(8):
        model.odd = step % 2 == 1
        first.zero_grad()
        if second is not None:
            second.zero_grad()
        out = model(inputs)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1)).backward()
        first.step()
        if second is not None and step % 3 != 1:  # some logging steps without it
            second.step()
    writer.close()
    assert len(seen) == 8
    return seen[0][0], [packet for _, packet in seen]


def _combined_over_ranks(packet):
    """The packet as rank 0 sees it under DDP: module counts as a fourth
    row of `module_stats`, some modules with none."""
    if packet.module_numels is None or "module_stats" not in packet.segments:
        return packet
    array = packet.host_array()
    counts = np.asarray(packet.module_numels, np.float32)
    counts[::2] = 0 if packet.step % 2 else counts[::2]
    block = np.concatenate([packet.segment("module_stats", array), counts])
    segments = dict(packet.segments, module_stats=(array.size, block.size))
    return dataclasses.replace(packet, buffer=np.concatenate([array, block]),
                               segments=segments, module_numels=None)


def _with_nonfinite(packet):
    """NaN, +inf and 0 written over some numbers of each segment (counts excepted)."""
    array = packet.host_array().copy()
    for k, (name, (offset, size)) in enumerate(sorted(packet.segments.items())):
        if size and (packet.step + k) % 3 == 0 and not name.startswith("nonfinite."):
            array[offset + k % size] = (np.nan, np.inf, 0.0)[(packet.step + k) % 9 // 3]
    return dataclasses.replace(packet, buffer=array)


def _assert_same_values(got, want):
    assert [(tag, kind) for tag, kind, _, _ in got] == [(tag, kind) for tag, kind, _, _ in want]
    for (tag, kind, values, extra), (_, _, expected, expected_extra) in zip(got, want):
        assert extra == expected_extra, tag
        if kind == "tokens":
            assert values == expected
        else:
            assert values.dtype == np.asarray(expected).dtype, tag
            assert values.shape == np.shape(expected), tag
            assert values.tobytes() == np.ascontiguousarray(expected).tobytes(), tag


@pytest.mark.parametrize("name", ["branchy", "two_optimizers", "attention"])
def test_layouts_decode_as_the_definitions_say(tmp_path, monkeypatch, name):
    plan, packets = _packets(tmp_path, monkeypatch, name)
    for variant in (lambda p: p, _combined_over_ranks, _with_nonfinite,
                    lambda p: _with_nonfinite(_combined_over_ranks(p))):
        memory, state, tags = decode.Memory(), {}, set()
        for packet in map(variant, packets):
            array = packet.host_array()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NaN token ids: warned once per TokenText
                got = decode.step_values(packet, array, plan, memory)
                want = _reference_values(packet, array, plan, state)
            _assert_same_values(got, want)
            tags.update(tag for tag, _, _, _ in got)
        # Each layout is worked out once: two where a module runs on odd
        # steps only, or the second optimizer skips steps.
        assert len(memory.layouts) == (1 if name == "attention" else 2)
    expected = {"branchy": [plans.TAG_CLASSES, plans.TAG_RMS, plans.TAG_ZERO_FRACTION],
                "two_optimizers": [plans.TAG_UPDATE_RATIO, plans.TAG_CLASSES],
                "attention": [plans.TAG_ENTROPY, tokens.TAG_TOKENS, plans.TAG_CLASSES]}[name]
    assert set(expected) <= tags


# -- the sink ----------------------------------------------------------------------


def _records(path):
    """The payloads of a TFRecord file."""
    data, out, offset = open(path, "rb").read(), [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset:offset + 8], "little")
        out.append(data[offset + 12:offset + 12 + size])
        offset += 12 + size + 4
    return out


def _event_file(sink_):
    return sink_._file.path


def test_fast_values_write_the_bytes_of_their_complete_values(tmp_path):
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

    from torch_visualization import summary

    arrays = [np.arange(6, dtype=np.float64), np.arange(12, dtype=np.float16).reshape(3, 4)]
    tags = ["bars/a", "grid/b"]
    dtypes = {np.dtype(np.float64): types_pb2.DT_DOUBLE, np.dtype(np.float16): types_pb2.DT_HALF}

    def first(index):
        """The complete value: metadata, and the array as its tensor."""
        value = summary.bars_summary(tags[index], np.arange(6.0),
                                     labels=[str(i) for i in range(6)]).value[0]
        array = arrays[index]
        value.tensor.CopyFrom(tensor_pb2.TensorProto(
            dtype=dtypes[array.dtype], tensor_content=array.tobytes(),
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape])))
        return value

    files = []
    for fast in (True, False):
        events = sink.EventSink(str(tmp_path / str(fast)))
        for step in range(3):
            if fast:
                job = lambda: sink.FastValues(tags, arrays, first)  # noqa: E731
            else:  # the sink drops the metadata of a tag the file holds
                job = lambda: [first(i) for i in range(len(tags))]  # noqa: E731
            events.submit(job, step, 1.5)
        events.flush()
        files.append(_records(_event_file(events))[1:])  # the file_version record differs
        events.close()
    assert files[0] == files[1] and len(files[0]) == 3
    assert len(files[0][1]) < len(files[0][0])  # metadata in the first event only


def test_writer_thread_is_woken_by_flush_not_by_each_submit(tmp_path, monkeypatch):
    monkeypatch.setattr(sink, "_IDLE_SECS", 60.0)  # stays polling however slow the machine
    events = sink.EventSink(str(tmp_path / "run"))
    pie = lambda: torch_visualization.summary.pie_summary("p", [1.0, 2.0]).value  # noqa: E731
    events.submit(pie, 0)
    events.flush()
    wakes = []
    notify = events._wake.notify
    monkeypatch.setattr(events._wake, "notify", lambda *a: (wakes.append(1), notify(*a)))
    for step in range(1, 1 + events._wake_at - 1):
        events.submit(pie, step)
    assert wakes == []  # the thread finds them at its next look
    events.flush()  # wakes it, and returns once all is written
    assert len(wakes) == 1
    assert len(_records(_event_file(events))) == 1 + events._wake_at
    events.close()


def test_full_queue_makes_submit_wait_then_all_is_written(tmp_path):
    events = sink.EventSink(str(tmp_path / "run"), max_pending=2)
    gate, started = threading.Event(), threading.Event()

    def slow():
        started.set()
        gate.wait()
        return torch_visualization.summary.pie_summary("p", [1.0, 2.0]).value

    events.submit(slow, 0)
    started.wait(10)
    done = []
    producer = threading.Thread(target=lambda: [events.submit(slow, s) for s in range(1, 5)]
                                + [done.append(True)])
    producer.start()
    time.sleep(0.2)
    assert not done  # 2 waiting, the third submit blocks
    gate.set()
    producer.join(10)
    assert done
    events.flush()
    assert len(_records(_event_file(events))) == 1 + 5
    events.close()


def test_held_records_reach_the_file_without_flush(tmp_path):
    """Records are held back for one write per round of jobs; each round
    ends with that write, so a reader sees them without flush()."""
    events = sink.EventSink(str(tmp_path / "run"))
    for step in range(3):
        events.submit(lambda: torch_visualization.summary.pie_summary("p", [1.0, 2.0]).value, step)
    deadline = time.monotonic() + 10
    while events._file is None or len(_records(_event_file(events))) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    events.close()


# -- the renderer: a whole event in one C call (render.py) --------------------------


def _general_bytes(packet, plan, memory):
    """The Summary bytes the general path writes once the file holds every
    tag's metadata: each value's kept prefix, then its array's bytes."""
    values = decode.general_values(packet, packet.host_array(), plan, memory)
    encoder = sink._ValueEncoder()
    return b"".join(bytes(encoder.prefix(tag, array)) + array.tobytes()
                    for tag, array in zip(values.tags, values.arrays))


def _without_positions(packet):
    """A sequence segment of no positions (its bars are left out)."""
    if "sequence" not in packet.segments:
        return packet
    array = packet.host_array().copy()
    array[packet.segments["sequence"][0] + 2] = 0.0
    return dataclasses.replace(packet, buffer=array)


def _with_unencodable_heatmap(packet):
    """One cell of the first heatmap 2**40 times smaller than another
    (float16 cannot hold both: the general path stores that grid as float32)."""
    array = packet.host_array().copy()
    offset, _ = packet.segments["heatmaps"]
    array[offset], array[offset + 1] = 1e3, 1e3 * 2.0 ** -40
    return dataclasses.replace(packet, buffer=array)


@pytest.mark.parametrize("name", ["dead", "cnn", "two_optimizers", "branchy", "lm"])
def test_rendered_events_are_the_bytes_of_the_general_path(tmp_path, monkeypatch, name):
    # branchy and lm: a pie with an "other" slice (lm: attention maps, their
    # entropy bars and the sequence bars too).
    plan, packets = _packets(tmp_path, monkeypatch, name)
    memory, rendered = decode.Memory(), 0
    for packet in packets:
        values = decode.event_values(packet, plan, memory)
        if name in ("branchy", "lm") and packet is packets[0]:
            # Its first packet fixes the big pie's classes: the general path.
            assert isinstance(values, sink.FastValues)
            continue
        assert isinstance(values, sink.RenderedEvent), packet.step
        assert values.summary == _general_bytes(packet, plan, memory), packet.step
        assert list(values.tags) == list(values.values().tags)
        rendered += 1
    assert rendered == (7 if name in ("branchy", "lm") else 8)
    if name == "lm":
        assert {plans.TAG_ENTROPY, plans.TAG_SEQUENCE, plans.TAG_CLASSES} <= set(values.tags)
    # Packets the renderer must leave to the general path: NaN/Inf (it warns),
    # a float32 heatmap, counts combined over ranks, a step without positions.
    for variant in (_with_nonfinite, _with_unencodable_heatmap, _combined_over_ranks,
                    _without_positions):
        for packet in map(variant, packets):
            if variant is _with_nonfinite and np.isfinite(packet.host_array()).all():
                continue
            if variant is _combined_over_ranks and (packet.module_numels is not None
                                                    or "module_stats" not in packet.segments):
                continue  # not combined: no module statistics
            if variant is _without_positions and "sequence" not in packet.segments:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the non-finite warning
                values = decode.event_values(packet, plan, memory)
            assert isinstance(values, sink.FastValues), (variant.__name__, packet.step)


def test_layouts_the_renderer_does_not_express_take_the_general_path(tmp_path, monkeypatch):
    # attention with token text (texts change each step)
    plan, packets = _packets(tmp_path, monkeypatch, "attention")
    memory = decode.Memory()
    for packet in packets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert isinstance(decode.event_values(packet, plan, memory), sink.FastValues)


def _summaries(run_dir):
    """`[(step, [(tag, has metadata, tensor bytes)])]` of our event files."""
    from tensorboard.compat.proto import event_pb2

    out = []
    for path in sorted(p for p in run_dir.iterdir() if sink.FILE_MARK in p.name):
        for payload in _records(path)[1:]:
            event = event_pb2.Event.FromString(payload)
            out.append((event.step, [(v.tag, v.HasField("metadata"), v.tensor.SerializeToString())
                                     for v in event.summary.value]))
    return out


def test_event_files_are_the_same_with_and_without_the_renderer(tmp_path, monkeypatch):
    from torch_visualization.watch import render

    files = []
    for on in (True, False):
        if not on:
            monkeypatch.setattr(render, "renderer", lambda *args: None)
        torch.manual_seed(0)
        model = _Dead()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter(str(tmp_path / str(on)))
        writer.watch(model, optimizer, log_every=1, outputs="classes")
        inputs, labels = torch.randn(5, 6), torch.randint(0, 6, (5,))
        for step in range(5):
            model.odd = step >= 3  # a new layout: its first event renders too
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            if step == 1:
                writer._sink.close()  # our next event opens a new file: the metadata again
        writer.close()
        files.append(_summaries(tmp_path / str(on)))
    assert files[0] == files[1]
    assert [step for step, _ in files[0]] == [0, 1, 2, 3, 4]
    metadata = [[has for _, has, _ in values] for _, values in files[0]]
    assert all(metadata[0]) and all(metadata[2])  # the first event of each file
    assert not any(metadata[1]) and not any(metadata[3]) and not any(metadata[4])


def test_render_event_refuses_a_program_outside_its_buffers():
    from torch_visualization import fused

    if not fused.available():
        pytest.skip("the C kernels are not built")
    x, scales, template = np.ones(4, np.float32), np.ones(0, np.float32), bytes(16)
    runs, constants = np.array([0, 3], np.int64), np.ones(1)
    ok = np.array([[1, 8, 3, 0, 0, 0]], np.int64)  # COPY x[3] to bytes 8..16
    assert fused.render_event(x, ok, runs, constants, scales, 1, template)[8:] == \
        np.float64(1.0).tobytes()
    for bad in ([1, 9, 3, 0, 0, 0], [1, 8, 4, 0, 0, 0], [0, 0, 1, 0, 0, 0], [5, 0, 0, 0, 3, 0],
                [14, 0, 0, 0, 0, 0], [9, 0, 0, 0, 1, 4], [11, 0, 1, 0, 4, 0], [11, 4, 0, 0, 4, 0],
                [12, 0, 2, 0, 0, 0], [13, 0, 0, 0, 2, 2], [13, 0, 2, 0, 1, 3]):
        with pytest.raises(ValueError, match="out of range"):
            fused.render_event(x, np.array([bad], np.int64), runs, constants, scales, 1, template)
    with pytest.raises(TypeError):
        fused.render_event(x.astype(np.float64), ok, runs, constants, scales, 1, template)


def test_render_ops_follow_numpy_on_zeros():
    """Ties of signed zeros (numpy's maximum gives its second operand) and
    parameters that were zero before the step, against decode.py's numpy."""
    from torch_visualization import fused
    from torch_visualization.watch import render

    if not fused.available():
        pytest.skip("the C kernels are not built")
    # (lo, hi) pairs of two calls of one module: max(-lo, hi) is -0.0, then 0.0.
    x = np.array([0.0, -0.0, -0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 9.0, 4.0], np.float32)
    program = np.array([[render.MAX_ABS, 0, 0, 0, 2, 0],
                        [render.RATIO, 8, 4, 5, 0, 0],   # before 0, update 0
                        [render.RATIO, 16, 4, 6, 0, 0],  # before 0, moved
                        [render.RATIO, 24, 8, 9, 0, 0]], np.int64)
    got = np.frombuffer(fused.render_event(x, program, np.arange(4, dtype=np.int64), np.ones(1),
                                           np.ones(0, np.float32), 1, bytes(32)), np.float64)
    top = np.array([-np.inf])
    np.maximum.at(top, [0, 0], np.maximum(-x[[0, 2]].astype(np.float64), x[[1, 3]].astype(np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 and x/0, as decode.py
        ratios = decode.update_ratios(x[[4, 4, 8, 5, 6, 9]].astype(np.float64), np.arange(3))
    assert got.tobytes() == np.concatenate([top, ratios]).tobytes()
    assert np.signbit(got[0]) == np.signbit(top[0]) and list(ratios) == [0.0, 1.0, 2.0 / 3.0]
