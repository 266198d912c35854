"""The findings engine on real training runs, and the /findings route.

Healthy runs of four architectures must give no findings at all; each
planted fault must be found with the right kind, layer and first step
(within one logging interval). The engine reads through TensorBoard's data
provider; the route is checked under both loaders and must agree with the
engine (one implementation).
"""

from __future__ import annotations

import json
import time

import pytest
from werkzeug.test import Client

import findings_runs
from conftest import MANY_STEPS, make_tensorboard, make_wsgi_app, tensorboard_server
from findings_runs import DIVERGE_STEP, LOG_EVERY, NAN_STEP, OUTLIER_STEP
from torch_visualization import findings
from torch_visualization.tb_plugin import listing

PREFIX = "/data/plugin/torch_visualization"
HEALTHY = ("healthy_mlp", "healthy_cnn", "healthy_resnet", "healthy_transformer", "healthy_gpt")
GPT_HEADS = {"blocks.%d.attn/head%d" % (block, head) for block in range(2) for head in range(4)}


@pytest.fixture(scope="module")
def runs_logdir(tmp_path_factory):
    """Every healthy and faulty run, trained once for this module."""
    logdir = tmp_path_factory.mktemp("findings")
    findings_runs.write_runs(str(logdir))
    return logdir


@pytest.fixture(scope="module")
def engine(runs_logdir):
    """`{run: [Finding]}` of the engine over the logdir (Python provider)."""
    return findings.diagnose_logdir(str(runs_logdir))


def by_kind(found):
    """`{kind: its first finding}` (findings come sorted: errors, then first step).

    Only `nonfinite` may come more than once (gradients, weights, each pie).
    """
    kinds = {}
    for finding in found:
        assert finding.kind not in kinds or finding.kind == "nonfinite", finding
        kinds.setdefault(finding.kind, finding)
    return kinds


@pytest.mark.parametrize("run", HEALTHY)
def test_healthy_runs_have_no_findings(engine, run):
    assert engine[run] == [], [f.message for f in engine[run]]


# run -> (kind, labels that must be there, the label named first or None,
# first step, other kinds the fault legitimately causes).
PLANTED = {
    "vanishing": ("vanishing_gradients", {"0.weight", "0.bias", "2.weight"}, None, 0, set()),
    "exploding": ("exploding_gradients", {"0.weight", "2.weight"}, "0.weight", 0, {"class_collapse"}),
    "nan": ("nonfinite", {"2.weight"}, "2.weight", NAN_STEP, {"loss_divergence"}),
    "dead": ("dead_units", {"3"}, "3", 0, set()),
    "frozen": ("frozen_parameters", {"2.weight", "2.bias"}, None, 0, set()),
    "lr_zero": ("frozen_parameters", {"0.weight", "0.bias"}, None, 0, set()),
    "huge_lr": ("large_updates", {"0.weight", "2.weight", "4.weight"}, None, 0, set()),
    "collapse": ("class_collapse", {"0"}, "0", 0, set()),
    "diverging_loss": ("loss_divergence", {"loss/train"}, "loss/train", DIVERGE_STEP, set()),
    "cnn_dead": ("dead_units", {"6"}, "6", 0, set()),
    "cnn_frozen": ("frozen_parameters", {"4.weight"}, "4.weight", 0, set()),
    "resnet_huge_lr": ("large_updates", {"0.weight", "1.fc1.weight", "5.weight"}, None, 0,
                       {"exploding_gradients", "class_collapse", "dead_units"}),
    "transformer_nan": ("nonfinite", {"encoder.layers.0.linear1.weight"},
                        "encoder.layers.0.linear1.weight", NAN_STEP, {"loss_divergence"}),
    "transformer_lr_zero": ("frozen_parameters", {"head.weight", "head.bias"}, None, 0, set()),
    "transformer_collapse": ("class_collapse", {"0"}, "0", 0, set()),
    "gpt_attention_collapse": ("attention_collapse", {"blocks.1.attn/head%d" % h for h in range(4)},
                               None, 0, set()),
    # The residual stream carries blocks.0's outlier into blocks.1.
    "gpt_outliers": ("activation_outliers", {"blocks.0", "blocks.1"}, "blocks.0", OUTLIER_STEP, set()),
}


