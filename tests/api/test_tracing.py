"""Traces (PINAIVU_OTLP_ENDPOINT): real servers send their spans over OTLP/HTTP to a collector the test runs."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pinaivu_local.api.http.tracing import open_tracer, traces_url
from pinaivu_local.settings import Settings
from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels, start_server, write_catalog

# The SDK sends its batch every 100 ms instead of every 5 s: the tests poll for spans, never sleep.
TRACE_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
PHASES = ["auth", "limits", "queue", "prefill", "decode", "record"]


@dataclass
class Span:
    """One span as the collector received it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    service: str


class Collector:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: POST /v1/traces with protobuf bodies, kept as Spans."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                ok = self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf"
                if ok:
                    collector.receive(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    span = Span(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        start=s.start_time_unix_nano,
                        end=s.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        service=str(resource.get("service.name")),
                    )
                    with self.lock:
                        self.spans.append(span)

    def request_span(self, request_id: str, timeout: float = 30) -> Span:
        """The span of the request `request_id`, waited for."""
        return self.wait(lambda s: s.attributes.get("pinaivu.request_id") == request_id, timeout)[0]

    def wait(self, match: Any, timeout: float = 30, count: int = 1) -> list[Span]:
        """The spans `match` accepts, once there are `count` of them (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if match(s)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} spans within {timeout}s; received {self.spans}")
            time.sleep(0.05)

    def children(self, parent: Span, count: int) -> list[Span]:
        """The child spans of `parent`, once `count` have arrived, in start order."""
        found = self.wait(lambda s: s.parent_id == parent.span_id, count=count)
        return sorted(found, key=lambda s: (s.start, PHASES.index(s.name) if s.name in PHASES else 99))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class Traced:
    collector: Collector
    node: RunningServer
    gateway: RunningServer


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[Traced]:
    """A node and a gateway in front of it (pure, --no-local), both tracing to one collector."""
    workdir = tmp_path_factory.mktemp("traced")
    catalog = write_catalog(workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512}})
    collector = Collector()
    servers: list[RunningServer] = []
    try:
        env = {**TRACE_ENV, "PINAIVU_OTLP_ENDPOINT": collector.url}
        (workdir / "node").mkdir()
        node = start_server(workdir / "node", "--models-file", str(catalog), env=env)
        servers.append(node)
        nodes = workdir / "nodes.toml"
        nodes.write_text(f'[nodes.n1]\nurl = "{node.base_url}"\napi_key_env = "NODE_KEY"\nslots = 2\n')
        (workdir / "gw").mkdir()
        gw_env = {**env, "NODE_KEY": TEST_KEY, "PINAIVU_NODE_POLL_S": "0.5"}
        gateway = start_server(workdir / "gw", "--nodes", str(nodes), "--no-local", env=gw_env)
        servers.append(gateway)
        _wait_node_up(gateway)
        yield Traced(collector, node, gateway)
    finally:
        for server in servers:
            server.stop()
        collector.close()


def _wait_node_up(gateway: RunningServer) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = httpx.get(f"{gateway.base_url}/health", headers=AUTH, timeout=10).json()
        if all(n["state"] == "up" for n in health["nodes"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"the node is not up at the gateway: {health}")


def test_one_chat_is_one_span_with_the_genai_attributes_and_its_phases(traced: Traced) -> None:
    client = openai.OpenAI(api_key=TEST_KEY, base_url=traced.node.v1, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2:1b",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0.5,
        top_p=0.9,
    )
    answer = raw.parse()
    request_id = raw.headers["x-request-id"]
    span = traced.collector.request_span(request_id)
    assert span.name == "chat llama3.2:1b" and span.kind == 2  # SPAN_KIND_SERVER
    assert span.service == "pinaivu-local" and span.parent_id == ""
    assert answer.usage is not None
    assert span.attributes == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "llama3.2:1b",
        "gen_ai.request.max_tokens": 5,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.response.model": "llama3.2:1b",
        "gen_ai.response.id": request_id,
        "gen_ai.response.finish_reasons": [answer.choices[0].finish_reason],
        "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": answer.usage.completion_tokens,
        "pinaivu.request_id": request_id,
    }
    phases = traced.collector.children(span, count=len(PHASES))
    assert [p.name for p in phases] == PHASES
    assert all(p.trace_id == span.trace_id for p in phases)
    # One after the other, within the request's span.
    assert span.start <= phases[0].start
    for before, after in itertools.pairwise(phases):
        assert before.start <= before.end <= after.start + 1_000  # rounding of the record's ms
    assert phases[-1].end <= span.end


def test_a_clients_traceparent_makes_the_span_its_child(traced: Traced) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = httpx.post(
        f"{traced.node.v1}/completions",
        json={"model": "llama3.2:1b", "prompt": "hi", "max_tokens": 3},
        headers={**AUTH, "traceparent": f"00-{trace_id}-{parent}-01"},
        timeout=60,
    )
    assert response.status_code == 200
    span = traced.collector.request_span(response.headers["x-request-id"])
    assert (span.trace_id, span.parent_id) == (trace_id, parent)
    assert span.name == "text_completion llama3.2:1b"
    assert span.attributes["gen_ai.operation.name"] == "text_completion"


def test_a_gateways_node_spans_are_in_the_gateways_trace(traced: Traced) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    response = httpx.post(
        f"{traced.gateway.v1}/chat/completions",
        json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        headers={**AUTH, "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
        timeout=60,
    )
    assert response.status_code == 200
    at_gateway = traced.collector.request_span(response.headers["x-request-id"])
    assert at_gateway.trace_id == trace_id and at_gateway.attributes["pinaivu.node"] == "n1"
    # The node's own span: a child of the gateway's, in the same trace, with its own phases.
    at_node = traced.collector.wait(lambda s: s.parent_id == at_gateway.span_id and s.name == "chat llama3.2:1b")[0]
    assert at_node.trace_id == trace_id
    assert at_node.attributes["pinaivu.request_id"] != at_gateway.attributes["pinaivu.request_id"]
    assert at_node.attributes["gen_ai.usage.output_tokens"] == at_gateway.attributes["gen_ai.usage.output_tokens"]
    assert [p.name for p in traced.collector.children(at_node, count=len(PHASES))] == PHASES


def test_a_refused_request_is_a_span_with_its_status_and_no_run(traced: Traced) -> None:
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    response = httpx.post(
        f"{traced.node.v1}/chat/completions",
        json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer wrong", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        timeout=60,
    )
    assert response.status_code == 401
    span = traced.collector.wait(lambda s: s.trace_id == trace_id)[0]
    assert span.name == "chat" and span.attributes["http.response.status_code"] == 401
    assert "pinaivu.request_id" not in span.attributes


def test_the_traces_url_and_off_by_default() -> None:
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://collector/v1/traces/") == "http://collector/v1/traces"
    assert Settings(_env_file=None).otlp_endpoint is None  # type: ignore[call-arg]


def test_off_no_exporter_and_no_thread() -> None:
    before = set(threading.enumerate())
    with open_tracer(Settings(otlp_endpoint=None)) as tracer:
        assert tracer is None and set(threading.enumerate()) == before
    # On, the batch's thread runs while the server does and is gone once the tracer is shut down.
    with open_tracer(Settings(otlp_endpoint="http://127.0.0.1:9")) as tracer:
        assert tracer is not None and set(threading.enumerate()) > before
    assert set(threading.enumerate()) == before
