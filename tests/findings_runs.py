"""Real training runs for the findings tests: healthy models and planted faults.

Each run trains a small model on synthetic data on the CPU for a few hundred
steps with `SummaryWriter(...).watch(model, optimizer, log_every=LOG_EVERY)`
and logs its loss with `add_scalar`. Healthy runs cover five architectures
(DESIGN.md: calibrate on several, never on the demo alone): an MLP, a CNN
with BatchNorm, residual blocks with LayerNorm/GELU, a transformer encoder
(nn.MultiheadAttention) and a GPT-style causal model (SDPA) on a made-up
character language; each fault run plants one known problem at a known
layer, head or module and step.
"""

from __future__ import annotations

import math
import os

STEPS = 150
LOG_EVERY = 10
FEATURES = 16
CLASSES = 4
NAN_STEP = 100
DIVERGE_STEP = 100


def _data(seed, batch=32):
    """An endless stream of batches: Gaussian clusters, one per class."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, FEATURES, generator=generator) * 2.0
    while True:
        y = torch.randint(0, CLASSES, (batch,), generator=generator)
        x = centres[y] + torch.randn(batch, FEATURES, generator=generator)
        yield x, y


def mlp(depth=3, width=64, act=None):
    from torch import nn

    act = act or nn.ReLU
    layers, width_in = [], FEATURES
    for _ in range(depth - 1):
        layers += [nn.Linear(width_in, width), act()]
        width_in = width
    layers.append(nn.Linear(width_in, CLASSES))
    return nn.Sequential(*layers)


def cnn():
    from torch import nn

    return nn.Sequential(
        nn.Unflatten(1, (1, 4, 4)),
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, CLASSES),
    )


def resnet():
    from torch import nn

    class Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.norm = nn.LayerNorm(width)
            self.fc1 = nn.Linear(width, 2 * width)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(2 * width, width)

        def forward(self, x):
            return x + self.fc2(self.act(self.fc1(self.norm(x))))

    return nn.Sequential(
        nn.Linear(FEATURES, 48), Block(48), Block(48), Block(48),
        nn.LayerNorm(48), nn.Linear(48, CLASSES),
    )


def transformer():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        """Reads the 16 features as 4 tokens of 4 numbers."""

        def __init__(self, d_model=32):
            super().__init__()
            self.embed = nn.Linear(4, d_model)
            self.position = nn.Parameter(torch.randn(4, d_model) * 0.02)
            layer = nn.TransformerEncoderLayer(
                d_model, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, CLASSES)

        def forward(self, x):
            tokens = self.embed(x.view(x.shape[0], 4, 4)) + self.position
            return self.head(self.encoder(tokens).mean(dim=1))

    return Encoder()


def train(logdir, name, model, optimizer, *, seed=0, steps=STEPS, before_step=None,
          loss_value=None):
    """Trains `model` and logs it with watch(); returns nothing.

    Args:
      before_step: Called as `before_step(step, model)` after backward and
        before the optimizer step (to plant a fault at a known step).
      loss_value: Maps `(step, loss)` to the value logged as "loss/train".
    """
    import torch
    from torch import nn

    from torch_visualization import SummaryWriter

    torch.manual_seed(seed)
    # Tiny models: one thread is faster, and the test machine is shared.
    torch.set_num_threads(1)
    writer = SummaryWriter(os.path.join(logdir, name))
    handle = writer.watch(model, optimizer, log_every=LOG_EVERY,
                          class_names=[str(c) for c in range(CLASSES)])
    loss_fn = nn.CrossEntropyLoss()
    batches = _data(seed)
    for step in range(steps):
        x, y = next(batches)
        model.train()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        if before_step is not None:
            before_step(step, model)
        optimizer.step()
        if step % LOG_EVERY == 0:
            value = loss.item()
            writer.add_scalar("loss/train", loss_value(step, value) if loss_value else value, step)
    handle.remove()
    writer.close()


def _scaled(model, factor, layers):
    import torch

    with torch.no_grad():
        for index in layers:
            model[index].weight.mul_(factor)
    return model


def write_runs(logdir):
    """Trains every run under `logdir`; returns `{run: what was planted}`."""
    import torch

    planted = {}

    def run(name, model, make_optimizer, note=None, **kwargs):
        torch.manual_seed(0)
        train(logdir, name, model, make_optimizer(model), **kwargs)
        planted[name] = note

    # Healthy: four architectures, three optimizers.
    torch.manual_seed(0)
    run("healthy_mlp", mlp(), lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
    torch.manual_seed(0)
    run("healthy_cnn", cnn(), lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    torch.manual_seed(0)
    run("healthy_resnet", resnet(), lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3))
    torch.manual_seed(0)
    run("healthy_transformer", transformer(), lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3))

    # Faults.
    from torch import nn

    torch.manual_seed(0)
    run("vanishing", mlp(depth=10, width=32, act=nn.Sigmoid),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05))

    torch.manual_seed(0)
    run("exploding", _scaled(mlp(depth=5), 16.0, [2, 4, 6, 8]),
        lambda m: torch.optim.SGD(m.parameters(), lr=1e-6))

    def inject_nan(step, model):
        if step == NAN_STEP:
            model[2].weight.grad[0, 0] = math.nan

    torch.manual_seed(0)
    run("nan", mlp(), lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), before_step=inject_nan)

    torch.manual_seed(0)
    dead = mlp(depth=4)
    with torch.no_grad():
        dead[2].bias.fill_(-100.0)
    run("dead", dead, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))

    torch.manual_seed(0)
    run("frozen", mlp(), lambda m: torch.optim.Adam(
        [p for name, p in m.named_parameters() if not name.startswith("2.")], lr=1e-3))

    torch.manual_seed(0)
    run("lr_zero", mlp(), lambda m: torch.optim.SGD([
        {"params": [p for name, p in m.named_parameters() if not name.startswith("0.")]},
        {"params": list(m[0].parameters()), "lr": 0.0},
    ], lr=0.05))

    torch.manual_seed(0)
    run("huge_lr", mlp(), lambda m: torch.optim.Adam(m.parameters(), lr=0.5))

    torch.manual_seed(0)
    collapsed = mlp()
    with torch.no_grad():
        collapsed[4].bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0]))
    run("collapse", collapsed, lambda m: torch.optim.SGD(m.parameters(), lr=1e-3))

    # The same faults planted in the other architectures.
    torch.manual_seed(0)
    dead_cnn = cnn()
    with torch.no_grad():
        dead_cnn[5].bias.fill_(-100.0)  # the BatchNorm in front of ReLU "6"
    run("cnn_dead", dead_cnn, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))

    torch.manual_seed(0)
    run("cnn_frozen", cnn(), lambda m: torch.optim.SGD(
        [p for name, p in m.named_parameters() if not name.startswith("4.")], lr=0.05, momentum=0.9))

    torch.manual_seed(0)
    run("resnet_huge_lr", resnet(), lambda m: torch.optim.AdamW(m.parameters(), lr=1.0))

    def inject_nan_transformer(step, model):
        if step == NAN_STEP:
            model.encoder.layers[0].linear1.weight.grad[0, 0] = math.nan

    torch.manual_seed(0)
    run("transformer_nan", transformer(), lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3),
        before_step=inject_nan_transformer)

    torch.manual_seed(0)
    run("transformer_lr_zero", transformer(), lambda m: torch.optim.AdamW([
        {"params": [p for name, p in m.named_parameters() if not name.startswith("head.")]},
        {"params": list(m.head.parameters()), "lr": 0.0},
    ], lr=1e-3))

    torch.manual_seed(0)
    collapsed_transformer = transformer()
    with torch.no_grad():
        collapsed_transformer.head.bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0]))
    run("transformer_collapse", collapsed_transformer, lambda m: torch.optim.SGD(m.parameters(), lr=1e-3))

    def blow_up(step, value):
        return value if step < DIVERGE_STEP else 1e3 * 2.0 ** ((step - DIVERGE_STEP) / LOG_EVERY)

    torch.manual_seed(0)
    run("diverging_loss", mlp(), lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), loss_value=blow_up)

    # A GPT-style model: healthy, and with the two transformer faults.
    def run_gpt(name, model, note=None):
        train_gpt(logdir, name, model)
        planted[name] = note

    torch.manual_seed(0)
    run_gpt("healthy_gpt", gpt())
    torch.manual_seed(0)
    # QKᵀ times 20 instead of divided by √d_head (56x the usual logits).
    run_gpt("gpt_attention_collapse", gpt(attn_scale=20.0))
    torch.manual_seed(0)
    outliers = gpt()
    outliers.blocks[0].outlier = (OUTLIER_STEP, 5, OUTLIER_GAIN)
    run_gpt("gpt_outliers", outliers)
    return planted


# -- a small GPT-style model (attention and residual-stream findings) ---------

GPT_STEPS = 200
GPT_CONTEXT = 64
GPT_VOCAB = 17  # 16 letters and the space (id 0)
# From this step on, channel 5 of blocks.0's output at the first position
# is multiplied by OUTLIER_GAIN (a massive activation as Sun et al., 2024
# describe them: one feature of one token). A whole channel scaled up would
# give max|x| / rms of only ~3.5 sqrt(d_model) (~20 here): the ratio is
# bounded by sqrt(elements / outliers).
OUTLIER_STEP = 100
OUTLIER_GAIN = 1000.0


def _text(seed, batch=8, context=GPT_CONTEXT):
    """An endless stream of `[batch, context + 1]` character ids: words of a
    made-up 40-word language joined by spaces (word-internal characters are
    predictable from the previous ones, so the heads have something to learn)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 7, (40,), generator=generator)
    words = [torch.randint(1, GPT_VOCAB, (int(n),), generator=generator) for n in lengths]
    # Zipf-like word frequencies, as in real text.
    weights = 1.0 / torch.arange(1, len(words) + 1, dtype=torch.float64)
    while True:
        rows = []
        for _ in range(batch):
            ids = []
            while len(ids) < context + 1:
                ids += words[int(torch.multinomial(weights, 1, generator=generator))].tolist() + [0]
            start = int(torch.randint(0, len(ids) - context, (1,), generator=generator))
            rows.append(ids[start:start + context + 1])
        yield torch.tensor(rows)