@pytest.mark.parametrize("run", sorted(PLANTED))
def test_planted_fault_is_found_at_its_layer_and_step(engine, run):
    kind, labels, first_label, first_step, others = PLANTED[run]
    found = by_kind(engine[run])
    assert kind in found, [f.message for f in engine[run]]
    finding = found[kind]
    assert labels <= set(finding.labels), finding.labels
    if first_label is not None:
        assert finding.labels[0] == first_label
    assert first_step <= finding.first_step <= first_step + LOG_EVERY
    assert finding.first_step <= finding.last_step
    assert set(found) - {kind} <= others, [f.message for f in engine[run]]
    assert finding.severity in ("error", "warning")
    assert str(finding.first_step) in finding.message


def test_findings_name_only_the_layers_concerned(engine):
    assert set(by_kind(engine["frozen"])["frozen_parameters"].labels) == {"2.weight", "2.bias"}
    assert set(by_kind(engine["lr_zero"])["frozen_parameters"].labels) == {"0.weight", "0.bias"}
    vanishing = by_kind(engine["vanishing"])["vanishing_gradients"].labels
    # The last layers of the sigmoid stack learn: only the early ones vanish.
    assert "16.weight" not in vanishing and "18.weight" not in vanishing
    assert by_kind(engine["dead"])["dead_units"].labels == ("3",)
    # Only the class collapsed onto, not the others the pie shows.
    assert by_kind(engine["collapse"])["class_collapse"].labels == ("0",)
    assert set(by_kind(engine["gpt_outliers"])["activation_outliers"].labels) == {"blocks.0", "blocks.1"}


def test_transformer_findings_carry_their_numbers(engine):
    collapse = by_kind(engine["gpt_attention_collapse"])["attention_collapse"]
    # Every head has the fault; nearly all of them stay below the floor.
    assert set(collapse.labels) <= GPT_HEADS and len(collapse.labels) >= 6
    # Judged against a uniform causal map of 64 positions (mean ln(row length)).
    assert "of a uniform map's 3.21" in collapse.message
    assert 0 < collapse.value < 0.3
    assert collapse.view == {"tag": "attention/entropy", "view": "overtime"}
    outliers = by_kind(engine["gpt_outliers"])["activation_outliers"]
    assert outliers.value >= 30 and outliers.severity == "warning"
    assert outliers.view == {"tag": "activations/max_abs", "step": OUTLIER_STEP}
    assert "blocks.0 from step %d" % OUTLIER_STEP in outliers.message


def test_attention_maps_give_the_uniform_reference(tmp_path):
    """Shapes from the maps' metadata; causal when the stored (pooled) map is
    zero above its diagonal, read only for modules that look collapsed."""
    import numpy as np
    import torch

    from torch_visualization import SummaryWriter, pooling, summary
    from torch_visualization.findings import source

    def pooled(maps):
        return pooling.pool_stack(torch.as_tensor(maps, dtype=torch.float32), (64, 64)).numpy()

    causal = np.tril(np.ones((100, 100)))
    maps = {"causal": (pooled(np.stack([causal / causal.sum(1, keepdims=True)] * 2)), 0.5),
            "full": (pooled(np.full((2, 100, 100), 0.01)), 0.5),
            "calm": (pooled(np.full((2, 100, 100), 0.01)), 4.0)}
    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(3):
        for name, (values, entropy) in maps.items():
            writer.file_writer.add_summary(summary.attention_summary(
                "attention/" + name, values, original_shape=(2, 100, 100), reduction="mean_pool"), step)
        writer.add_gradient_bars("attention/entropy", {
            "%s/head%d" % (name, head): entropy for name, (_, entropy) in maps.items() for head in range(2)
        }, step)
    writer.close()
    data_provider, ctx, experiment_id = findings.logdir_provider(str(tmp_path))
    tensors, _ = source.list_run_tags(data_provider, ctx, experiment_id)
    data = source.read_run(data_provider, ctx, experiment_id, "run", tensors["run"], {},
                           entropy_floor=findings.Thresholds().entropy)
    # "calm" (4 nats of ln(100) = 4.6) cannot collapse: its map is not read,
    # and counts as causal, the lower reference.
    assert data.attention == {"causal": (100, 100, True), "full": (100, 100, False), "calm": (100, 100, True)}
    (finding,) = findings.evaluate(data)
    # 0.5 nats: 11% of ln(100), 14% of a uniform causal map's 3.63.
    assert set(finding.labels) == {"causal/head0", "causal/head1", "full/head0", "full/head1"}
    assert finding.labels[0].startswith("full/")


