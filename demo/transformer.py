"""Demo: train two small character-level transformers and log what happens inside them.

Writes two runs under --logdir (default runs/):
  stable    a GPT-style model (token and position embeddings, 2 pre-LayerNorm
            blocks of 4-head causal attention and a GELU MLP, output head tied
            to the token embedding) with the usual recipe: attention logits
            scaled by 1/sqrt(d_head), AdamW with a 100-step learning-rate
            warm-up to 3e-3 and cosine decay. The loss falls smoothly (4.3 to
            about 2.3 nats) and every head keeps spreading its attention over
            several characters (mean entropy 2 to 3.2 nats).
  unstable  the same model, seed and batches with two classic mistakes: the
            attention logits are not divided by sqrt(d_head) (scale 1 instead
            of 1/4), and the learning rate starts at 0.1 with no warm-up. The
            loss spikes within the first steps far above where it started
            (11 nats at step 3) and stays above the stable run's; by step 10
            the attention entropy of the first block's heads has collapsed to
            about 0 (each query attends to a single character) and it stays
            below 0.6 nats: the entropy collapse that precedes loss spikes and
            divergence in large models (Zhai et al., 2023, "Stabilizing
            Transformer Training by Preventing Attention Entropy Collapse").

In the Model Insight tab: `attention/entropy` (bars per head; "Over time" for
heads x steps), the `attention/blocks.<i>.attn` maps (a collapsed head is one
bright cell per row), `activations/rms|max_abs` per block; `loss/train` in
SCALARS.

Data: demo/data/tiny_corpus.txt, public-domain English text bundled with the
project (no download). Both runs take well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from torch_visualization import SummaryWriter

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tiny_corpus.txt")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through `scaled_dot_product_attention`.

    `scale` is passed to the SDPA call explicitly (also when it is the usual
    1/sqrt(d_head)), so that whoever captures the call sees the scale the
    model really uses.
    """

    def __init__(self, d_model, heads, scale):
        super().__init__()
        self.heads = heads
        self.scale = scale
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def split_heads(self, x):
        """`[batch, seq, 3*d_model]` -> q, k, v as `[batch, heads, seq, d_head]`."""
        batch, seq, _ = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(self, x):
        batch, seq, d_model = x.shape
        q, k, v = self.split_heads(x)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, d_model))


class MLP(nn.Module):
    """Position-wise feed-forward: d_model -> 4 d_model -> d_model with GELU."""

    def __init__(self, d_model):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model, heads, scale):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, scale)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """GPT-style character model; the output head shares the token embedding.

    Args:
      vocab: Number of distinct characters.
      context: Longest sequence (learned position embeddings).
      d_model, heads, layers: Width, heads per block, number of blocks.
      attn_scale: Multiplies Q K^T before the softmax (the usual value is
        1/sqrt(d_model / heads)).
    """

    def __init__(self, vocab, context, d_model=64, heads=4, layers=2, attn_scale=None):
        super().__init__()
        if attn_scale is None:
            attn_scale = 1.0 / math.sqrt(d_model // heads)
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, attn_scale) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok_emb.weight
        self.apply(init_weights)

    def forward(self, idx):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def init_weights(module):
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def load_corpus(path=CORPUS):
    """The corpus as `(ids, chars)`: a 1-D int64 tensor and the vocabulary."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    return torch.tensor([index[c] for c in text], dtype=torch.int64), chars


def sample_batch(ids, batch_size, context, generator):
    """Random windows of `context` characters and their next characters."""
    starts = torch.randint(len(ids) - context - 1, (batch_size,), generator=generator)
    offsets = torch.arange(context)
    x = ids[starts[:, None] + offsets]
    return x, ids[starts[:, None] + offsets + 1]


# The two runs differ only here. scaled: attention logits Q K^T / sqrt(d_head)
# (True) or plain Q K^T (False); lr: the peak learning rate; warmup: steps of
# linear warm-up before the cosine decay.
RUNS = {
    "stable": dict(scaled=True, lr=3e-3, warmup=100),
    "unstable": dict(scaled=False, lr=1e-1, warmup=0),
}


def learning_rate(step, steps, peak, warmup):
    """Linear warm-up to `peak`, then cosine decay to a tenth of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build(name, vocab, context, seed, d_model=64, heads=4, layers=2):
    """The model and AdamW optimizer of run `name` (see RUNS), seeded."""
    config = RUNS[name]
    torch.manual_seed(seed)
    d_head = d_model // heads
    model = CharTransformer(
        vocab, context, d_model, heads, layers,
        attn_scale=1.0 / math.sqrt(d_head) if config["scaled"] else 1.0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.1)
    return model, optimizer