def gpt(attn_scale=None, d_model=32, heads=4, layers=2, mha=False):
    """A pre-LayerNorm GPT (causal self-attention through SDPA, or through
    `nn.MultiheadAttention` with a causal mask when `mha`), blocks in an
    `nn.ModuleList`, the output head tied to the token embedding.

    Args:
      attn_scale: Multiplies QKᵀ (the usual 1/√d_head when None).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.scale = attn_scale
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)

        def forward(self, x):
            batch, seq, _ = x.shape
            q, k, v = self.qkv(x).view(batch, seq, 3, heads, -1).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            return self.proj(out.transpose(1, 2).reshape(batch, seq, d_model))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d_model)
            self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True) if mha \
                else CausalSelfAttention()
            self.ln2 = nn.LayerNorm(d_model)
            self.fc1 = nn.Linear(d_model, 4 * d_model)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * d_model, d_model)
            # (step, channel, gain) set by a fault run: from that step on one
            # channel of the output's first position is multiplied by gain.
            self.outlier = None
            self.step = 0

        def forward(self, x):
            h = self.ln1(x)
            if mha:
                mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
                h = self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            else:
                h = self.attn(h)
            x = x + h
            x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
            if self.outlier is not None and self.training and self.step >= self.outlier[0]:
                gain = torch.ones_like(x)
                gain[:, 0, self.outlier[1]] = self.outlier[2]
                x = x * gain
            return x

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb = nn.Embedding(GPT_VOCAB, d_model)
            self.pos_emb = nn.Parameter(torch.randn(GPT_CONTEXT, d_model) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, GPT_VOCAB, bias=False)
            self.head.weight = self.tok_emb.weight

        def forward(self, idx):
            x = self.tok_emb(idx) + self.pos_emb[: idx.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return GPT()


def train_gpt(logdir, name, model, *, lr=3e-3, warmup=30, steps=GPT_STEPS, seed=0):
    """Trains a `gpt()` on `_text` with AdamW (linear warm-up, then a
    constant learning rate) under watch(); logs "loss/train"."""
    import torch
    import torch.nn.functional as F

    from torch_visualization import SummaryWriter

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    writer = SummaryWriter(os.path.join(logdir, name))
    # The mean softmax over the vocabulary (a pie of 17 imbalanced classes:
    # spaces are a fifth of the text) and the logits' entropy and top value.
    handle = writer.watch(model, optimizer, log_every=LOG_EVERY, outputs="classes")
    batches = _text(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        for block in model.blocks:
            block.step = step
        ids = next(batches)
        model.train()
        optimizer.zero_grad()
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        if step % LOG_EVERY == 0:
            writer.add_scalar("loss/train", loss.item(), step)
    handle.remove()
    writer.close()
