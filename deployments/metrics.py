"""Prometheus metrics of the graph: the names here are the names on the dashboard.

Recorded with `ray.serve.metrics` inside replicas; Ray's metrics agent on every node exports
them on its metrics port (8080 on KubeRay pods) with a `ray_` prefix, and adds the
`application`, `deployment` and `replica` tags itself (those keys are reserved: a metric that
declares one fails only inside a replica, after the deploy has waited).

Labels are bounded: `model_kind` is one of the checkpoint kinds, `code` one of the error codes
of `serve_app.edge.api_errors`, `stage` one of `STAGES`. No text, ids or per-request values as labels.
cluster/grafana-dashboard.json is checked against `EXPORTED_NAMES` by a test.

Gauges are set again every `GAUGE_REFRESH_S` by a daemon thread (`_GaugeKeeper`): Ray's
exporter drops a gauge series about 20 s after its last `set` (measured on Ray 2.60: the
queue-length and active-slot series left /metrics while the replica idled), so a gauge set
only when its value changes would vanish from the dashboard exactly when nothing happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from ray.serve.metrics import Counter, Gauge, Histogram

#: Prefix Ray's exporter puts in front of every application metric.
EXPORT_PREFIX = "ray_"

TIME_TO_FIRST_AUDIO = "qtts_time_to_first_audio_seconds"
SYNTHESIS_TIME = "qtts_synthesis_seconds"
REAL_TIME_FACTOR = "qtts_real_time_factor"
AUDIO_SECONDS = "qtts_audio_seconds"
CHARACTERS = "qtts_characters"
REQUESTS = "qtts_requests"
QUEUE_LENGTH = "qtts_queue_length"
ERRORS = "qtts_errors"
ENGINE_ACTIVE_SLOTS = "qtts_engine_active_slots"
ENGINE_BATCH_SIZE = "qtts_engine_batch_size"
ENGINE_STEP_SECONDS = "qtts_engine_step_seconds"
ENGINE_QUEUE_WAIT = "qtts_engine_queue_wait_seconds"
ENGINE_STREAM_MARGIN = "qtts_engine_stream_margin_seconds"
ENGINE_LATE_CHUNKS = "qtts_engine_late_chunks"
ENGINE_REFUSED = "qtts_engine_refused"

#: Where a request waits: admitted by the ingress, or inside a model replica (queued in its
#: batcher or generating).
STAGES = ("ingress", "model")

#: Seconds: from 20 ms (a GPU's first packet) to 5 minutes (the request timeout).
LATENCY_BOUNDARIES = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 60,
                      120, 300]
#: Generation seconds per audio second: < 1 is faster than real time.
RTF_BOUNDARIES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30]
#: Requests advancing together in one step of a model's batched engine.
BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256]
#: Seconds of one engine step (one codec frame for every active slot; 80 ms is real time).
STEP_BOUNDARIES = [0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28]

#: Seconds of audio a stream's listener had left when its next chunk left (issue 18's pacing
#: keeps it above ~0.1 s). Ray's histograms take positive boundaries only: a late chunk (the
#: listener had run dry) is observed as 0 and counted in qtts_engine_late_chunks.
MARGIN_BOUNDARIES = [0.001, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5, 10]

#: Seconds between re-exports of every gauge's last value (see the module docstring).
GAUGE_REFRESH_S = 1.0

_RESERVED_TAG_KEYS = frozenset({"deployment", "replica", "application"})


def _tags(*keys: str) -> tuple[str, ...]:
    clash = _RESERVED_TAG_KEYS.intersection(keys)
    if clash:
        raise ValueError(f"metric tag keys {sorted(clash)} are reserved by Ray Serve")
    return keys


def _counter(name: str, description: str, keys: Iterable[str]) -> Counter:
    return Counter(name, description=description, tag_keys=_tags(*keys))


def _histogram(name: str, description: str, boundaries: list[float], keys: Iterable[str]) -> Histogram:
    return Histogram(name, description=description, boundaries=boundaries, tag_keys=_tags(*keys))


class _GaugeKeeper:
    """The last value of every (gauge, tags) this process set, set again every
    `GAUGE_REFRESH_S` on a daemon thread started by the first `set`."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[Gauge, float, dict]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def set(self, gauge: Gauge, value: float, tags: dict[str, str]) -> None:
        with self._lock:  # held while setting, so a refresh never sets an older value last
            gauge.set(value, tags=tags)
            self._values[(id(gauge), tuple(sorted(tags.items())))] = (gauge, value, tags)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qtts-gauges", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(GAUGE_REFRESH_S)
            with self._lock:
                for gauge, value, tags in self._values.values():
                    gauge.set(value, tags=tags)


