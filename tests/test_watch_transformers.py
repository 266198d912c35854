"""watch() on transformers: attention maps and entropy, the residual stream,
sequence outputs, and Hugging Face GPT-2 under "sdpa" and "eager" attention.

Captured maps are compared with a reference softmax(QKᵀ/√d + mask) computed
here by hand, or with the model's own attention weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_visualization import SummaryWriter, read


def _read(tmp_path, run="run"):
    return read(str(tmp_path))[run]


def _entropy(maps):
    """Mean entropy per head over query rows, in float64."""
    maps = maps.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(maps > 0, maps * np.log(maps), 0.0)
    return -terms.sum(-1).mean(-1)


def _train_one_step(model, forward, watch_kwargs, tmp_path, run="run"):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights stay put
    writer = SummaryWriter(str(tmp_path / run))
    writer.watch(model, optimizer, log_every=1, **watch_kwargs)
    optimizer.zero_grad()
    out = forward()
    out.float().pow(2).mean().backward()
    optimizer.step()
    writer.close()
    return _read(tmp_path, run)


# -- nn.MultiheadAttention ------------------------------------------------------------


class _MhaModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x, attn_mask, padding):
        # need_weights=False, as TransformerEncoderLayer calls it.
        y, _ = self.attn(x, x, x, attn_mask=attn_mask, key_padding_mask=padding, need_weights=False)
        return self.out(y)


def test_multihead_attention_maps_equal_its_own_weights(tmp_path):
    torch.manual_seed(0)
    model = _MhaModel()
    x = torch.randn(3, 7, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(7)  # float, -inf above the diagonal
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True  # the first example's last two keys are padding
    with torch.no_grad():
        _, want = model.attn(x, x, x, attn_mask=causal, key_padding_mask=padding,
                             need_weights=True, average_attn_weights=False)
    got = _train_one_step(model, lambda: model(x, causal, padding), {}, tmp_path)
    maps = got["attention/attn"]
    assert maps.kind == "attention" and maps.original_shape == [4, 7, 7]
    np.testing.assert_allclose(maps.values[0], want[0].numpy(), rtol=1e-5, atol=1e-6)
    assert (maps.values[0][:, :, 5:] == 0).all()  # padding never attended
    entropy = got["attention/entropy"]
    assert entropy.labels == ["attn/head0", "attn/head1", "attn/head2", "attn/head3"]
    np.testing.assert_allclose(entropy.values[0], _entropy(want[0].numpy()), rtol=1e-5)


def test_attention_inside_transformer_encoder_layers(tmp_path):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    x = torch.randn(2, 9, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(9)
    with torch.no_grad():  # the first layer's input is x itself (norm_first=False)
        _, want = model.layers[0].self_attn(x, x, x, attn_mask=mask, need_weights=True,
                                            average_attn_weights=False)
    got = _train_one_step(model, lambda: model(x, mask=mask, is_causal=True), {}, tmp_path)
    assert {"attention/layers.0.self_attn", "attention/layers.1.self_attn"} <= set(got)
    np.testing.assert_allclose(got["attention/layers.0.self_attn"].values[0], want[0].numpy(),
                               rtol=1e-5, atol=1e-6)
    # The residual stream: each encoder layer's output.
    assert got["activations/rms"].labels == ["layers.0", "layers.1"]
    with torch.no_grad():
        first = model.layers[0](x, src_mask=mask, is_causal=True)
    assert got["activations/rms"].values[0][0] == pytest.approx(
        float(first.pow(2).mean().sqrt()), rel=1e-5)


# -- scaled_dot_product_attention -----------------------------------------------------


class _SdpaAttention(nn.Module):
    """A grouped-query causal self-attention calling SDPA, like HF's modules."""

    def __init__(self, heads=4, kv_heads=2, size=8, scale=None):
        super().__init__()
        self.heads, self.kv_heads, self.size, self.scale = heads, kv_heads, size, scale
        self.q = nn.Linear(32, heads * size)
        self.kv = nn.Linear(32, 2 * kv_heads * size)
        self.seen = None

    def forward(self, x, mask=None):
        batch, length, _ = x.shape
        q = self.q(x).reshape(batch, length, self.heads, self.size).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, length, 2, self.kv_heads, self.size).permute(2, 0, 3, 1, 4)
        self.seen = (q.detach(), k.detach())
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           scale=self.scale, enable_gqa=True)
        return y.transpose(1, 2).reshape(batch, length, -1)


