"""The torch_visualization TensorBoard plugin: routes and their implementations.

Each route parses its query and calls an `*_impl` function that knows no HTTP;
bad queries raise TensorBoard's typed errors, which TensorBoard turns into
400/404 responses with the message as the body. Routes and response shapes
are documented in docs/http_api.md.

Data is read only through `context.data_provider` (`context.multiplexer` is
None under RustBoard), so the plugin works with both loaders.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from torch_visualization import findings, metadata, tabular
from torch_visualization.findings import source as findings_source
from torch_visualization.tb_plugin import encoding, listing as listing_cache, step_cache
from torch_visualization.tb_plugin.loader import DEFAULT_SAMPLES

logger = logging.getLogger(__name__)

# The ES modules ship beside this package: frontend/ in the repository,
# torch_visualization/frontend/ in the wheel.
FRONTEND_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "frontend")

# Decoded steps kept between requests (see step_cache.py).
CACHE_BYTES = 256 * 2**20

# Findings of many runs (each a few KiB) kept between requests.
FINDINGS_CACHE_BYTES = 16 * 2**20

# Kinds whose whole history is small enough for one /series response.
SERIES_KINDS = ("pie", "bars", "confusion")

_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.(js|css)$")
_CONTENT_TYPES = {"js": "text/javascript", "css": "text/css"}


class TorchVisualizationPlugin(base_plugin.TBPlugin):
    """Serves the "Model Insight" tab."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        hints = context.sampling_hints or {}
        samples = hints.get(metadata.PLUGIN_NAME, DEFAULT_SAMPLES)
        # 0 means "keep everything" to TensorBoard's loaders; ask for all then.
        self._downsample = samples if samples else 2**31 - 1
        # The bound reported to the tab as "sample_limit" (0: keep every step).
        self._sample_limit = samples
        self._warned = set()
        self._cache = step_cache.StepCache(CACHE_BYTES)
        # Findings per (experiment, run), kept until the run's data changes
        # (the version is every tag's newest step and wall time).
        self._findings = step_cache.StepCache(FINDINGS_CACHE_BYTES)
        # Listings reused for a second under RustBoard (see listing.py: each
        # gRPC listing costs ~40 ms there), and the /tags body built from one.
        self._listings = listing_cache.ListingCache(
            self._data_provider, listing_cache.default_ttl(self._data_provider)
        )
        self._tags_body = (None, None)
        # /findings keys its cache on the listing of every run, which the
        # Python loader builds by walking every held record (~0.3 s at 10
        # runs x 55 tags x 1,000 steps): reused for a second by both loaders.
        self._findings_listings = listing_cache.ListingCache(
            self._data_provider, max(self._listings.ttl, listing_cache.RUSTBOARD_TTL_S)
        )

    def get_plugin_apps(self):
        return {
            "/tags": self._serve_tags,
            "/data": self._serve_data,
            "/series": self._serve_series,
            "/csv": self._serve_csv,
            "/findings": self._serve_findings,
            "/*": self._serve_static,
        }

    def is_active(self):
        # Activity is decided by TensorBoard from data_plugin_names().
        return False

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path="/index.js", tab_name="Model Insight"
        )

    # -- routes --------------------------------------------------------------

    @wrappers.Request.application
    def _serve_tags(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, self.tags_impl(ctx, experiment), "application/json")

    @wrappers.Request.application
    def _serve_data(self, request):
        ctx, experiment, run, tag = _chart_request(request)
        step = _parse_step(_single_arg(request, "step", required=False))
        body = self.data_impl(ctx, experiment, run, tag, step)
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_series(self, request):
        body = self.series_impl(*_chart_request(request))
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_csv(self, request):
        ctx, experiment, run, tag = _chart_request(request)
        # csv_impl reads (and fails with 4xx) before the response streams.
        chunks = self.csv_impl(ctx, experiment, run, tag)
        filename = re.sub(r"[^A-Za-z0-9_.-]+", "_", "%s_%s" % (run, tag)).strip("_")[:150] or "chart"
        return wrappers.Response(
            chunks,
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="%s.csv"' % filename},
        )

    @wrappers.Request.application
    def _serve_findings(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        run = _single_arg(request, "run", required=False)
        return http_util.Respond(
            request, self.findings_impl(ctx, experiment, run), "application/json"
        )

    @wrappers.Request.application
    def _serve_static(self, request):
        prefix = "/data/plugin/%s/" % metadata.PLUGIN_NAME
        path = request.path
        name = path[path.index(prefix) + len(prefix):] if prefix in path else ""
        content, content_type = self.static_impl(name)
        return http_util.Respond(request, content, content_type)

    # -- implementations (no HTTP) -------------------------------------------

    def tags_impl(self, ctx, experiment_id):
        """Lists runs and tags with their chart metadata.

        Returns:
          `{"runs": {run: {tag: {...}}}}` as in docs/http_api.md.
        """
        listing = self._listings.tensors(ctx, experiment_id)
        cached_listing, cached_body = self._tags_body
        if cached_listing is listing:
            return cached_body
        runs = {}
        for run, tags in listing.items():
            for tag, series in tags.items():
                data = self._parse_content(run, tag, series.plugin_content)
                if data is None:
                    continue
                info = _describe(data)
                info["max_step"] = series.max_step
                info["max_wall_time"] = series.max_wall_time
                runs.setdefault(run, {})[tag] = info
        body = {"runs": runs}
        if self._listings.ttl > 0:
            self._tags_body = (listing, body)
        return body

    def data_impl(self, ctx, experiment_id, run, tag, step=None):
        """One step of one chart, with every step the server holds.

        Args:
          ctx: TensorBoard request context.
          experiment_id: Experiment of the request.
          run: Run name.
          tag: Tag name.
          step: Step to return; None for the latest.

        Returns:
          A JSON-ready dict (see docs/http_api.md).

        Raises:
          errors.NotFoundError: unknown run, tag or step.
        """
        data, by_step = self._read_steps(ctx, experiment_id, run, tag)
        steps = sorted(by_step)
        if step is None:
            step = steps[-1]
        if step not in by_step:
            if self._sampled(steps):
                raise errors.NotFoundError(
                    "step %d of run %r and tag %r was not kept by TensorBoard's sampling "
                    "(or never logged): the server holds %d steps of this tag (%d..%d), "
                    "its per-tag bound; to keep every step, start tensorboard with "
                    "--samples_per_plugin %s=N, N at least the number of logged steps"
                    % (step, run, tag, len(steps), steps[0], steps[-1], metadata.PLUGIN_NAME)
                )
            raise errors.NotFoundError(
                "step %d is not logged for run %r and tag %r (steps %d..%d)"
                % (step, run, tag, steps[0], steps[-1])
            )
        datum, values = by_step[step]
        body = _describe(data)
        texts = body["kind"] == "tokens"
        body.update(
            run=run,
            tag=tag,
            step=step,
            wall_time=datum.wall_time,
            shape=list(values.shape),
            values=list(values) if texts else encoding.encode_array(values),
            nonfinite=0 if texts else int(values.size - np.count_nonzero(np.isfinite(values))),
            steps=steps,
            sample_limit=self._sample_limit,
            sampled=self._sampled(steps),
        )
        if body["kind"] == "attention":
            # The step's own tokens (they change every step, so they are a
            # tag of their own, not the attention tag's frozen labels).
            body["tokens"] = self._tokens_at(ctx, experiment_id, run, step)
        if body["kind"] == "heatmap":
            # Exact even where the cells were stored as float16: the stored
            # step (datum.numpy) carries the float32 range in its last row.
            value_range = metadata.decode_heatmap_values(datum.numpy)[1]
            body["range"] = None if value_range is None else list(value_range)
        return body

    def _tokens_at(self, ctx, experiment_id, run, step):
        """The `attention/tokens` texts of `run` at `step`, or None when the
        run has none there (or they cannot be read: the map still shows)."""
        try:
            data, by_step = self._read_steps(ctx, experiment_id, run, metadata.TOKENS_TAG)
        except errors.NotFoundError:
            return None
        if metadata.kind_name(data) != "tokens":
            return None  # the user's own chart under that tag name
        found = by_step.get(step)
        return None if found is None else list(found[1])

    def series_impl(self, ctx, experiment_id, run, tag):
        """Every step of one chart, for the over-time view.

        Only kinds whose values per step are small (pie, bars, confusion)
        are served whole; heatmaps and scatters are fetched step by step.

        Returns:
          A JSON-ready dict (see docs/http_api.md).

        Raises:
          errors.NotFoundError: unknown run or tag.
          errors.InvalidArgumentError: a heatmap or scatter tag.
        """
        data, by_step = self._read_steps(ctx, experiment_id, run, tag)
        kind = metadata.kind_name(data)
        if kind not in SERIES_KINDS:
            raise errors.InvalidArgumentError(
                "the series route serves %s tags; %r of run %r is a %s (use /data per step)"
                % ("/".join(SERIES_KINDS), tag, run, kind)
            )
        steps = sorted(by_step)
        body = _describe(data)
        body.update(
            run=run,
            tag=tag,
            steps=steps,
            wall_times=[by_step[s][0].wall_time for s in steps],
            values=[encoding.encode_array(by_step[s][1]) for s in steps],
            sample_limit=self._sample_limit,
            sampled=self._sampled(steps),
        )
        return body

    def csv_impl(self, ctx, experiment_id, run, tag):
        """Every held step of one chart as CSV text chunks (long format).

        Columns are `tabular.COLUMNS`; non-finite values are written as
        "NaN", "Infinity" and "-Infinity" (Python's float() reads them).

        Returns:
          An iterator of str chunks: the header, then one chunk per step,
          produced while the response streams (a long heatmap history is
          millions of rows).

        Raises:
          errors.NotFoundError: unknown run or tag (raised before any chunk).
        """
        data, by_step = self._read_steps(ctx, experiment_id, run, tag)
        kind = metadata.kind_name(data)

        def chunks():
            yield _csv_line(tabular.COLUMNS)
            for step in sorted(by_step):
                datum, values = by_step[step]
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\n")
                index, label, stat, value = tabular.long_rows(
                    kind, data.labels, data.stat_names, values
                )
                wall_time = repr(datum.wall_time)
                for i, name, stat_name, number in zip(index, label, stat, value):
                    writer.writerow(
                        (run, tag, kind, step, wall_time, i, name, stat_name, _csv_number(number))
                    )
                yield buffer.getvalue()

        return chunks()

    def _read_steps(self, ctx, experiment_id, run, tag):
        """Reads and checks every held step of one run and tag.

        Returns:
          `(plugin_data, {step: (datum, values)})`, the later record winning
          when a restarted run logged a step twice.

        Raises:
          errors.NotFoundError: unknown run/tag, unreadable metadata, or no
            readable step.
        """
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[tag])
        if self._listings.ttl > 0:
            listing = self._listings.tensors(ctx, experiment_id)
        else:
            listing = self._data_provider.list_tensors(
                ctx,
                experiment_id=experiment_id,
                plugin_name=metadata.PLUGIN_NAME,
                run_tag_filter=run_tag_filter,
            )
        series = listing.get(run, {}).get(tag)
        if series is None:
            raise errors.NotFoundError("no chart for run %r and tag %r" % (run, tag))
        data = self._parse_content(run, tag, series.plugin_content)
        if data is None:
            raise errors.NotFoundError(
                "the chart for run %r and tag %r cannot be read by this version "
                "(see the server log)" % (run, tag)
            )
        cache_key = (experiment_id, run, tag)
        version = (series.max_step, series.max_wall_time, series.plugin_content)
        cached = self._cache.get(cache_key, version)
        if cached is not None:
            return cached
        try:
            read = self._data_provider.read_tensors(
                ctx,
                experiment_id=experiment_id,
                plugin_name=metadata.PLUGIN_NAME,
                downsample=self._downsample,
                run_tag_filter=run_tag_filter,
            )
        except (ValueError, TypeError) as e:
            # Both data providers convert every stored TensorProto with
            # `tensor_util.make_ndarray`; one proto whose bytes disagree with
            # its own shape (a damaged log) makes the whole call raise, and
            # they offer no per-record read to skip just that one.
            self._warn_once((run, tag, "read"), "cannot decode run %r tag %r: %s", run, tag, e)
            raise errors.NotFoundError(
                "the records of run %r and tag %r cannot be decoded (a damaged "
                "event file? see the server log)" % (run, tag)
            ) from None
        # A restarted run may log a step twice; the later record wins.
        by_step = {}
        kind = metadata.kind_name(data)
        for datum in read.get(run, {}).get(tag, []):
            values = np.asarray(datum.numpy)
            try:
                metadata.check_values(data, values)
                if kind == "heatmap":
                    # float16 steps become float32 [rows, cols] here, once.
                    values = metadata.decode_heatmap_values(values)[0]
                elif kind == "tokens":
                    # UTF-8 bytes -> str, once (errors="replace": never a 500).
                    values = np.array(metadata.decode_token_values(values), dtype=object)
            except metadata.ContentError as e:
                self._warn_once((run, tag, datum.step), "skipping run %r tag %r step %d: %s", run, tag, datum.step, e)
                continue
            by_step[datum.step] = (datum, values)
        if not by_step:
            raise errors.NotFoundError("no readable steps for run %r and tag %r" % (run, tag))
        # Decoded float16 heatmaps hold their stored array (datum.numpy) too.
        nbytes = sum(
            v.nbytes + (0 if v is d.numpy else np.asarray(d.numpy).nbytes) for d, v in by_step.values()
        )
        self._cache.put(cache_key, version, (data, by_step), nbytes)
        return data, by_step

    def findings_impl(self, ctx, experiment_id, run=None):
        """Diagnoses runs with the findings engine (torch_visualization.findings).

        Args:
          ctx: TensorBoard request context.
          experiment_id: Experiment of the request.
          run: One run, or None for every run of ours.

        Returns:
          `{"runs": {run: [finding, ...]}, "checks": [kind, ...]}` (see
          docs/http_api.md); a run's findings are recomputed only when one of
          its tags changed, as seen in a listing at most a second old.

        Raises:
          errors.NotFoundError: `run` has no data of this plugin.
        """
        tensors = self._findings_listings.tensors(ctx, experiment_id)
        losses = findings_source.loss_tags_of(
            self._findings_listings.scalars(ctx, experiment_id, findings_source.SCALARS_PLUGIN)
        )
        if run is not None and run not in tensors:
            raise errors.NotFoundError("no torch_visualization data for run %r" % run)
        runs = {}
        for name in sorted(tensors) if run is None else [run]:
            listing = (tensors[name], losses.get(name, {}))
            version = findings_source.data_version(*listing)
            found = self._findings.get((experiment_id, name), version)
            if found is None:
                try:
                    found = [
                        f.to_json()
                        for f in findings.diagnose(
                            self._data_provider, ctx, experiment_id, name,
                            listing=listing, downsample=self._downsample,
                        )
                    ]
                except (ValueError, TypeError) as e:
                    # Records the engine cannot use (a damaged log): the
                    # other runs are still diagnosed; this one is retried.
                    self._warn_once((name, "findings"), "findings: cannot diagnose run %r: %s", name, e)
                    runs[name] = []
                    continue
                # A finding is well under 1 KiB of JSON.
                self._findings.put((experiment_id, name), version, found, 1024 * (1 + len(found)))
            runs[name] = found
        return {"runs": runs, "checks": list(findings.KINDS)}

    def static_impl(self, name):
        """Reads one frontend file.

        Args:
          name: Path below the plugin prefix, e.g. "index.js" or "views/pie.js".

        Returns:
          `(bytes, content_type)`.

        Raises:
          errors.NotFoundError: not one of our .js/.css files.
        """
        if not _STATIC_NAME.match(name):
            raise errors.NotFoundError("no such file: %r" % name[:200])
        path = os.path.join(FRONTEND_DIR, *name.split("/"))
        root = os.path.realpath(FRONTEND_DIR)
        if not os.path.realpath(path).startswith(root + os.sep) or not os.path.isfile(path):
            raise errors.NotFoundError("no such file: %r" % name)
        with open(path, "rb") as f:
            content = f.read()
        return content, _CONTENT_TYPES[name.rsplit(".", 1)[1]]

    # -- helpers ---------------------------------------------------------------

    def _parse_content(self, run, tag, content):
        try:
            return metadata.parse_plugin_data(content)
        except (metadata.ContentError, TypeError) as e:
            self._warn_once((run, tag), "skipping run %r tag %r: %s", run, tag, e)
            return None

    def _sampled(self, steps):
        """Whether TensorBoard's sampling may have dropped steps of a tag:
        the server holds as many as the bound (0 keeps every step)."""
        return bool(self._sample_limit) and len(steps) >= self._sample_limit

    def _warn_once(self, key, message, *args):
        # Every request re-reads the data; log each bad record once, not per request.
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


