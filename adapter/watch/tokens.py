"""Token labels of the attention maps: `watch(..., tokens=...)`.

A tag's labels are frozen at its first event, but a training batch's tokens
change every step, so tokens travel PER LOGGING STEP:

1. training thread (capture.py, the model's forward pre-hook): the token ids
   of the FIRST EXAMPLE of the first measured model forward of a logging step
   (the forward whose attention maps are captured) are taken from the model's
   inputs (`input_ids=`, else the first positional integer tensor of 1 or 2
   dimensions), kept ON THE DEVICE, no host sync: `take_ids`;
2. the reducer adds them to the step's packet as the `tokens` segment. The
   packet is float32, exact for integers below 2**24 only, so each id
   travels as two exact halves, `[ids // 4096 | ids % 4096]` (exact for ids
   below 2**36, far beyond any vocabulary);
3. writer thread (decode.py): the ids come back (`ids_of_segment`) and the
   user's tokenizer, function or vocabulary turns them into text
   (`TokenText`, cached per id), written as `attention/tokens`, a 1-D string
   tensor per step (`summary.tokens_summary`).

Inputs of at most `MAX_TOKENS` positions are labelled, each text at most
`MAX_TOKEN_CHARS` characters (longer ones end in "…"). A failing tokenizer is reported once and
the step is written without tokens: labels never cost training or the rest
of a logging step.
"""

from __future__ import annotations

import collections.abc
import warnings

import numpy as np
import torch

from torch_visualization import metadata
from torch_visualization.watch import plan as plans

TAG_TOKENS = metadata.TOKENS_TAG

# Longest input labelled: a longer one gets no tokens (a cut list would put
# the wrong tokens into a pooled map's bins). About 50 KB of text per step.
MAX_TOKENS = 8192

# Longest token text kept (a token of a byte-level vocabulary is rarely over
# 16 characters; a user's function may return anything).
MAX_TOKEN_CHARS = 32

# Each id travels as two float32 numbers below this (see the module docstring).
_HALF = 4096

# Byte-level BPE (GPT-2, RoBERTa) and SentencePiece markers made readable when
# only `convert_ids_to_tokens` is there.
_MARKERS = str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "})


# -- watch() time ----------------------------------------------------------------


def check_tokens(tokens, attention=True):
    """Validates `watch(tokens=...)`; returns a `TokenText` or None.

    Args:
      tokens: None; a tokenizer (an object with `decode` or
        `convert_ids_to_tokens`, e.g. Hugging Face's); a callable
        `ids (list of int) -> list of str`; or a sequence of strings, the
        vocabulary indexed by id.
      attention: watch()'s `attention` argument (tokens label its maps).

    Raises:
      TypeError: `tokens` is none of these.
      ValueError: tokens given with `attention=False`.
    """
    if tokens is None:
        return None
    if not attention:
        raise ValueError("watch: tokens label the attention maps, but attention=False "
                         "captures none; drop tokens= or capture attention")
    return TokenText(tokens)


class TokenText:
    """Turns token ids into short readable texts (writer thread).

    Args:
      source: A tokenizer, a callable or a vocabulary (see `check_tokens`).

    Raises:
      TypeError: naming `tokens`, for anything else.
    """

    def __init__(self, source):
        self._cache = {}
        self._warned = False
        if isinstance(source, (str, bytes)):
            raise TypeError("watch: tokens must be a tokenizer, a function or a vocabulary "
                            "(a sequence of strings), not one %s" % type(source).__name__)
        if hasattr(source, "decode") or hasattr(source, "convert_ids_to_tokens"):
            self._kind = "tokenizer"
        elif callable(source):
            self._kind = "function"
        elif isinstance(source, collections.abc.Sequence):
            bad = next((t for t in source if not isinstance(t, str)), None)
            if bad is not None:
                raise TypeError("watch: tokens as a vocabulary must hold strings (indexed by "
                                "token id), got a %s" % type(bad).__name__)
            self._kind = "vocabulary"
        else:
            raise TypeError(
                "watch: tokens must be a tokenizer (with decode or convert_ids_to_tokens), a "
                "function ids -> list of str, or a vocabulary (a sequence of strings), got %s"
                % type(source).__name__
            )
        self._source = source

    def texts(self, ids):
        """The text of each id (a list of str as long as `ids`), or None
        when the user's tokenizer or function failed (warned once)."""
        ids = [int(i) for i in ids]
        try:
            if self._kind == "function":
                texts = self._call_function(ids)
            else:
                missing = sorted({i for i in ids if i not in self._cache})
                if missing:
                    found = self._lookup(missing) if self._kind == "tokenizer" \
                        else [self._vocabulary_text(i) for i in missing]
                    self._cache.update(zip(missing, (shorten(t) for t in found)))
                return [self._cache[i] for i in ids]
        except Exception as e:  # noqa: BLE001 -- a user's tokenizer must not cost the step
            self._warn("turning token ids into text failed (%s: %s)" % (type(e).__name__, e))
            return None
        return texts

    def _call_function(self, ids):
        texts = self._source(list(ids))
        texts = list(texts) if not isinstance(texts, (str, bytes)) else None
        if texts is None or len(texts) != len(ids) or not all(isinstance(t, str) for t in texts):
            raise TypeError("the tokens function must return a list of %d strings" % len(ids))
        return [shorten(t) for t in texts]

    def _vocabulary_text(self, index):
        vocabulary = self._source
        return vocabulary[index] if 0 <= index < len(vocabulary) else "<%d>" % index

    def _lookup(self, ids):
        """Readable text per id from a tokenizer: `decode([id])` (what the
        token looks like in text), else its vocabulary entry with byte-level
        markers made readable; the entry also where decoding one token gives
        a partial UTF-8 character."""
        source = self._source
        entries = None
        if hasattr(source, "convert_ids_to_tokens"):
            entries = [str(t).translate(_MARKERS) for t in source.convert_ids_to_tokens(ids)]
        if not hasattr(source, "decode"):
            return entries
        if hasattr(source, "batch_decode"):
            # Hugging Face: one call; no clean-up, which eats spaces before
            # punctuation of single tokens.
            texts = source.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
        else:
            texts = [source.decode([i]) for i in ids]
        texts = [str(t) for t in texts]
        if entries is not None:
            texts = [entry if (not text or "\ufffd" in text) else text
                     for text, entry in zip(texts, entries)]
        return texts

    def _warn(self, why):
        if not self._warned:
            self._warned = True
            warnings.warn("torch_visualization watch: %r is not logged at this step: %s "
                          "(warned once)" % (TAG_TOKENS, why), RuntimeWarning, stacklevel=2)