class _SdpaModel(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList([_SdpaAttention(**kwargs)])
        self.head = nn.Linear(32, 5)

    def forward(self, x, mask=None):
        return self.head(self.blocks[0](x, mask))


def _reference(q, k, scale, mask=None, causal=False):
    q, k = q[0].double(), k[0].double().repeat_interleave(q.shape[1] // k.shape[1], dim=0)
    scores = q @ k.transpose(-1, -2) * scale
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), -math.inf)
    if mask is not None:
        scores = scores.masked_fill(~mask[0], -math.inf)
    return scores.softmax(-1).numpy()


@pytest.mark.parametrize("scale", [None, 0.9])
def test_sdpa_causal_maps_equal_the_reference_softmax(tmp_path, scale):
    torch.manual_seed(0)
    model = _SdpaModel(scale=scale)
    x = torch.randn(3, 6, 32)
    got = _train_one_step(model, lambda: model(x), {}, tmp_path)
    q, k = model.blocks[0].seen
    want = _reference(q, k, 1 / math.sqrt(8) if scale is None else scale, causal=True)
    np.testing.assert_allclose(got["attention/blocks.0"].values[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["attention/entropy"].values[0], _entropy(want), rtol=1e-5, atol=1e-7)


def test_sdpa_padding_mask_and_pooled_long_sequences(tmp_path):
    torch.manual_seed(0)
    model = _SdpaModel()
    length = 100  # more than 64 positions: pooled
    x = torch.randn(2, length, 32)
    mask = torch.ones(2, 1, length, length, dtype=torch.bool).tril()  # causal ...
    mask[0, :, :, 90:] = False  # ... and the first example's last 10 keys are padding
    got = _train_one_step(model, lambda: model(x, mask), {}, tmp_path)
    q, k = model.blocks[0].seen
    want = _reference(q, k, 1 / math.sqrt(8), mask=mask[:, 0])
    maps = got["attention/blocks.0"]
    assert maps.original_shape == [4, length, length] and maps.values[0].shape == (4, 64, 64)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(want), (64, 64)).numpy()
    np.testing.assert_allclose(maps.values[0], pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["attention/entropy"].values[0], _entropy(want), rtol=1e-5)


def test_capture_happens_on_logging_steps_only(tmp_path):
    torch.manual_seed(0)
    model = _SdpaModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.watch(model, optimizer, log_every=3)
    hooked = []
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(2, 5, 32)).sum().backward()
        optimizer.step()
        hooked.append(bool(model._forward_pre_hooks))
    writer.close()
    # Seen after each step: hooks exist from the end of step 2 until step 3
    # (a logging step) ends, and none are left between other steps.
    assert hooked == [False, False, True, False, False]
    assert _read(tmp_path)["attention/blocks.0"].steps == [0, 3]


# -- sequence outputs -----------------------------------------------------------------


class _TinyLm(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.blocks = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, vocab)

    def forward(self, tokens):
        hidden = self.embed(tokens)
        return self.head(hidden + self.blocks(hidden))