def _csv_line(fields):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _csv_number(number):
    if number != number:
        return encoding.NAN
    if number in (float("inf"), float("-inf")):
        return encoding.POS_INF if number > 0 else encoding.NEG_INF
    return repr(number)


def _describe(data):
    return {
        "kind": metadata.kind_name(data),
        "labels": list(data.labels),
        "stat_names": list(data.stat_names),
        "original_shape": list(data.original_shape),
        "reduction": data.reduction,
    }


def _chart_request(request):
    """`(ctx, experiment_id, run, tag)` of a request naming one chart."""
    run = _single_arg(request, "run", required=True)
    tag = _single_arg(request, "tag", required=True)
    return (
        plugin_util.context(request.environ),
        plugin_util.experiment_id(request.environ),
        run,
        tag,
    )


def _single_arg(request, name, *, required):
    try:
        values = request.args.getlist(name)
    except UnicodeDecodeError:
        # werkzeug decodes the raw query as UTF-8 and raises on other bytes; a
        # client that sends raw non-UTF-8 bytes (no percent-encoding) would
        # otherwise get a 500.
        raise errors.InvalidArgumentError("the query string is not valid UTF-8") from None
    if len(values) > 1:
        raise errors.InvalidArgumentError("query parameter %r given %d times" % (name, len(values)))
    if not values:
        if required:
            raise errors.InvalidArgumentError("missing query parameter %r" % name)
        return None
    return values[0]


def _parse_step(text):
    if text is None:
        return None
    digits = text.strip()  # str.strip() takes more than int() ignores (e.g. "\x1f")
    if not re.fullmatch(r"-?[0-9]{1,19}", digits):
        raise errors.InvalidArgumentError("step must be an integer, got %r" % text[:100])
    step = int(digits)
    if not -(2**63) <= step < 2**63:
        raise errors.InvalidArgumentError("step %r is out of range" % text[:100])
    return step