def test_loss_messages_name_the_tag_once(engine):
    for run in ("nan", "diverging_loss"):
        (loss,) = [f for f in engine[run] if f.kind == "loss_divergence"]
        assert loss.message.startswith("loss/train ")


def test_nan_fault_reports_gradients_and_weights_from_the_planted_step(engine):
    found = [f for f in engine["nan"] if f.kind == "nonfinite"]
    tags = {f.tag: f for f in found}
    assert tags["gradients/nonfinite"].first_step == NAN_STEP
    assert tags["gradients/nonfinite"].labels[0] == "2.weight"
    weights = [f for f in found if f.tag.startswith("weights/")]
    assert weights and weights[0].first_step == NAN_STEP and weights[0].labels[0] == "2.weight"
    assert all(f.severity == "error" for f in found)


def test_views_point_at_a_tag_and_step_or_over_time(engine):
    for run, found in engine.items():
        for finding in found:
            view = finding.view
            assert view["tag"]
            assert ("step" in view) != ("view" in view)
            if "step" in view:
                assert finding.first_step <= view["step"] <= finding.last_step
            else:
                assert view["view"] == "overtime"


def test_demo_runs_are_diagnosed_as_the_readme_says(demo_runs):
    result = findings.diagnose_logdir(str(demo_runs))
    assert result["healthy"] == [], [f.message for f in result["healthy"]]
    kinds = {f.kind for f in result["vanishing"]}
    assert {"vanishing_gradients", "class_collapse"} <= kinds
    vanishing = by_kind(result["vanishing"])["vanishing_gradients"]
    assert vanishing.labels[0] in ("0.weight", "0.bias")
    assert vanishing.first_step == 0
    # The first layers' updates are below float32's resolution of their
    # weights (SGD): they do not learn at all.
    assert vanishing.severity == "error"
    (collapse,) = [f for f in result["vanishing"] if f.kind == "class_collapse"]
    assert len(collapse.labels) == 1 and "class %s:" % collapse.labels[0] in collapse.message


# -- the route ------------------------------------------------------------


def get_json(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data())


def expected_body(engine, runs=None):
    return {
        "runs": {run: [f.to_json() for f in found] for run, found in engine.items()
                 if runs is None or run in runs},
        "checks": list(findings.KINDS),
    }


@pytest.fixture(scope="module")
def client(runs_logdir):
    return Client(make_wsgi_app(runs_logdir))


def test_route_serves_the_engine_findings_for_every_run(client, engine):
    body = get_json(client, PREFIX + "/findings")
    assert body == expected_body(engine)
    assert set(body["checks"]) >= {
        "vanishing_gradients", "exploding_gradients", "nonfinite", "dead_units",
        "frozen_parameters", "large_updates", "class_collapse", "loss_divergence",
        "attention_collapse", "activation_outliers",
    }
    for run in HEALTHY:
        assert body["runs"][run] == []


def test_route_serves_one_run(client, engine):
    body = get_json(client, PREFIX + "/findings?run=vanishing")
    assert body == expected_body(engine, runs={"vanishing"})


def test_route_is_strict_json(client):
    text = client.get(PREFIX + "/findings").get_data(as_text=True)

    def refuse(token):
        raise ValueError("bare %s in the response" % token)

    json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("?run=nope", 404, "no torch_visualization data for run 'nope'"),
        ("?run=nan&run=dead", 400, "given 2 times"),
        ("?run=", 404, "no torch_visualization data for run ''"),
    ],
)
def test_route_bad_queries(client, query, status, message):
    response = client.get(PREFIX + "/findings" + query)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_route_recomputes_when_the_data_changes(tmp_path):
    """Cached per run, until one of its tags gets a new record."""
    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "live"))
    for step in range(3):
        writer.add_gradient_bars("gradients/norm", {"a.weight": 0.1, "b.weight": 0.05}, step)
    writer.flush()
    app, ingester = make_tensorboard(tmp_path)
    live = Client(app)
    assert get_json(live, PREFIX + "/findings")["runs"] == {"live": []}
    writer.add_gradient_bars("gradients/norm", {"a.weight": float("nan"), "b.weight": 0.05}, 3)
    writer.close()
    ingester.deprecated_multiplexer.Reload()
    # The route reuses its listing of every run for a second (listing.py).
    time.sleep(listing.RUSTBOARD_TTL_S + 0.1)
    (finding,) = get_json(live, PREFIX + "/findings")["runs"]["live"]
    assert (finding["kind"], finding["labels"], finding["first_step"]) == ("nonfinite", ["a.weight"], 3)


