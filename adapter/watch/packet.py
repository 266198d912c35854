"""One logging step in transit: named segments of one buffer.

The reducer (training thread) adds 1-D device tensors under names; `build`
concatenates them into ONE buffer and starts its ONE copy to the host. The
decoder (writer thread) reads each segment back by its name: no offsets
shared between the two by convention.

Segment names (the reducer writes them, `decode.py` reads them):

- `grads.<k>`: gradient statistics (`reduce.STAT_ROWS` rows) of the present
  gradients of gradient group k; `nonfinite.<k>` their NaN/Inf counts;
- `updates.<k>`: `[squared norms before | squared norms of the update]` of
  the parameters optimizer k stepped;
- `activations`: nonzero counts, one per measured activation output (an
  activation module's, or a functional ReLU call's: functional.py);
- `module_stats`: four rows (sums of squares, minima, maxima, element
  counts) of the measured module outputs;
- `attention.<i>`, `entropy.<i>`: attention module i's pooled maps of the
  first example and its mean entropy per head;
- `tokens`: the token ids of that example, `[ids // 4096 | ids % 4096]`
  (float32 is exact below 2**24 only; see tokens.py);
- `classes`: the sum of the softmax of the logged outputs;
- `sequence`: sum of predictive entropies, the largest logit and the number
  of positions of sequence outputs;
- `heatmaps`: every weight's grid, in the heatmap plan's order (block sums).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


class PacketBuilder:
    """Collects the named 1-D pieces of one logging step on the device."""

    def __init__(self):
        self._pieces = []
        self._segments = {}
        self._size = 0

    def add(self, name, tensor):
        """Adds a 1-D tensor (or several: their concatenation) as `name`;
        on the CPU also numpy arrays."""
        tensors = tensor if isinstance(tensor, (list, tuple)) else [tensor]
        if name in self._segments:
            raise ValueError("packet: segment %r added twice" % name)
        size = 0
        for piece in tensors:
            if len(piece.shape) != 1:
                raise ValueError("packet: segment %r needs 1-D pieces, got shape %s"
                                 % (name, list(piece.shape)))
            self._pieces.append(piece)
            size += piece.shape[0]
        self._segments[name] = (self._size, size)
        self._size += size

    def add_block(self, tensor, layout):
        """Adds a 1-D tensor (on the CPU also a numpy array) holding several
        segments: `layout` maps each name to its `(offset, size)` inside it
        (a replayed vector)."""
        for name in layout:
            if name in self._segments:
                raise ValueError("packet: segment %r added twice" % name)
        if len(tensor.shape) != 1:
            raise ValueError("packet: a block must be 1-D, got shape %s" % list(tensor.shape))
        for name, (offset, size) in layout.items():
            self._segments[name] = (self._size + offset, size)
        self._pieces.append(tensor)
        self._size += tensor.shape[0]

    def build(self, device, host_numpy=None):
        """`(host buffer, ready event or None, segments)`: one float32 buffer
        on `device`, its copy to the host started (non-blocking on CUDA); on
        the CPU a numpy array (see `Packet.host_array`), unless `host_numpy`
        is False (the accelerator path's test seam on CPU tensors, which
        makes the calls an accelerator makes)."""
        if not self._pieces:
            return None, None, {}
        if device.type == "cpu" and host_numpy is not False:
            # numpy: a few cheap calls where torch's would be many and cold
            # (after a backward pass each call costs several times its cost
            # in a loop).
            return np.concatenate([_host_array(piece) for piece in self._pieces]), None, dict(self._segments)
        pieces = self._pieces
        if any(isinstance(piece, np.ndarray) for piece in pieces):
            if device.type != "cpu":
                raise TypeError("packet: numpy pieces are for CPU packets only")
            pieces = [torch.from_numpy(p) if isinstance(p, np.ndarray) else p for p in pieces]
        with torch.no_grad():
            pieces = [p if p.device == device else p.to(device) for p in pieces]
            pieces = [p if p.dtype == torch.float32 else p.float() for p in pieces]
            flat = torch.cat(pieces)
        host, ready = _to_host(flat)
        return host, ready, dict(self._segments)


def _host_array(piece):
    """A CPU piece (numpy array or tensor of any float dtype) as float32 numpy."""
    if isinstance(piece, np.ndarray):
        return piece.astype(np.float32, copy=False)
    if piece.dtype != torch.float32 or piece.device.type != "cpu":
        piece = piece.to("cpu", torch.float32)
    return piece.detach().numpy()


def _to_host(flat):
    """Starts the one device-to-host copy; returns `(host tensor, event or None)`."""
    if flat.device.type == "cpu":
        return flat, None
    if flat.device.type == "cuda":
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(flat.device))
        return host, ready
    return flat.cpu(), None


@dataclasses.dataclass
class Packet:
    """One logging step, handed from the training thread to the writer thread.

    Attributes:
      step, walltime: Where the event goes.
      buffer: The host buffer: a host tensor (may still be filling until
        `ready` fires), or a CPU packet's float32 numpy array.
      ready: A CUDA event to wait for, or None.
      segments: `{name: (offset, size)}` in `buffer`.
      gradient_groups: `[(segment suffix, positions in plan.grad_names)]`.
      update_groups: `[(segment suffix, positions in plan.grad_names)]`.
      activation_entries: `[(activation index, numel)]`, one per count
        (indices past the activation modules: functional ReLU sites).
      module_entries: The stat module index of each column of
        `module_stats`.
      module_numels: The element count of each column, or None when
        `module_stats` carries them as a fourth row (summed over ranks).
      attention_entries: `[(attention module index, pooled shape, original
        shape)]` of the `attention.<i>` / `entropy.<i>` segments.
      class_samples: Rows summed in the `classes` segment (0: none).
      heatmaps: `[(tag, grid shape, first-event extra)]` in buffer order.
      heatmap_scales: Per cell of `heatmaps`, the factor to the mean.
    """

    step: int
    walltime: float
    buffer: torch.Tensor
    ready: object
    segments: dict
    gradient_groups: list
    update_groups: list
    activation_entries: list
    module_entries: list
    attention_entries: list
    class_samples: int
    heatmaps: list
    heatmap_scales: object
    module_numels: object = None

    def built(self):
        """The packet itself (see `Later`)."""
        return self

    def wait(self):
        """Blocks until the host buffer holds the device's numbers."""
        if self.ready is not None:
            self.ready.synchronize()

    def host_array(self):
        """The buffer as a float32 numpy array (after `wait`)."""
        return self.buffer if isinstance(self.buffer, np.ndarray) else self.buffer.numpy()

    def segment(self, name, array):
        """The segment `name` of `array` (the buffer as numpy), or None."""
        where = self.segments.get(name)
        if where is None:
            return None
        offset, size = where
        return array[offset:offset + size]


class Later:
    """A logging step's packet, made by `built()` where it is asked for
    (the writer thread) from an ended step that nothing changes any more.

    Attributes:
      step, walltime: Where the event goes (as a `Packet`'s).
    """

    def __init__(self, step, walltime, make):
        self.step = step
        self.walltime = walltime
        self._make = make

    def built(self):
        """The `Packet`."""
        return self._make()
