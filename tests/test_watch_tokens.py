"""watch(..., tokens=...): the token labels of the attention card.

Every logging step writes `attention/tokens`, the text of the first example's
input ids of the forward whose maps are captured; read back here from the
event file through TensorBoard's loader (`read`), step by step.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_visualization import SummaryWriter, read
from torch_visualization.watch import tokens as token_labels
from torch_visualization.watch.reducer import StepState

VOCAB = ["<pad>", "the", "cat", "sat", "on", "a", "mat", "dog", "ran", "home", "."]


class _SelfAttention(nn.Module):
    """Hugging Face style: scaled_dot_product_attention in a module named
    "...Attention", causal."""

    def __init__(self, heads=2, size=8):
        super().__init__()
        self.heads, self.size = heads, size
        self.qkv = nn.Linear(heads * size, 3 * heads * size)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.size).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(b, n, -1)


class _Lm(nn.Module):
    """Called as `model(input_ids=...)`, as the Hugging Face Trainer does."""

    def __init__(self, vocab=len(VOCAB)):
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.attn = _SelfAttention()
        self.head = nn.Linear(16, vocab)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        return self.head(self.attn(x))


class _MhaLm(nn.Module):
    """Called with the ids as its first positional argument."""

    def __init__(self, vocab=len(VOCAB)):
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, vocab)

    def forward(self, ids, scale=1.0):
        x = self.emb(ids) * scale
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(y)


def _train(tmp_path, model, batches, call, log_every=1, micro=1, **watch_kwargs):
    """One optimizer step per batch (`micro` forwards each); returns the
    run as read back, and the first example's ids of each step's FIRST forward."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=log_every, outputs="classes", **watch_kwargs)
    firsts = []
    for batch in batches:
        optimizer.zero_grad()
        for m in range(micro):
            ids = batch if m == 0 else batch.flip(0)
            call(model, ids).float().pow(2).mean().backward()
        firsts.append(batch[0].tolist())
        optimizer.step()
    writer.close()
    return read(str(tmp_path))["run"], firsts


def _texts(series):
    return [list(v) for v in series.values]


def test_sdpa_model_tokens_per_logging_step(tmp_path):
    torch.manual_seed(0)
    batches = [torch.randint(0, len(VOCAB), (3, 5 + s % 3)) for s in range(5)]
    run, firsts = _train(tmp_path, _Lm(), batches, lambda m, ids: m(input_ids=ids), log_every=2,
                         micro=2, tokens=VOCAB)
    series = run["attention/tokens"]
    assert series.kind == "tokens" and series.steps == [0, 2, 4]
    want = [[VOCAB[i] for i in firsts[s]] for s in (0, 2, 4)]
    assert _texts(series) == want
    assert want[0] != want[1]  # different inputs, different token lists
    # The maps are those of the same forward: one position per token.
    maps = run["attention/attn"]
    assert maps.steps == [0, 2, 4]
    for values, words in zip(maps.values, want):
        assert values.shape == (2, len(words), len(words))


def test_mha_model_positional_ids_and_a_function(tmp_path):
    torch.manual_seed(1)
    batches = [torch.randint(0, len(VOCAB), (2, 7)) for _ in range(2)]
    threads = []

    def spell(ids):
        threads.append(threading.current_thread().name)
        return ["#%d" % i for i in ids]

    run, firsts = _train(tmp_path, _MhaLm(), batches, lambda m, ids: m(ids), tokens=spell)
    assert _texts(run["attention/tokens"]) == [["#%d" % i for i in f] for f in firsts]
    # Text is made on the writer thread, never on the training thread.
    assert threads and threading.main_thread().name not in threads


def test_first_forward_without_ids_gives_no_tokens_that_step(tmp_path):
    torch.manual_seed(2)
    model = _Lm()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=1, tokens=VOCAB, outputs="classes")
    ids = torch.randint(0, len(VOCAB), (2, 4))
    for step in range(2):
        optimizer.zero_grad()
        if step == 0:
            # The maps of step 0 come from this forward: its ids are unknown,
            # and the second forward's ids must not stand in for them.
            model(inputs_embeds=model.emb(ids)).pow(2).mean().backward()
        model(input_ids=ids).pow(2).mean().backward()
        optimizer.step()
    writer.close()
    run = read(str(tmp_path))["run"]
    assert run["attention/attn"].steps == [0, 1]
    assert run["attention/tokens"].steps == [1]