def shorten(text):
    """At most `MAX_TOKEN_CHARS` characters, "…" marking a cut."""
    text = str(text)
    return text if len(text) <= MAX_TOKEN_CHARS else text[:MAX_TOKEN_CHARS - 1] + "…"


# -- training thread (logging steps only) ----------------------------------------


def input_ids(args, kwargs):
    """The model's token ids among its inputs, or None: `input_ids=`, else
    the first positional integer tensor of 1 (one sequence) or 2 (`[batch,
    seq]`) dimensions."""
    ids = kwargs.get("input_ids") if kwargs else None
    if _is_ids(ids):
        return ids
    for arg in args:
        if _is_ids(arg):
            return arg
    return None


def _is_ids(value):
    return isinstance(value, torch.Tensor) and value.dim() in (1, 2) and value.numel() > 0 \
        and not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool


def take_ids(state, args, kwargs):
    """Keeps the first example's token ids for the step (once per step, from
    the first measured forward): a device tensor, the `tokens` segment of the
    packet (`[ids // 4096 | ids % 4096]` as float32), no host sync.

    A first forward without ids, or with more than `MAX_TOKENS` positions,
    marks the step as having none (a later forward's ids would not belong to
    the captured maps).
    """
    ids = input_ids(args, kwargs)
    if ids is None or ids.shape[-1] > MAX_TOKENS:
        state.tokens = ()
        return
    with torch.no_grad():
        first = (ids[0] if ids.dim() == 2 else ids).detach().long()
        high = torch.div(first, _HALF, rounding_mode="floor")
        state.tokens = torch.cat([high, first - high * _HALF]).float()


def add_segment(builder, state):
    """Adds the step's token ids (see `take_ids`), if any, to the packet as
    its `tokens` segment."""
    if isinstance(state.tokens, torch.Tensor):
        builder.add("tokens", state.tokens)


# -- writer thread -----------------------------------------------------------------


def ids_of_segment(segment):
    """The int64 ids of a `tokens` segment, or None when an id is too large
    to have travelled exactly (beyond 2**36)."""
    segment = np.asarray(segment, dtype=np.float64)
    count = segment.shape[0] // 2
    high, low = segment[:count], segment[count:2 * count]
    if count == 0 or not np.isfinite(segment).all() or np.abs(high).max() >= 2**24:
        return None
    return (high * _HALF + low).astype(np.int64)


def token_values(packet, array, text):
    """`[(TAG_TOKENS, "tokens", texts, {})]` of a packet holding a `tokens`
    segment, else `[]` (no segment, no `TokenText`, or text that failed)."""
    segment = packet.segment("tokens", array)
    if segment is None or text is None:
        return []
    ids = ids_of_segment(segment)
    if ids is None:
        text._warn("a token id is not below 2**36")
        return []
    texts = text.texts(ids.tolist())
    return [] if not texts else [(TAG_TOKENS, "tokens", texts, {})]


def for_plan(text, plan):
    """The `TokenText` a plan keeps: None without attention modules to label
    (warned), or when an attention module's own tag would be the tokens tag."""
    if text is None:
        return None
    if not plan.attention_names:
        warnings.warn("torch_visualization watch: tokens= is ignored: the model has no "
                      "attention module whose maps they would label", RuntimeWarning, stacklevel=3)
        return None
    if any(plans.TAG_ATTENTION + name == TAG_TOKENS for name in plan.attention_names):
        raise ValueError("watch: an attention module's maps would be logged as %r, the tag of "
                         "tokens=; rename the module or drop tokens=" % TAG_TOKENS)
    return text
