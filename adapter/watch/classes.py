"""What a model output holds, and its class pie and sequence statistics.

`first_tensor` and `class_scores` find the tensors in an output (a tensor,
a tuple, a mapping such as Hugging Face's ModelOutput). What a logging step
keeps of the model's output: the softmax summed over
rows (the `outputs/classes` pie), and for sequence outputs the predictive
entropy and the largest logit. Small float32 CPU outputs take one C call
(fused.py), everything else PyTorch ops in bounded chunks; the tests compare
the two.
"""

from __future__ import annotations

import collections.abc

import numpy as np
import torch

from torch_visualization import fused

# Largest softmax a logging step materialises at once (see add_class_scores).
_PROBABILITIES_PER_CHUNK = 1 << 24


def first_tensor(output):
    """The first tensor of a module output (a tensor, or a tuple/list/dict
    holding tensors): what a block passes on in the residual stream."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, collections.abc.Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


def class_scores(output):
    """The class scores of a model output: the output itself, the "logits"
    entry of a mapping (Hugging Face's ModelOutput), else its first tensor."""
    if isinstance(output, collections.abc.Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return first_tensor(output)


def add_class_scores(state, scores, sequence=False, accelerated=False):
    """Adds the softmax of `[rows, classes]` scores to the step's sums;
    for a sequence output (rows = batch x positions) also the predictive
    entropy and the largest logit.

    Small float32 CPU scores take one C call (fused.py; `accelerated`: the
    accelerators' kernels, also on CPU tensors). Otherwise rows are taken in
    chunks of at most ~16M probabilities: an LM's logits (8 x 1024
    positions x 50k tokens) would otherwise need a float32 copy of 1.6 GB
    on a logging step.
    """
    rows, width = scores.shape
    together = None if accelerated else fused.class_statistics(scores)
    if together is not None:
        sums, entropy, top = together
        if sequence:  # 0-d tensors from one array (no torch op per value)
            entropy, top, _ = torch.from_numpy(np.array([entropy, top, 0.0], dtype=np.float32))
    else:
        sums, entropy, top = _class_statistics(scores, sequence)
    if sequence:
        stats = torch.stack([entropy, top, torch.full_like(entropy, rows)])
        if state.sequence is not None:
            old = state.sequence
            stats = torch.stack([old[0] + entropy, torch.maximum(old[1], top), old[2] + stats[2]])
        state.sequence = stats
    state.class_sum = sums if state.class_sum is None else state.class_sum.add_(sums)
    state.class_samples += rows


def _class_statistics(scores, sequence):
    """`(softmax summed over rows, entropy sum or None, max or None)` by
    PyTorch ops, in chunks (see add_class_scores)."""
    rows, width = scores.shape
    chunk = max(1, _PROBABILITIES_PER_CHUNK // width)
    sums = entropy = None
    with torch.no_grad():
        for start in range(0, rows, chunk):
            # Under no_grad: no detach; one chunk: no slice (host calls count
            # on a launch-bound GPU).
            part = scores if chunk >= rows else scores[start:start + chunk]
            probabilities = torch.softmax(part, 1, dtype=torch.float32)
            total = probabilities.sum(0)
            sums = total if sums is None else sums.add_(total)
            if sequence:
                part_entropy = -torch.special.xlogy(probabilities, probabilities).sum()
                entropy = part_entropy if entropy is None else entropy + part_entropy
        top = scores.max().float() if sequence else None
    return sums, entropy, top