class TTSMetrics:
    """One set of metric objects per replica process (Ray registers each name once)."""

    def __init__(self) -> None:
        kind = ("model_kind",)
        self._gauges = _GaugeKeeper()
        self.time_to_first_audio = _histogram(
            TIME_TO_FIRST_AUDIO,
            "Seconds from request arrival at the ingress to the first audio bytes ready "
            "(the whole synthesis for non-streaming requests).",
            LATENCY_BOUNDARIES, kind,
        )
        self.synthesis_time = _histogram(
            SYNTHESIS_TIME, "Seconds from request arrival to finished audio.",
            LATENCY_BOUNDARIES, kind,
        )
        self.real_time_factor = _histogram(
            REAL_TIME_FACTOR, "Model generation seconds per second of audio produced.",
            RTF_BOUNDARIES, kind,
        )
        self.audio_seconds = _counter(AUDIO_SECONDS, "Seconds of audio synthesized.", kind)
        self.characters = _counter(CHARACTERS, "Characters of text synthesized.", kind)
        self.requests = _counter(
            REQUESTS, "Synthesis requests answered, by outcome (ok, cached, error).",
            ("model_kind", "outcome"),
        )
        self.queue_length = Gauge(
            QUEUE_LENGTH,
            description="Synthesis requests waiting or running in this replica, by stage.",
            tag_keys=_tags("stage"),
        )
        self.errors = _counter(ERRORS, "Failed requests by error code and HTTP status.",
                               ("code", "status"))
        self.engine_active_slots = Gauge(
            ENGINE_ACTIVE_SLOTS,
            description="Requests holding a slot of this replica's batched engine.",
            tag_keys=_tags("model_kind"),
        )
        self.engine_batch_size = _histogram(
            ENGINE_BATCH_SIZE, "Requests advanced together per engine step.",
            BATCH_SIZE_BOUNDARIES, kind,
        )
        self.engine_step_seconds = _histogram(
            ENGINE_STEP_SECONDS, "Seconds per engine step (one frame for every active request).",
            STEP_BOUNDARIES, kind,
        )
        self.engine_queue_wait = _histogram(
            ENGINE_QUEUE_WAIT, "Seconds a request waited for a free engine slot.",
            LATENCY_BOUNDARIES, kind,
        )
        self.engine_stream_margin = _histogram(
            ENGINE_STREAM_MARGIN, "Seconds of audio a stream's listener had left (audio sent "
            "minus playback since its first audio) when its next chunk left; 0: late.",
            MARGIN_BOUNDARIES, kind,
        )
        self.engine_late_chunks = _counter(
            ENGINE_LATE_CHUNKS, "Stream chunks sent after their listener had run dry (a gap "
            "the server caused).", kind)
        self.engine_refused = _counter(
            ENGINE_REFUSED, "Streaming requests refused (503 + Retry-After) after waiting "
            "their first-audio bound for a slot that could keep them ahead of their listener.",
            kind)

    # ---------------------------------------------------------------------- recording
    def observe_first_audio(self, model_kind: str, seconds: float) -> None:
        self.time_to_first_audio.observe(seconds, tags={"model_kind": model_kind})

    def observe_synthesis(
        self,
        model_kind: str,
        *,
        total_seconds: float,
        generation_seconds: float,
        audio_seconds: float,
        characters: int,
    ) -> None:
        tags = {"model_kind": model_kind}
        self.synthesis_time.observe(total_seconds, tags=tags)
        if audio_seconds > 0:
            self.real_time_factor.observe(generation_seconds / audio_seconds, tags=tags)
            self.audio_seconds.inc(audio_seconds, tags=tags)
        if characters > 0:
            self.characters.inc(characters, tags=tags)
        self.requests.inc(tags={"model_kind": model_kind, "outcome": "ok"})

    def count_cached(self, model_kind: str) -> None:
        self.requests.inc(tags={"model_kind": model_kind, "outcome": "cached"})

    def count_error(self, code: str, status: int, model_kind: str | None = None) -> None:
        self.errors.inc(tags={"code": code, "status": str(status)})
        if model_kind is not None:
            self.requests.inc(tags={"model_kind": model_kind, "outcome": "error"})

    def set_queue_length(self, stage: str, value: int) -> None:
        self._gauges.set(self.queue_length, value, {"stage": stage})

    def observe_engine_step(self, model_kind: str, batch_size: int, seconds: float) -> None:
        tags = {"model_kind": model_kind}
        self.engine_batch_size.observe(batch_size, tags=tags)
        self.engine_step_seconds.observe(seconds, tags=tags)

    def observe_engine_queue_wait(self, model_kind: str, seconds: float) -> None:
        self.engine_queue_wait.observe(seconds, tags={"model_kind": model_kind})

    def observe_engine_chunk(self, model_kind: str, margin_seconds: float, late: bool) -> None:
        tags = {"model_kind": model_kind}
        self.engine_stream_margin.observe(max(0.0, margin_seconds), tags=tags)
        if late:
            self.engine_late_chunks.inc(tags=tags)

    def count_engine_refused(self, model_kind: str, waited_seconds: float) -> None:
        tags = {"model_kind": model_kind}
        self.engine_refused.inc(tags=tags)
        self.engine_queue_wait.observe(waited_seconds, tags=tags)

    def set_engine_active_slots(self, model_kind: str, value: int) -> None:
        self._gauges.set(self.engine_active_slots, value, {"model_kind": model_kind})


_lock = threading.Lock()
_metrics: TTSMetrics | None = None


def tts_metrics() -> TTSMetrics:
    """The process's metrics, created on first use (inside a replica, never at import)."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = TTSMetrics()
        return _metrics


#: Every series name a scrape shows for these metrics (histograms as _bucket/_sum/_count).
EXPORTED_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(EXPORT_PREFIX + name + suffix for suffix in suffixes)
    for name, suffixes in {
        TIME_TO_FIRST_AUDIO: ("_bucket", "_sum", "_count"),
        SYNTHESIS_TIME: ("_bucket", "_sum", "_count"),
        REAL_TIME_FACTOR: ("_bucket", "_sum", "_count"),
        AUDIO_SECONDS: ("_total",),
        CHARACTERS: ("_total",),
        REQUESTS: ("_total",),
        QUEUE_LENGTH: ("",),
        ERRORS: ("_total",),
        ENGINE_ACTIVE_SLOTS: ("",),
        ENGINE_BATCH_SIZE: ("_bucket", "_sum", "_count"),
        ENGINE_STREAM_MARGIN: ("_bucket", "_sum", "_count"),
        ENGINE_LATE_CHUNKS: ("_total",),
        ENGINE_REFUSED: ("_total",),
        ENGINE_STEP_SECONDS: ("_bucket", "_sum", "_count"),
        ENGINE_QUEUE_WAIT: ("_bucket", "_sum", "_count"),
    }.items()
}