def test_rustboard_route_agrees_with_the_engine(runs_logdir, engine):
    expected = expected_body(engine)
    with tensorboard_server(runs_logdir, "--load_fast=true") as server:
        server.wait_for_tags(list(engine))
        # RustBoard loads incrementally: wait until every run is complete.
        deadline = time.monotonic() + 90
        while True:
            body = server.get_json(PREFIX + "/findings")
            if body == expected or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert body == expected
        one = server.get_json(PREFIX + "/findings?run=nan")
        assert one["runs"] == {"nan": expected["runs"]["nan"]}


# -- sampling: sample_limit / sampled, and the 404 of a sampled-out step -------


def _sampling_checks(get, status_of):
    """Shared by both loaders: `get(url)` -> JSON body, `status_of(url)` -> (status, text)."""
    pie = get(PREFIX + "/data?run=alpha&tag=outputs/classes")
    assert (pie["sample_limit"], pie["sampled"]) == (5, True)
    assert len(pie["steps"]) == 5 and pie["steps"][-1] == MANY_STEPS - 1
    series = get(PREFIX + "/series?run=alpha&tag=outputs/classes")
    assert (series["sample_limit"], series["sampled"]) == (5, True)
    bars = get(PREFIX + "/data?run=alpha&tag=gradients/norm")
    assert (bars["sample_limit"], bars["sampled"]) == (5, False)
    dropped = next(s for s in range(MANY_STEPS) if s not in pie["steps"])
    status, text = status_of(PREFIX + "/data?run=alpha&tag=outputs/classes&step=%d" % dropped)
    assert status == 404
    assert "was not kept by TensorBoard's sampling" in text
    assert "--samples_per_plugin torch_visualization=N" in text
    status, text = status_of(PREFIX + "/data?run=alpha&tag=gradients/norm&step=15")
    assert status == 404 and "step 15 is not logged" in text


def test_sampling_is_reported_under_the_python_loader(sample_logdir):
    logdir, _ = sample_logdir
    small = Client(make_wsgi_app(logdir, "--samples_per_plugin", "torch_visualization=5"))

    def status_of(url):
        response = small.get(url)
        return response.status_code, response.get_data(as_text=True)

    _sampling_checks(lambda url: get_json(small, url), status_of)
    default = get_json(Client(make_wsgi_app(logdir)), PREFIX + "/data?run=alpha&tag=outputs/classes")
    assert (default["sample_limit"], default["sampled"]) == (1000, False)
    assert len(default["steps"]) == MANY_STEPS


def test_sampling_is_reported_under_rustboard(sample_logdir):
    from conftest import http_get

    logdir, _ = sample_logdir
    with tensorboard_server(logdir, "--load_fast=true", "--samples_per_plugin", "torch_visualization=5") as server:
        server.wait_for_tags(["alpha", "beta"])
        deadline = time.monotonic() + 60
        while server.get_json(PREFIX + "/data?run=alpha&tag=outputs/classes")["step"] != MANY_STEPS - 1:
            assert time.monotonic() < deadline, "RustBoard did not load every step"
            time.sleep(0.5)

        def status_of(url):
            status, body = http_get(server.url + url)
            return status, body.decode()

        _sampling_checks(server.get_json, status_of)


def test_listing_cache_reuses_a_listing_for_its_ttl_only(tmp_path):
    """RustBoard's listings are reused for a second (tb_plugin/listing.py);
    the same cache over the Python loader's real provider, ttl given."""
    from tensorboard import context

    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_class_pie("p", [1.0, 2.0], 0)
    writer.flush()
    _, ingester = make_tensorboard(tmp_path)
    data_provider = ingester.data_provider
    assert listing.default_ttl(data_provider) == 0.0  # the Python loader: never reused
    ctx = context.RequestContext()
    kept, fresh = listing.ListingCache(data_provider, 3600.0), listing.ListingCache(data_provider, 0.0)
    assert kept.tensors(ctx, "")["run"]["p"].max_step == 0
    writer.add_class_pie("p", [3.0, 4.0], 1)
    writer.close()
    ingester.deprecated_multiplexer.Reload()
    assert kept.tensors(ctx, "")["run"]["p"].max_step == 0  # reused within its ttl
    assert fresh.tensors(ctx, "")["run"]["p"].max_step == 1