@pytest.mark.parametrize("vocab", [20, 50])
def test_sequence_outputs_give_entropy_max_logit_and_a_bounded_pie(tmp_path, vocab):
    torch.manual_seed(0)
    model = _TinyLm(vocab)
    tokens = torch.randint(0, vocab, (3, 11))
    with torch.no_grad():
        logits = model(tokens)
    probabilities = logits.double().softmax(-1)
    entropy = float(-(probabilities * probabilities.log()).sum(-1).mean())
    shares = probabilities.reshape(-1, vocab).mean(0).numpy()
    got = _train_one_step(model, lambda: model(tokens), {"outputs": "classes"}, tmp_path)
    stats = got["outputs/statistics"]
    assert stats.labels == ["entropy", "max_logit"]
    np.testing.assert_allclose(stats.values[0], [entropy, float(logits.max())], rtol=1e-5)
    pie = got["outputs/classes"]
    if vocab <= 32:
        np.testing.assert_allclose(pie.values[0], shares, rtol=1e-5)
    else:  # the 31 most likely classes and "other"
        assert len(pie.labels) == 32 and pie.labels[-1] == "other"
        kept = [int(label) for label in pie.labels[:-1]]
        assert set(kept) == set(np.argsort(-shares, kind="stable")[:31].tolist())
        np.testing.assert_allclose(pie.values[0][:-1], shares[kept], rtol=1e-5)
        assert pie.values[0][-1] == pytest.approx(1 - shares[kept].sum(), rel=1e-4)


# -- Hugging Face GPT-2 ----------------------------------------------------------------


def _gpt2(implementation):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, vocab_size=40, n_positions=32,
        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel._from_config(config, attn_implementation=implementation)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_gpt2_attention_equals_the_models_own_weights(tmp_path, implementation):
    model = _gpt2(implementation)
    twin = _gpt2("eager")
    twin.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        want = twin(tokens, output_attentions=True).attentions
    model.train()
    got = _train_one_step(model, lambda: model(tokens, labels=tokens).logits,
                          {"outputs": "classes"}, tmp_path, implementation)
    for layer in range(2):
        np.testing.assert_allclose(got["attention/transformer.h.%d.attn" % layer].values[0],
                                   want[layer][0].numpy(), rtol=1e-4, atol=1e-6)
    assert len(got["attention/entropy"].labels) == 8
    assert got["activations/rms"].labels == ["transformer.h.0", "transformer.h.1"]
    # Tied embedding and LM head: logged once.
    assert "weights/transformer.wte.weight" in got and "weights/lm_head.weight" not in got


def test_gpt2_gradients_are_bit_identical_with_capture_on(tmp_path):
    grads = []
    for watched in (False, True):
        model = _gpt2("sdpa")
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter(str(tmp_path / str(watched)))
        if watched:
            writer.watch(model, optimizer, log_every=1, outputs="classes")
        tokens = torch.randint(0, 40, (2, 10), generator=torch.Generator().manual_seed(1))
        steps = []
        for _ in range(2):
            optimizer.zero_grad()
            model(tokens, labels=tokens).loss.backward()
            steps.append([p.grad.clone() for p in model.parameters()])
            optimizer.step()
        writer.close()
        grads.append(steps)
    for a_step, b_step in zip(*grads):
        for a, b in zip(a_step, b_step):
            assert torch.equal(a, b)


def test_class_shares_of_long_sequences_are_summed_in_chunks(monkeypatch):
    """A big vocabulary's softmax is taken a few rows at a time (bounded
    memory on a logging step): the sums equal the whole softmax's."""
    from torch_visualization.watch import classes
    from torch_visualization.watch.reducer import StepState

    scores = torch.randn(37, 50, generator=torch.Generator().manual_seed(0))
    whole, chunked = StepState(), StepState()
    # accelerated: the PyTorch path (small CPU scores would take one C call)
    classes.add_class_scores(whole, scores, sequence=True, accelerated=True)
    monkeypatch.setattr(classes, "_PROBABILITIES_PER_CHUNK", 50 * 4)  # 4 rows a chunk
    classes.add_class_scores(chunked, scores, sequence=True, accelerated=True)
    torch.testing.assert_close(chunked.class_sum, whole.class_sum)
    torch.testing.assert_close(chunked.sequence, whole.sequence)
    probabilities = scores.double().softmax(1)
    torch.testing.assert_close(whole.class_sum.double(), probabilities.sum(0), rtol=1e-5, atol=1e-6)
    assert whole.class_samples == chunked.class_samples == 37