def _tiny_hf_tokenizer():
    """A byte-level BPE tokenizer trained here (no downloads), as the
    Hugging Face `PreTrainedTokenizerFast` a Trainer holds."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["the cat sat on the mat", "a dog ran home.", "the naïve cat sat\nhome"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<pad>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")


def test_hugging_face_tokenizer_gives_readable_tokens(tmp_path):
    hf = _tiny_hf_tokenizer()
    ids = torch.tensor([hf.encode("the cat sat on the mat\nhome"), hf.encode("a dog ran home. the cat sat")[:8]])
    assert ids.shape == (2, 8)
    torch.manual_seed(3)
    run, firsts = _train(tmp_path, _Lm(len(hf)), [ids], lambda m, x: m(input_ids=x), tokens=hf)
    got = _texts(run["attention/tokens"])[0]
    assert got == ["the", " cat", " sat", " on", " the", " mat", "\n", "home"]
    assert got == [hf.decode([i]) for i in firsts[0]]


def test_tokenizer_forms_and_their_text():
    hf = _tiny_hf_tokenizer()
    # "日" is not in the corpus: three byte tokens, each alone a partial
    # character that decodes to "\ufffd"; the vocabulary entry stands in.
    ids = hf.encode("日")
    assert len(ids) == 3 and all(hf.decode([i]) == "\ufffd" for i in ids)
    assert token_labels.TokenText(hf).texts(ids) == hf.convert_ids_to_tokens(ids)

    class OnlyEntries:
        def convert_ids_to_tokens(self, ids):
            return ["Ġthe", "Ċ", "▁cat"][: len(ids)]

    assert token_labels.TokenText(OnlyEntries()).texts([0, 1, 2]) == [" the", "\n", " cat"]
    assert token_labels.TokenText(VOCAB).texts([1, 2, 99, -1]) == ["the", "cat", "<99>", "<-1>"]
    long = token_labels.TokenText(lambda ids: ["x" * 100 for _ in ids]).texts([5])
    assert long == ["x" * (token_labels.MAX_TOKEN_CHARS - 1) + "…"]


@pytest.mark.parametrize("bad", [3, {"the": 1}, "the cat", b"ids", ["a", 1], object(), 2.5])
def test_bad_tokens_is_a_type_error_naming_tokens(tmp_path, bad):
    writer = SummaryWriter(str(tmp_path / "run"))
    with pytest.raises(TypeError, match="tokens"):
        writer.watch(_Lm(), tokens=bad)
    writer.close()


def test_tokens_without_attention(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    with pytest.raises(ValueError, match="attention=False"):
        writer.watch(_Lm(), tokens=VOCAB, attention=False)
    with pytest.warns(RuntimeWarning, match="no attention module"):
        handle = writer.watch(nn.Sequential(nn.Embedding(4, 3), nn.Linear(3, 2)), tokens=VOCAB)
    handle.remove()
    writer.close()


def test_ids_travel_exactly_in_the_float32_packet():
    state = StepState()
    big = [0, 1, 4095, 4096, 2**24 - 1, 2**24 + 1, 2**30 + 12345, 2**36 - 1]
    token_labels.take_ids(state, (torch.tensor([big, big[::-1]]),), {})
    assert state.tokens.dtype == torch.float32 and state.tokens.shape == (2 * len(big),)
    assert token_labels.ids_of_segment(state.tokens.numpy()).tolist() == big
    # Too large to travel exactly: refused, not rounded.
    token_labels.take_ids(state, (torch.tensor([2**37]),), {})
    assert token_labels.ids_of_segment(state.tokens.numpy()) is None
    # Up to MAX_TOKENS positions; a longer input gets none (never a cut list).
    token_labels.take_ids(state, (), {"input_ids": torch.zeros(1, token_labels.MAX_TOKENS, dtype=torch.long)})
    assert state.tokens.shape == (2 * token_labels.MAX_TOKENS,)
    token_labels.take_ids(state, (), {"input_ids": torch.zeros(1, token_labels.MAX_TOKENS + 1, dtype=torch.long)})
    assert state.tokens == ()
    # Which input holds the ids: input_ids=, else the first integer tensor.
    ids = torch.tensor([[3, 4]])
    assert token_labels.input_ids((torch.randn(1, 2), ids), {}) is ids
    assert token_labels.input_ids((torch.randn(1, 2),), {"input_ids": ids}) is ids
    assert token_labels.input_ids((torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 2, 3, dtype=torch.long)), {}) is None


def test_a_failing_tokenizer_is_warned_once_and_costs_nothing_else(tmp_path):
    def broken(ids):
        raise KeyError("no such id")

    torch.manual_seed(4)
    batches = [torch.randint(0, len(VOCAB), (2, 5)) for _ in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run, _ = _train(tmp_path, _Lm(), batches, lambda m, ids: m(input_ids=ids), tokens=broken)
    told = [w for w in caught if "attention/tokens" in str(w.message)]
    assert len(told) == 1 and "KeyError" in str(told[0].message)
    assert "attention/tokens" not in run
    assert run["attention/attn"].steps == [0, 1, 2]


def test_gradients_are_bit_identical_with_tokens_on(tmp_path):
    torch.manual_seed(5)
    ids = torch.randint(0, len(VOCAB), (3, 6))
    grads = []
    for with_tokens in (False, True):
        torch.manual_seed(6)
        model = _Lm()
        writer = SummaryWriter(str(tmp_path / ("run%d" % with_tokens)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer.watch(model, optimizer, log_every=1, tokens=VOCAB if with_tokens else None)
        model(input_ids=ids).pow(2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        optimizer.step()
        writer.close()
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(
        read(str(tmp_path))["run1"]["attention/tokens"].values[0], [VOCAB[i] for i in ids[0].tolist()]
    )
