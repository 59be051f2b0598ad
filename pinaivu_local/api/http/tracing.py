"""Traces (PINAIVU_OTLP_ENDPOINT): one OpenTelemetry span per inference request, with its phases.

The span follows OpenTelemetry's GenAI semantic conventions ("chat llama3.2:1b", gen_ai.* attributes)
and continues the trace of an incoming W3C `traceparent`. While the request is served the span is the
current one in OpenTelemetry's context, which is how a gateway's node requests carry it on
(fleet/fleet.py). Its phases are child spans timed from what the request already measured: auth (to
the key's check), limits (from there to the generation's start: the body, the checks, the rate limit's
reservation), queue, prefill (to the first token), decode (to the end) and record (the record's write).

Off (the default), nothing is created: no provider, no exporter, no thread, no span.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pinaivu_local import __version__
from pinaivu_local.api.http.context import RequestContext
from pinaivu_local.settings import Settings

# The inference endpoints (POST) that get a span, and the GenAI operation each one is.
TRACED = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/messages": "chat",
    "/v1/responses": "chat",
}
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent / tracestate; holds no state


@contextlib.contextmanager
def open_tracer(settings: Settings) -> Iterator[Tracer | None]:
    """A tracer exporting to the OTLP endpoint, flushed and shut down on exit; None when it is not set."""
    if settings.otlp_endpoint is None:
        yield None
        return
    resource = Resource.create({"service.name": "pinaivu-local", "service.version": __version__})
    provider = TracerProvider(resource=resource)  # ours alone: OpenTelemetry's global provider stays untouched
    # The batch's delay and sizes are the SDK's, tunable with its OTEL_BSP_* environment variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))))
    try:
        yield provider.get_tracer("pinaivu_local", __version__)
    finally:
        provider.shutdown()  # sends what the batch still holds


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: OTLP/HTTP's /v1/traces under a base URL, or the full URL as given."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


@dataclass
class RequestSpan:
    """The span of one request being served, current in OpenTelemetry's context until it finishes."""

    tracer: Tracer
    span: Span
    operation: str
    started_ns: int
    _token: object

    def finish(self, context: RequestContext, status: int) -> None:
        """Name it, give it the request's attributes and phases, and end it."""
        ended_ns = time.time_ns()
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span = self.span
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("gen_ai.operation.name", self.operation)
        run, record = context.run, context.run.record if context.run else None
        if context.model_id is not None:
            span.update_name(f"{self.operation} {context.model_id}")
        if run is not None:
            request = run.request
            span.set_attribute("pinaivu.request_id", run.request_id)
            span.set_attribute("gen_ai.request.model", request.model)
            span.set_attribute("gen_ai.request.temperature", request.sampling.temperature)
            span.set_attribute("gen_ai.request.top_p", request.sampling.top_p)
            if request.max_tokens is not None:
                span.set_attribute("gen_ai.request.max_tokens", request.max_tokens)
            if request.sampling.seed is not None:
                span.set_attribute("gen_ai.request.seed", request.sampling.seed)
        if record is not None:
            span.set_attribute("gen_ai.response.model", record.model_id)
            span.set_attribute("gen_ai.response.id", record.request_id)
            span.set_attribute("gen_ai.usage.input_tokens", record.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", record.completion_tokens)
            if record.finish_reason is not None:
                span.set_attribute("gen_ai.response.finish_reasons", [record.finish_reason])
            if record.node is not None:
                span.set_attribute("pinaivu.node", record.node)
        if status >= 500:
            span.set_status(StatusCode.ERROR, f"HTTP {status}")
        self._phases(context, ended_ns)
        span.end(end_time=ended_ns)

    def _phases(self, context: RequestContext, ended_ns: int) -> None:
        """The phases as child spans, each where the request measured it."""
        phases: list[tuple[str, int, int]] = []
        authenticated = context.authenticated_ns
        if authenticated is not None:
            phases.append(("auth", self.started_ns, authenticated))
        run = context.run
        record = run.record if run else None
        if run is not None and record is not None and run.ended_ns is not None and record.total_ms is not None:
            # The generation's own clock, anchored where it ended (its total runs to the run's end).
            start = run.ended_ns - _ns(record.total_ms)
            queued = start + _ns(record.queue_ms or 0.0)
            if authenticated is not None:
                phases.append(("limits", authenticated, start))
            phases.append(("queue", start, queued))
            if record.ttft_ms is not None:
                first = start + _ns(record.ttft_ms)
                phases += [("prefill", queued, first), ("decode", first, run.ended_ns)]
            else:
                phases.append(("prefill", queued, run.ended_ns))  # ended before its first token
            phases.append(("record", run.ended_ns, run.recorded_ns or ended_ns))
        parent = trace.set_span_in_context(self.span)
        for name, begin, end in phases:
            child = self.tracer.start_span(name, context=parent, start_time=begin)
            child.end(end_time=max(begin, end))


def start_span(tracer: Tracer | None, scope: Any) -> RequestSpan | None:
    """The span of an inference request, made current; None for anything else or when tracing is off."""
    if tracer is None or scope.get("method") != "POST":
        return None
    operation = TRACED.get(scope.get("path", "").rstrip("/"))
    if operation is None:
        return None
    started_ns = time.time_ns()
    parent = _PROPAGATOR.extract(scope.get("headers", ()), getter=_ASGI_HEADERS)
    span = tracer.start_span(operation, context=parent, kind=SpanKind.SERVER, start_time=started_ns)
    span.set_attribute("http.request.method", "POST")
    span.set_attribute("url.path", scope.get("path", ""))
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return RequestSpan(tracer, span, operation, started_ns, token)


def _ns(ms: float) -> int:
    return int(ms * 1_000_000)


class _AsgiHeaders(Getter[Any]):
    """Reads a header from an ASGI scope's list of (name, value) byte pairs."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        wanted = key.lower().encode()
        found = [value.decode("latin-1") for name, value in carrier if name.lower() == wanted]
        return found or None

    def keys(self, carrier: Any) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_ASGI_HEADERS = _AsgiHeaders()
