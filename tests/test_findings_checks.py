"""The pure checks of the findings engine on synthetic series, both directions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from torch_visualization.findings import Finding, Thresholds, checks
from torch_visualization.findings.checks import Series

TH = Thresholds()
STEPS = np.arange(0, 100, 10)


def bars(tag, columns, steps=STEPS):
    """Bars series from `{label: value or per-step list}`."""
    labels = list(columns)
    values = np.array([
        np.broadcast_to(np.asarray(columns[label], dtype=np.float64), (len(steps),))
        for label in labels
    ]).T
    return Series.of(tag, labels, steps, values)


def norms(columns, steps=STEPS):
    return bars("gradients/norm", columns, steps)


# -- vanishing / exploding ------------------------------------------------


def test_vanishing_layers_are_found_relative_to_the_network():
    norm = norms({"0.weight": 1e-9, "0.bias": 2e-9, "1.weight": 0.3, "1.bias": 0.1,
                  "2.weight": 0.5, "2.bias": 0.2})
    (finding,) = checks.vanishing_gradients(norm, norm, TH)
    assert finding.kind == "vanishing_gradients"
    assert finding.labels == ("0.weight", "0.bias")
    # 10^8 below the typical parameter: that layer cannot learn at all.
    assert finding.severity == "error"
    assert (finding.first_step, finding.last_step) == (0, 90)
    assert finding.view == {"tag": "gradients/norm", "step": 0}


def test_a_layer_is_not_vanishing_because_another_one_explodes():
    exploding = [0.5] * 5 + [1e5] * 5
    norm = norms({"a.weight": 0.01, "b.weight": 0.02, "c.weight": 0.03, "d.weight": exploding})
    assert checks.vanishing_gradients(norm, norm, TH) == []
    (finding,) = checks.exploding_gradients(norm, TH)
    assert (finding.labels, finding.first_step, finding.severity) == (("d.weight",), 50, "error")


def test_healthy_spread_of_gradient_sizes_is_silent():
    rng = np.random.default_rng(0)
    columns = {"l%d.%s" % (i, p): 10 ** rng.uniform(-3, -1, len(STEPS))
               for i in range(6) for p in ("weight", "bias")}
    norm = norms(columns)
    assert checks.vanishing_gradients(norm, norm, TH) == []
    assert checks.exploding_gradients(norm, TH) == []


def test_a_bias_cancelled_by_batchnorm_is_not_a_vanishing_layer():
    # A bias in front of BatchNorm has a zero gradient by construction.
    norm = norms({"conv.weight": 0.2, "conv.bias": 1e-9, "bn.weight": 0.04, "bn.bias": 0.03})
    assert checks.vanishing_gradients(norm, norm, TH) == []


def test_vanishing_less_than_a_million_times_below_is_a_warning():
    norm = norms({"a.weight": 3e-6, "b.weight": 0.3, "c.weight": 0.2, "d.weight": 0.4})
    (finding,) = checks.vanishing_gradients(norm, norm, TH)
    assert finding.labels == ("a.weight",) and finding.severity == "warning"
    assert 1e-6 < finding.value < 1e-4


def test_a_vanishing_layer_that_stopped_learning_is_an_error():
    # 10^5 below the typical parameter; whether it still learns decides.
    norm = norms({"a.weight": 3e-6, "b.weight": 0.3, "c.weight": 0.2, "d.weight": 0.4})
    sgd = ratios({"a.weight": 1e-9, "b.weight": 1e-3, "c.weight": 1e-3, "d.weight": 1e-3})
    (stalled,) = checks.vanishing_gradients(norm, norm, TH, ratio=sgd)
    assert stalled.severity == "error"
    assert stalled.message.endswith("a.weight does not learn (updates 1e-09 of its norm, below float32's resolution)")
    # Adam rescales the small gradient: the layer still moves.
    adam = ratios({"a.weight": 1e-3, "b.weight": 1e-3, "c.weight": 1e-3, "d.weight": 1e-3})
    far = norms({"a.weight": 1e-9, "b.weight": 0.3, "c.weight": 0.2, "d.weight": 0.4})
    (moving,) = checks.vanishing_gradients(far, far, TH, ratio=adam)
    assert moving.severity == "warning" and "does not learn" not in moving.message


def test_vanishing_needs_persist_steps_in_a_row():
    blip = [0.3, 0.3, 1e-9, 0.3, 0.3, 1e-9, 1e-9, 0.3, 0.3, 0.3]
    norm = norms({"a.weight": blip, "b.weight": 0.3, "c.weight": 0.2})
    assert checks.vanishing_gradients(norm, norm, TH) == []
    falls = [0.3] * 4 + [1e-9] * 6
    (finding,) = checks.vanishing_gradients(norms({"a.weight": falls, "b.weight": 0.3, "c.weight": 0.2}),
                                            norms({"a.weight": falls, "b.weight": 0.3, "c.weight": 0.2}), TH)
    assert (finding.labels, finding.first_step) == (("a.weight",), 40)


def test_a_network_whose_gradients_all_shrink_together_is_not_vanishing():
    shrinking = 10.0 ** -np.arange(len(STEPS))  # converging: every layer 1e9 smaller
    norm = norms({"a.weight": shrinking, "b.weight": 2 * shrinking, "c.weight": 0.5 * shrinking})
    assert checks.vanishing_gradients(norm, norm, TH) == []


def test_exploding_against_own_start_and_not_from_a_zero_start():
    grows = [0.01, 0.01, 0.01, 0.02, 0.5, 200.0, 300.0, 300.0, 300.0, 300.0]
    (finding,) = checks.exploding_gradients(norms({"a.weight": grows, "b.weight": 0.01}), TH)
    assert (finding.labels, finding.first_step) == (("a.weight",), 50)
    # Zero at first (a zero-initialised head upstream), then ordinary: no explosion.
    wakes = [0.0, 0.0, 0.5, 0.6, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert checks.exploding_gradients(norms({"a.weight": wakes, "b.weight": 0.3}), TH) == []


def test_gradient_scale_prefers_mean_abs():
    norm = norms({"big.weight": 10.0, "small.weight": 0.01})
    mean_abs = bars("gradients/mean_abs", {"big.weight": 1e-3, "small.weight": 1e-3})
    assert checks.gradient_scale(norm, mean_abs) is not norm
    assert checks.gradient_scale(norm, None) is norm


# -- updates ------------------------------------------------------------------


def ratios(columns, steps=STEPS):
    return bars("updates/ratio", columns, steps)


def test_zero_initialised_parameters_are_not_large_updates():
    # Old logs: Inf/NaN at step 0 for a parameter that starts at zero; then
    # LayerNorm biases with tiny norms move 0.2-0.5 of their norm per step.
    ln_bias = [math.inf, 0.5, 0.45, 0.4, 0.35, 0.3, 0.3, 0.25, 0.25, 0.2]
    nan_bias = [math.nan] + [0.3] * 9
    update = ratios({"fc.weight": 5e-3, "fc.bias": 8e-3, "ln.weight": 1e-3, "ln.bias": ln_bias,
                     "head.bias": nan_bias})
    ndims = {"fc.weight": 2, "fc.bias": 1, "ln.weight": 1, "ln.bias": 1, "head.bias": 1}
    assert checks.large_updates(update, TH, ndims=ndims) == []


def test_a_zero_initialised_matrix_settling_is_not_a_large_update():
    # LoRA-style zero init at log_every=1: ratio 1, 1/2, 1/3, ... as its norm grows.
    settling = [math.inf] + [1.0 / k for k in range(1, 10)]
    update = ratios({"a.weight": 3e-3, "b.weight": 4e-3, "lora_b.weight": settling},
                    steps=np.arange(10))
    assert checks.large_updates(update, TH, ndims={"a.weight": 2, "b.weight": 2, "lora_b.weight": 2}) == []


def test_a_huge_learning_rate_is_a_large_update_at_once():
    wrecked = [6.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    update = ratios({"0.weight": wrecked, "0.bias": wrecked, "1.weight": wrecked})
    (finding,) = checks.large_updates(update, TH, ndims={"0.weight": 2, "0.bias": 1, "1.weight": 2})
    assert (finding.first_step, finding.last_step, finding.severity) == (0, 0, "error")
    assert set(finding.labels) == {"0.weight", "1.weight"}
    assert finding.value == 6.0


def test_one_parameter_with_lasting_huge_updates():
    update = ratios({"a.weight": 2e-3, "b.weight": 3e-3, "c.bias": [0.1, 0.1, 5.0, 5.0, 5.0, 4.0, 0.1, 0.1, 0.1, 0.1]})
    (finding,) = checks.large_updates(update, TH, ndims={"a.weight": 2, "b.weight": 2, "c.bias": 1})
    assert (finding.labels, finding.first_step, finding.last_step) == (("c.bias",), 20, 50)


def test_frozen_parameters_get_gradients_but_never_change():
    norm = norms({"a.weight": 0.1, "b.weight": 0.2, "unused.weight": 0.0})
    update = ratios({"a.weight": 1e-3, "b.weight": 0.0, "unused.weight": 0.0})
    (finding,) = checks.frozen_parameters(norm, update, TH)
    # No gradient at all is not "frozen".
    assert (finding.labels, finding.first_step, finding.severity) == (("b.weight",), 0, "warning")
    assert finding.view == {"tag": "updates/ratio", "view": "overtime"}


def test_parameters_left_out_of_the_optimizer_whose_weights_stay_put():
    # watch() leaves parameters no watched optimizer steps out of updates/ratio.
    norm = norms({"a.weight": 0.1, "b.weight": 0.2, "c.weight": 0.3, "d.weight": 0.0})
    update = ratios({"a.weight": 1e-3})
    unchanged = {"b.weight": (20, 90), "d.weight": (0, 90)}
    (finding,) = checks.frozen_parameters(norm, update, TH, unchanged=unchanged)
    # c.weight changed (another optimizer steps it); d.weight has no gradient.
    assert (finding.labels, finding.first_step, finding.last_step) == (("b.weight",), 20, 90)
    assert finding.view == {"tag": "gradients/norm", "view": "overtime"}


def test_warm_up_from_zero_and_later_unfreezing_are_not_frozen():
    norm = norms({"a.weight": 0.1, "b.weight": 0.2})
    warm_up = ratios({"a.weight": [0.0] + [1e-3] * 9, "b.weight": [0.0] * 5 + [1e-3] * 5})
    assert checks.frozen_parameters(norm, warm_up, TH) == []


def test_vanishing_underflow_is_not_reported_as_frozen():
    norm = norms({"a.weight": 1e-12, "b.weight": 0.2, "c.weight": 0.3})
    update = ratios({"a.weight": 0.0, "b.weight": 1e-3, "c.weight": 1e-3})
    exclude = checks.underflow_labels(norm, norm, TH)
    assert exclude == {"a.weight"}
    assert checks.frozen_parameters(norm, update, TH, exclude=exclude) == []


def test_align_uses_common_steps_and_labels():
    a = norms({"x": [1, 2, 3], "y": [4, 5, 6]}, steps=np.array([0, 10, 20]))
    b = ratios({"y": [7, 8], "x": [9, 10]}, steps=np.array([10, 20]))
    a2, b2 = checks.align(a, b)
    assert list(a2.steps) == [10, 20] and a2.labels == b2.labels == ("x", "y")
    np.testing.assert_array_equal(b2.values, [[9, 7], [10, 8]])


# -- activations and outputs ------------------------------------------------


def test_dead_units_need_nearly_all_zeros_for_persist_steps():
    zero = bars("activations/zero_fraction", {
        "relu1": 0.5, "relu2": 1.0, "gelu": 0.0, "skipped": math.nan,
        "blip": [0.2, 1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2],
    })
    (finding,) = checks.dead_units(zero, TH)
    assert (finding.labels, finding.first_step, finding.severity) == (("relu2",), 0, "error")
    assert checks.dead_units(bars("z", {"relu": 0.96}), Thresholds(dead=0.99)) == []


def pies(rows, labels=("a", "b", "c", "d")):
    return Series.of("outputs/classes", labels, STEPS[: len(rows)], np.asarray(rows, dtype=np.float64))


def test_outputs_concentrated_on_one_class_up_to_the_end():
    rows = [[0.25] * 4] * 3 + [[0.97, 0.01, 0.01, 0.01]] * 7
    (finding,) = checks.class_collapse(pies(rows), TH)
    assert (finding.labels, finding.first_step, finding.last_step) == (("a",), 30, 90)
    assert finding.view == {"tag": "outputs/classes", "step": 90}
    assert "class a" in finding.message


def test_collapse_labels_only_the_class_collapsed_onto():
    # Collapsed at every step, onto another class on the way: the class of
    # the end is the one concerned; the message names the earlier one.
    rows = [[0.01, 0.97, 0.01, 0.01]] * 3 + [[0.01, 0.01, 0.97, 0.01]] * 7
    (finding,) = checks.class_collapse(pies(rows, labels=("7", "8", "3", "5")), TH)
    assert finding.labels == ("3",) and finding.first_step == 0
    assert "class 3: 97% at step 90" in finding.message and "(earlier onto 8)" in finding.message


def test_an_imbalanced_binary_pie_is_not_collapse():
    # 80/20 data: the model's mean softmax reflects it. Without a confusion
    # matrix only 95% or more, sustained, is a collapse.
    assert checks.class_collapse(pies([[0.8, 0.2]] * 10, labels=("no", "yes")), TH) == []
    assert checks.class_collapse(pies([[0.93, 0.07]] * 10, labels=("no", "yes")), TH) == []
    (finding,) = checks.class_collapse(pies([[0.99, 0.01]] * 10, labels=("no", "yes")), TH)
    assert finding.labels == ("no",)
    # Not sustained: 95% at the last two logged steps only (persist is 3).
    brief = [[0.8, 0.2]] * 8 + [[0.99, 0.01]] * 2
    assert checks.class_collapse(pies(brief, labels=("no", "yes")), TH) == []


def test_early_concentration_that_spreads_out_is_not_collapse():
    rows = [[0.97, 0.01, 0.01, 0.01]] * 3 + [[0.3, 0.2, 0.25, 0.25]] * 7
    assert checks.class_collapse(pies(rows)) == []


def test_confusion_collapse_accounts_for_the_true_class_shares():
    # 80% of the data is class 0 and the model predicts class 0 for 85%:
    # an imbalanced data set, not a collapse.
    imbalanced = np.array([[[70, 10], [15, 5]]] * 4, dtype=float)
    series = Series.of("eval/confusion", ("x", "y"), STEPS[:4], imbalanced)
    assert checks.class_collapse(series) == []
    collapsed = np.array([[[25, 0, 0], [30, 0, 0], [45, 0, 0]]] * 4, dtype=float)
    (finding,) = checks.class_collapse(Series.of("eval/confusion", ("p", "q", "r"), STEPS[:4], collapsed))
    assert finding.labels == ("p",) and finding.message.startswith("predictions")


# -- transformers: attention entropy and massive activations -------------------------


def entropies(columns, steps=STEPS):
    return bars("attention/entropy", columns, steps)


def test_uniform_entropy_of_causal_and_full_maps():
    assert checks.uniform_entropy(4, 4, False) == pytest.approx(math.log(4))
    assert checks.uniform_entropy(4, 4, True) == pytest.approx((math.log(2) + math.log(3) + math.log(4)) / 4)
    # Queries at the end of a longer key sequence (a cache): rows see 3..6 keys.
    assert checks.uniform_entropy(4, 6, True) == pytest.approx(np.mean(np.log([3, 4, 5, 6])))


def test_attention_collapse_names_the_heads_and_first_step():
    healthy, falls = [3.0] * 10, [3.0] * 4 + [0.2, 0.1, 0.1, 0.05, 0.05, 0.05]
    heads = {"b0.attn/head0": falls, "b0.attn/head1": falls, "b0.attn/head2": healthy,
             "b1.attn/head0": healthy, "b1.attn/head1": healthy}
    shapes = {"b0.attn": (64, 64, True), "b1.attn": (64, 64, True)}
    (finding,) = checks.attention_collapse(entropies(heads), shapes, TH)
    assert finding.kind == "attention_collapse" and finding.severity == "warning"
    assert set(finding.labels) == {"b0.attn/head0", "b0.attn/head1"}
    assert (finding.first_step, finding.last_step) == (40, 90)
    assert finding.value == pytest.approx(0.05 / checks.uniform_entropy(64, 64, True))
    assert "it started at 3.00" in finding.message and "from step 40" in finding.message


def test_one_sharp_head_and_a_noisy_example_are_not_collapse():
    sharp = [3.0, 2.0, 1.0] + [0.05] * 7  # a previous-token head: specialised
    blip = [3.0, 3.0, 0.1, 3.0, 0.1, 0.1, 3.0, 3.0, 3.0, 3.0]  # never 3 steps in a row
    heads = {"a/head0": sharp, "a/head1": 3.0, "a/head2": 2.8, "a/head3": 2.9,
             "b/head0": blip, "b/head1": blip}
    assert checks.attention_collapse(entropies(heads), {"a": (64, 64, True), "b": (64, 64, True)}, TH) == []


def test_causal_maps_are_judged_against_a_causal_uniform_map():
    # 1.1 nats over 64 keys: 26% of ln(64), but 34% of a uniform causal map's.
    heads = {"a/head0": 1.1, "a/head1": 1.1}
    assert checks.attention_collapse(entropies(heads), {"a": (64, 64, True)}, TH) == []
    (finding,) = checks.attention_collapse(entropies(heads), {"a": (64, 64, False)}, TH)
    assert finding.labels == ("a/head0", "a/head1")
    # Heads of a module whose map shape is unknown are not judged.
    assert checks.attention_collapse(entropies(heads), {}, TH) == []


def test_every_head_at_exactly_zero_is_a_nan_map_not_collapse():
    # watch() logs 0 for a map without a finite row (NaN weights).
    heads = {"a/head0": [2.0] * 5 + [0.0] * 5, "a/head1": [2.1] * 5 + [0.0] * 5}
    assert checks.attention_collapse(entropies(heads), {"a": (16, 16, False)}, TH) == []


def test_massive_activations_are_found_from_their_first_step():
    rms = bars("activations/rms", {"blocks.0": 1.0, "blocks.1": 2.0, "blocks.0.act": 0.5})
    top = bars("activations/max_abs", {
        "blocks.0": [4.0] * 3 + [200.0] * 7, "blocks.1": [8.0] * 3 + [300.0] * 7, "blocks.0.act": 3.0,
    })
    (finding,) = checks.activation_outliers(top, rms, TH)
    assert finding.kind == "activation_outliers" and finding.severity == "warning"
    # The first module to show it first (blocks.1 inherits it); then model order.
    assert finding.labels == ("blocks.0", "blocks.1")
    assert (finding.first_step, finding.last_step) == (30, 90)
    assert finding.value == 200.0
    assert finding.view == {"tag": "activations/max_abs", "step": 30}
    assert "200 times its rms" in finding.message and "also in blocks.1" in finding.message


def test_healthy_and_sparse_outputs_are_not_outliers():
    rms = bars("activations/rms", {"blocks.0": 1.0, "relu": 0.01, "brief": 1.0})
    top = bars("activations/max_abs", {
        "blocks.0": 8.0,  # the usual few
        "relu": 1.0,  # ratio 100: 99.9% of its outputs are exact zeros
        "brief": [5.0, 100.0, 100.0, 5.0, 100.0, 5.0, 5.0, 5.0, 5.0, 5.0],  # never 3 steps
    })
    # Activation modules (the zero-fraction labels) are sparse by design.
    zero = bars("activations/zero_fraction", {"relu": 0.999})
    assert checks.activation_outliers(top, rms, TH, zero_fraction=zero) == []
    (finding,) = checks.activation_outliers(top, rms, TH)
    assert finding.labels == ("relu",)


# -- loss -----------------------------------------------------------------------


def loss(values):
    return Series.of("loss/train", (), np.arange(len(values)) * 10, np.asarray(values, dtype=np.float64))


def test_a_noisy_decreasing_loss_is_not_divergence():
    rng = np.random.default_rng(1)
    values = 2.0 * np.exp(-np.arange(50) / 10) + 1e-4 + rng.uniform(0, 0.05, 50)
    values[30] = 1.5  # one bad batch
    assert checks.loss_divergence(loss(values), TH) == []


def test_a_loss_that_blows_up_or_becomes_nan():
    values = [2.0, 1.0, 0.5, 0.3, 0.2, 30.0, 300.0, 3000.0]
    (finding,) = checks.loss_divergence(loss(values), TH)
    assert (finding.first_step, finding.last_step, finding.severity) == (50, 70, "error")
    (nan,) = checks.loss_divergence(loss([2.0, 1.0, math.nan, math.nan]), TH)
    assert (nan.first_step, nan.last_step) == (20, 30)
    assert "NaN" in nan.message and nan.view == {"tag": "loss/train", "view": "overtime"}


@pytest.mark.parametrize("tag", ["loss", "loss/train", "val_loss"])
def test_loss_messages_read_well_for_any_tag(tag):
    (nan,) = checks.loss_divergence(Series.of(tag, (), [0, 10, 20], [2.0, 1.0, math.nan]), TH)
    assert nan.message.startswith(tag + " became NaN at step 20")
    (up,) = checks.loss_divergence(Series.of(tag, (), np.arange(6) * 10, [2.0, 1.0, 0.5, 50, 500, 5000]), TH)
    assert up.message.startswith(tag + " diverged: ")
    assert "loss loss" not in nan.message + up.message


def test_a_negative_loss_that_climbs_back_diverges():
    values = [-1.0, -2.0, -3.0, -4.0, -4.0, 50.0, 40.0, 80.0]
    (finding,) = checks.loss_divergence(loss(values), TH)
    assert finding.first_step == 50
    assert "up from its minimum -4" in finding.message


# -- non-finite -------------------------------------------------------------------


def test_nonfinite_names_the_first_parameters_and_step():
    norm = norms({"a": [0.1] * 6 + [math.nan] * 4, "b": [0.1] * 3 + [math.inf] * 7, "c": 0.1})
    counts = bars("gradients/nonfinite", {"a": [0] * 6 + [5] * 4, "b": [0] * 3 + [1] * 7, "c": 0})
    (finding,) = checks.nonfinite([counts, norm], what="gradients", counts={"gradients/nonfinite"})
    assert (finding.labels, finding.first_step, finding.last_step) == (("b", "a"), 30, 90)
    assert finding.tag == "gradients/nonfinite" and "first: b" in finding.message
    assert checks.nonfinite([norms({"a": 0.1})], what="gradients") == []


# -- the model -----------------------------------------------------------------------


def test_to_json_is_strict_json_with_non_finite_as_strings():
    finding = Finding("nonfinite", "error", "t", ("a",), 1, 2, "m", {"tag": "t", "step": 1}, math.inf)
    text = json.dumps(finding.to_json(), allow_nan=False)
    assert json.loads(text)["value"] == "Infinity"
    assert json.loads(json.dumps(Finding("x", "warning", "t", (), 0, 0, "m", {}).to_json()))["value"] == "NaN"


@pytest.mark.parametrize("kwargs, error, text", [
    ({"low": 5.0, "high": 1.0}, ValueError, "must not exceed"),
    ({"dead": -1.0}, ValueError, "dead must be >= 0"),
    ({"ratio": math.nan}, ValueError, "ratio must be finite"),
    ({"persist": 0}, ValueError, "persist"),
    ({"dead": "x"}, TypeError, "dead must be a number"),
    ({"entropy": 1.5}, ValueError, "entropy is a fraction"),
    ({"collapse": 2.0}, ValueError, "collapse is a fraction"),
    ({"outlier": 1.0}, ValueError, "outlier must be > 1"),
])
def test_bad_thresholds_are_named(kwargs, error, text):
    with pytest.raises(error, match=text):
        Thresholds(**kwargs)


def test_series_of_rejects_mismatched_steps():
    with pytest.raises(ValueError, match="tag 't': 2 steps"):
        Series.of("t", (), [0, 1], np.zeros(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        Series.of("t", (), [1, 0], np.zeros(2))