def train_run(name, ids, vocab, logdir, steps, log_every, batch_size, context, seed, probe=None):
    """Trains run `name`; `watch()` logs its insides, the loop logs the loss.

    `watch()` logs every `log_every` optimizer steps: weights, gradients and
    updates, per-head attention maps and entropy, residual-stream statistics
    per block and the statistics of the `[batch, seq, vocab]` logits. The
    training loss is logged at every step (loss/train), so a spike between
    logging steps is not missed.

    Args:
      probe: Optional `probe(step, model)` called after each logging step
        (the tests use it to measure the model themselves).

    Returns:
      The training losses, one per step.
    """
    config = RUNS[name]
    model, optimizer = build(name, vocab, context, seed)
    generator = torch.Generator().manual_seed(seed)
    writer = SummaryWriter(os.path.join(logdir, name))
    # Next-character logits are class scores: the pie of predicted
    # characters and outputs/statistics (predictive entropy, largest logit).
    handle = writer.watch(model, optimizer, log_every=log_every, outputs="classes")
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, config["lr"], config["warmup"])
        x, y = sample_batch(ids, batch_size, context, generator)
        model.train()
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        writer.add_scalar("loss/train", losses[-1], step)
        if step % log_every == 0:
            writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
            if probe is not None:
                probe(step, model)
    handle.remove()
    writer.close()
    return losses


def attention_probabilities(model, x):
    """Attention maps of `x[:1]`, one `[heads, seq, seq]` tensor per block.

    Recomputes softmax(Q K^T * scale + causal mask) from each block's own
    projections of its input, independently of the SDPA call (a reference
    for the tests and for watching the model by hand).
    """
    inputs = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        for block in model.blocks
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    maps = []
    with torch.no_grad():
        for block, h in zip(model.blocks, inputs):
            q, k, _ = block.attn.split_heads(h)
            seq = q.shape[-2]
            scores = (q[0] @ k[0].transpose(-1, -2)) * block.attn.scale
            future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
            maps.append(scores.masked_fill(future, float("-inf")).softmax(dim=-1))
    return maps


def attention_entropy(model, x):
    """Mean attention entropy per head in nats, `[layers, heads]`, for `x[:1]`.

    0 when every query attends to a single key; ln(i+1) for query i when it
    attends uniformly to its whole prefix (mean 3.2 over 64 positions).
    """
    rows = []
    for p in attention_probabilities(model, x):
        entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1)  # [heads, seq]
        rows.append(entropy.mean(dim=-1))
    return torch.stack(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    # One thread: the matrices are small (2048 x 64), a second thread gains
    # little, and on a machine that is busy otherwise OpenMP's waiting makes
    # two threads several times slower than one. watch()'s background
    # writer uses the other core.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    ids, chars = load_corpus()
    started = time.perf_counter()
    for name in RUNS:
        run_started = time.perf_counter()
        losses = train_run(
            name, ids, len(chars), args.logdir, args.steps, args.log_every,
            args.batch_size, args.context, args.seed,
        )
        print("%-9s %4d steps, loss %.2f -> %.2f (max %.2f), %.1f s" % (
            name, len(losses), losses[0], losses[-1], max(losses),
            time.perf_counter() - run_started))
    print("wrote %s in %.1f s" % (args.logdir, time.perf_counter() - started))


if __name__ == "__main__":
    main()
