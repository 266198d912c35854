"""The Hugging Face Trainer callback on the real package: a tiny BERT on CPU.

The model is built from a config (no download); the data is random tokens.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers (test extra) is not installed")

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from torch_visualization import read  # noqa: E402
from torch_visualization.integrations.huggingface import (  # noqa: E402
    TorchVisualizationCallback,
    class_names_of,
)

LABELS = {0: "neg", 1: "neu", 2: "pos"}
STEPS = 6
ACCUMULATE = 2
LOG_EVERY = 2


def _model():
    config = BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, size=32, length=8):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 30, (size, length), generator=generator)
        self.labels = torch.randint(0, 3, (size,), generator=generator)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                "labels": self.labels[i]}


class _RecordGradients(TrainerCallback):
    """The gradient norms the optimizer is about to use, by global step."""

    def __init__(self):
        self.norms = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.norms[state.global_step] = [
            p.grad.norm().item() for p in model.parameters() if p.requires_grad
        ]


def _train(tmp_path, **arg_overrides):
    record = _RecordGradients()
    callback = TorchVisualizationCallback()
    options = dict(
        output_dir=str(tmp_path / "out"), max_steps=STEPS, per_device_train_batch_size=4,
        gradient_accumulation_steps=ACCUMULATE, logging_steps=LOG_EVERY, report_to="none",
        save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )
    options.update(arg_overrides)
    model = _model()
    trainer = Trainer(model=model, args=TrainingArguments(**options), train_dataset=_Tokens(),
                      callbacks=[callback, record])
    trainer.train()
    return model, callback, record


def test_trainer_scalars_and_tab_share_one_run(tmp_path):
    model, callback, record = _train(tmp_path)
    run_dir = callback.logging_dir
    # The TensorBoard integration's own default: <output_dir>/runs/<date>_<host>.
    assert os.path.dirname(run_dir) == str(tmp_path / "out" / "runs")
    data = read(os.path.dirname(run_dir))
    assert list(data) == [os.path.basename(run_dir)]
    tags = data[os.path.basename(run_dir)]
    scalars = event_accumulator.EventAccumulator(run_dir)
    scalars.Reload()
    assert "train/loss" in scalars.Tags()["scalars"]

    # Optimizer steps (6), not the 12 micro-batches; every logging_steps.
    norms = tags["gradients/norm"]
    assert norms.steps == list(range(0, STEPS, LOG_EVERY))
    assert norms.labels == [n for n, p in model.named_parameters() if p.requires_grad]
    for step, values in zip(norms.steps, norms.values):
        np.testing.assert_allclose(values, record.norms[step], rtol=1e-5, err_msg=str(step))

    # Sequence classification: the output pie is labelled with id2label.
    pie = tags["outputs/classes"]
    assert pie.labels == ["neg", "neu", "pos"]
    assert pie.steps == norms.steps
    for values in pie.values:
        assert values.sum() == pytest.approx(1.0, rel=1e-5)
    # Training is over: hooks are gone.
    assert callback.tb_writer is None
    assert not model._forward_hooks


def test_tensorboard_logging_dir_variable_is_honoured(tmp_path, monkeypatch):
    target = tmp_path / "tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(target))
    _train(tmp_path, max_steps=2, gradient_accumulation_steps=1, logging_steps=1)
    data = read(str(tmp_path))
    assert list(data) == ["tb"]
    assert data["tb"]["gradients/norm"].steps == [0, 1]


def test_report_to_tensorboard_as_well_warns(tmp_path):
    with pytest.warns(UserWarning, match="written twice"):
        _train(tmp_path, max_steps=1, gradient_accumulation_steps=1, report_to="tensorboard")


class _Lm(torch.utils.data.Dataset):
    def __init__(self, size=16, length=12):
        self.ids = torch.randint(0, 40, (size, length), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_gpt2_from_a_config_logs_attention_and_sequence_outputs(tmp_path, implementation):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=40, n_positions=16,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(config, attn_implementation=implementation)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=4,
        logging_steps=2, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    callback = TorchVisualizationCallback()
    Trainer(model=model, args=args, train_dataset=_Lm(), callbacks=[callback]).train()
    (tags,) = read(str(tmp_path / "out" / "runs")).values()
    for layer in range(2):
        maps = tags["attention/transformer.h.%d.attn" % layer]
        assert maps.steps == [0, 2] and maps.values[0].shape == (2, 12, 12)
        # Causal: nothing attends to a later position; every row sums to 1.
        assert np.allclose(np.triu(maps.values[0], k=1), 0)
        np.testing.assert_allclose(maps.values[0].sum(-1), 1, rtol=1e-5)
    assert len(tags["attention/entropy"].labels) == 4
    assert tags["outputs/statistics"].labels == ["entropy", "max_logit"]
    # The vocabulary (40 > 32 classes): the likeliest 31 and "other".
    assert tags["outputs/classes"].labels[-1] == "other"
    assert "weights/lm_head.weight" not in tags  # tied to the token embedding


def _tiny_tokenizer():
    """A byte-level BPE tokenizer trained here, offline (no downloads)."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the cat sat on the mat. a dog ran home"] * 20, trainers.BpeTrainer(
        vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


class _Text(torch.utils.data.Dataset):
    def __init__(self, tokenizer, length=10):
        lines = ["the cat sat on the mat and the dog ran home", "a dog sat on a cat at home today",
                 "the mat ran home on a dog and a cat", "home is the cat that sat on the mat"]
        self.ids = [torch.tensor(tokenizer.encode(line)[:length]) for line in lines] * 2
        assert all(len(ids) == length for ids in self.ids)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_gpt2_with_the_trainers_tokenizer_logs_tokens_per_step(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _tiny_tokenizer()
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(tokenizer), n_positions=16,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")
    seen = []  # the first example's ids of every forward (one per step here)
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()), with_kwargs=True)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    Trainer(model=model, args=args, train_dataset=_Text(tokenizer), processing_class=tokenizer,
            callbacks=[TorchVisualizationCallback()]).train()
    (tags,) = read(str(tmp_path / "out" / "runs")).values()
    series = tags["attention/tokens"]
    assert series.steps == [0, 1, 2] and len(seen) == 3
    want = [[tokenizer.decode([i]) for i in ids] for ids in seen]
    assert [list(v) for v in series.values] == want
    assert len({tuple(w) for w in want}) > 1  # the batches differ, so do the tokens
    assert any(t.startswith(" ") for t in want[0])  # byte-level spaces made readable


def test_tokenizer_of():
    from torch_visualization.integrations.huggingface import tokenizer_of

    tokenizer = _tiny_tokenizer()
    assert tokenizer_of(tokenizer) is tokenizer

    class Processor:  # a multimodal processor holds its tokenizer
        def __init__(self):
            self.tokenizer = tokenizer

    assert tokenizer_of(Processor()) is tokenizer
    assert tokenizer_of(object()) is None and tokenizer_of(None) is None


def test_class_names_of():
    assert class_names_of(_model()) == ["neg", "neu", "pos"]
    regression = _model()
    regression.config.problem_type = "regression"
    assert class_names_of(regression) is None
    assert class_names_of(torch.nn.Linear(2, 2)) is None
    from transformers import GPT2Config, GPT2LMHeadModel

    # Every config has id2label (two labels by default): not a classifier.
    assert class_names_of(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2))) is None


def test_bad_arguments():
    with pytest.raises(TypeError, match="tb_writer"):
        TorchVisualizationCallback(tb_writer=object())
    with pytest.raises(ValueError, match="log_every"):
        TorchVisualizationCallback(log_every=0)
