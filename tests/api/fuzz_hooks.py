"""Schemathesis hooks for test_fuzz.py: the published document, narrowed to what a client knows beforehand.

The fuzzer learns the catalog's model ids, a request id and a key id that exist (each path parameter
is still generated freely half of the time), and asks for few tokens: the tiny models are fast, but a
thousand generations of a whole context would not be. Everything else is the document as served.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

# JSON: {"models": [...], "max_tokens": n, and a value for any path parameter by name: "request_id": ...}
TARGETS_ENV = "PINAIVU_FUZZ_TARGETS"
_GENERATING = ("/v1/chat/completions", "/v1/completions")
# Generating routes whose budget is max_output_tokens, always set (the Responses API).
_OUTPUT_BUDGET = ("/v1/responses",)


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    """Narrow the document in place before schemathesis reads it (in `st run`, given the targets)."""
    # Importing this module registers the hook in any process, the test's own too: it does nothing there.
    targets = os.environ.get(TARGETS_ENV)
    if targets:
        narrow(raw_schema, json.loads(targets))


def narrow(document: dict[str, Any], targets: dict[str, Any]) -> None:
    """Known model ids and ids, and small token budgets, in `document` (an OpenAPI 3.1 dict)."""
    models = {"enum": targets["models"]}
    budget = {"type": "integer", "minimum": 1, "maximum": targets["max_tokens"]}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                known = targets.get(parameter["name"])
                if parameter["in"] == "path" and known is not None:
                    parameter["schema"] = {"anyOf": [{"enum": [known]}, parameter["schema"]]}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                continue
            fields = body["properties"]
            if path in _GENERATING:
                fields["model"] = models
                # Without a budget a chat completion runs to the end of the context: one is always set.
                fields["max_tokens"] = budget
                if "max_completion_tokens" in fields:
                    fields["max_completion_tokens"] = budget
                    body["required"] = [*body.get("required", []), "max_completion_tokens"]
            elif path in _OUTPUT_BUDGET:
                fields["model"] = models
                fields["max_output_tokens"] = budget
                body["required"] = [*body.get("required", []), "max_output_tokens"]
            elif "models" in fields:  # the admin API's keys: models of the catalog
                fields["models"] = {"anyOf": [{"type": "array", "items": models, "maxItems": 100}, {"type": "null"}]}
