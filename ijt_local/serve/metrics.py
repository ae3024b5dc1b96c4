"""`GET /metrics` in Prometheus' text format, through prometheus-client (one registry per app).

Per model: requests finished (by endpoint), choices finished (by finish reason), prompt and completion
tokens, time to first token and the gaps between tokens (histograms), and, read from the engines when
scraped, the requests waiting for a slot (queue depth), the slots decoding and the slots there are.
Requests refused with a 4xx/5xx before they reach an engine are counted by status.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_GAP_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Engines:
    """The gauges read at scrape time from each engine (the served models' and --allow-specs' ones)."""

    def __init__(self, served):
        self.served = served

    def collect(self):
        queue = GaugeMetricFamily("ijt_queue_depth", "Requests waiting for a decode slot", labels=["model"])
        busy = GaugeMetricFamily("ijt_slots_busy", "Decode slots with a request in flight", labels=["model"])
        slots = GaugeMetricFamily("ijt_slots", "Decode slots (serve --parallel)", labels=["model"])
        engines = {name: model.engine for name, model in self.served.models.items()}
        if self.served.specs is not None:
            engines |= self.served.specs.engines
        for name, engine in engines.items():
            queue.add_metric([name], engine.waiting)
            busy.add_metric([name], engine.running)
            slots.add_metric([name], engine.decoder.width)
        yield from (queue, busy, slots)


class Metrics:
    def __init__(self, served):
        disable_created_metrics()  # no `_created` series beside each counter and histogram
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "ijt_requests", "Completion requests finished", ["model", "endpoint"], registry=registry
        )
        self.choices = Counter(
            "ijt_choices",
            "Choices finished (n per request), by finish reason",
            ["model", "finish_reason"],
            registry=registry,
        )
        self.refused = Counter(
            "ijt_refused_requests", "Requests refused with an error status", ["status"], registry=registry
        )
        self.prompt_tokens = Counter(
            "ijt_prompt_tokens", "Prompt tokens of finished requests", ["model"], registry=registry
        )
        self.completion_tokens = Counter(
            "ijt_completion_tokens", "Tokens generated for finished requests", ["model"], registry=registry
        )
        self.first_token = Histogram(
            "ijt_time_to_first_token_seconds",
            "From a request's arrival at its engine to its first token (queue + prefill)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.token_gap = Histogram(
            "ijt_inter_token_seconds",
            "Time between two tokens of one reply",
            ["model"],
            buckets=TOKEN_GAP_BUCKETS,
            registry=registry,
        )
        self.request_seconds = Histogram(
            "ijt_request_seconds",
            "From a request's arrival at its engine to its last token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        registry.register(_Engines(served))

    def finished(self, model: str, event, completion_tokens: int, prompt_tokens: int) -> None:
        """One choice's last event."""
        self.choices.labels(model, event.finish_reason or "unknown").inc()
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.completion_tokens.labels(model).inc(completion_tokens)
        timings = event.timings
        if timings is None:
            return
        if event.completion_tokens:
            self.first_token.labels(model).observe(timings.queue + timings.prompt)
        self.request_seconds.labels(model).observe(timings.queue + timings.prompt + timings.decode)
        gaps = self.token_gap.labels(model)
        for gap in timings.token_gaps:
            gaps.observe(gap)

    def text(self) -> bytes:
        return generate_latest(self.registry)
