"""Request bodies, validated as OpenAI validates them (ranges, types, required fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from pinaivu_local.api.flow.request import InferenceRequest
from pinaivu_local.api.http.validation import StrictBody
from pinaivu_local.api.openai.fields import (
    EMPTY_LIST,
    LOGIT_BIAS,
    MAX_LEGACY_LOGPROBS,
    MAX_STOPS,
    MAX_TOP_LOGPROBS,
    NOTHING,
    NULL,
    ONLY_NULL,
    ONLY_ONE,
    PROMPT,
    STOP,
    TOKEN_ID,
    empty,
    not_yet,
)
from pinaivu_local.api.openai.messages import ChatMessage, template_messages
from pinaivu_local.api.openai.structured import (
    ResponseFormat,
    Tool,
    ToolChoice,
    document_structure_rule,
    output_structure,
    structure_digest,
)
from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt, TokenPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import InvalidRequest


class StreamOptions(StrictBody):
    """`stream_options` of a streaming request."""

    include_usage: bool = False
    # OpenAI pads stream events against size side channels; it changes no text: accepted, no padding sent.
    include_obfuscation: bool | None = None


class _Generation(StrictBody):
    """Fields chat and text completions share."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: Annotated[int | None, ONLY_ONE] = None
    stop: Annotated[Any, STOP] = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: Annotated[dict[str, float] | None, LOGIT_BIAS] = Field(
        default=None, description="token id (a string of digits) -> bias from -100 to 100"
    )
    user: str | None = None
    # Not OpenAI: keep generating past end-of-generation tokens, to max_tokens (benchmarks, tests).
    ignore_eos: bool = False

    def has_schemas(self) -> bool:
        """Whether building its inference request compiles JSON schemas into grammars (tools, response_format)."""
        return False

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise PydanticCustomError("value_error.const", "only n=1 is supported; send one request per completion")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise PydanticCustomError("type_error.str", "str type expected, or a list of up to 4 strings")
        if len(value) > MAX_STOPS:
            raise PydanticCustomError(
                "value_error.list.max_items", "ensure this value has at most {limit} items", {"limit": MAX_STOPS}
            )
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            # ASCII digits only (str.isdigit also takes "²"), and few enough to be a token id.
            if not TOKEN_ID.fullmatch(token):
                raise PydanticCustomError("type_error.integer", "logit_bias keys must be token ids (integers)")
            if not -100 <= bias <= 100:
                raise PydanticCustomError("value_error.number", "logit_bias values must be between -100 and 100")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple (empty strings dropped)."""
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)

    def include_usage(self) -> bool:
        """Whether a streaming response ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def sampling(self, logprobs: int | None = None) -> SamplingParams:
        """The sampling fields, OpenAI's defaults where absent; `logprobs`: how many alternatives to report."""
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=self.stop_strings(),
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            logit_bias={int(token): value for token, value in (self.logit_bias or {}).items()},
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
        )


# What each refused chat field asks for, for its error message.
_FEATURES = {
    "audio": "audio output",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
    "reasoning_effort": "reasoning (these models do not reason before answering)",
    "verbosity": "verbosity control",
    "moderation": "moderation",
}


def _chat_rules(schema: dict[str, Any]) -> None:
    """The checks across fields that building the inference request makes (400s), for the document."""
    # top_logprobs above 0 needs logprobs: true (logprobs_asked).
    schema["anyOf"] = [
        {"properties": {"top_logprobs": {"enum": [0, None]}}},
        {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
    ]
    # One rule in anyOf, the other in allOf: schemathesis' coverage phase generates no valid body
    # from an allOf of several anyOf (the same rules, and 40 valid bodies where it finds 400).
    document_structure_rule(schema)


class ChatCompletionRequest(_Generation):
    """POST /v1/chat/completions."""

    model_config = ConfigDict(json_schema_extra=_chat_rules)

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # OpenAI fields we know and do not honour yet: each is refused by name unless it asks for nothing.
    functions: Annotated[list[Any] | None, EMPTY_LIST] = None
    function_call: Annotated[Any, WithJsonSchema({"anyOf": [{"enum": ["none", "auto"]}, *NOTHING]})] = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # Accepted because they cannot change the output (docs/api.md, "Chat and completions").
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = None
    modalities: Annotated[
        list[Literal["text", "audio"]] | None,
        WithJsonSchema({"anyOf": [{"type": "array", "items": {"const": "text"}}, NULL]}),
    ] = None
    # OpenAI features these models do not have: refused by name unless absent (null).
    audio: Annotated[Any, ONLY_NULL] = None
    prediction: Annotated[Any, ONLY_NULL] = None
    web_search_options: Annotated[Any, ONLY_NULL] = None
    reasoning_effort: Annotated[Any, ONLY_NULL] = None
    verbosity: Annotated[Any, ONLY_NULL] = None
    moderation: Annotated[Any, ONLY_NULL] = None

    @field_validator("modalities")
    @classmethod
    def _text_out(cls, value: list[str] | None) -> list[str] | None:
        if value and "audio" in value:
            raise PydanticCustomError(
                "value_error.unsupported", "these models write text only; send modalities ['text'] or omit it"
            )
        return value

    @field_validator("audio", "prediction", "web_search_options", "reasoning_effort", "verbosity", "moderation")
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise PydanticCustomError(
                "value_error.unsupported",
                f"{_FEATURES[info.field_name or '']} is not available on these models; "
                f"send the request without `{info.field_name}`",
            )
        return value

    @field_validator("functions", "function_call")
    @classmethod
    def _no_functions(cls, value: Any, info: ValidationInfo) -> Any:
        if not empty(value) and value not in ("none", "auto"):
            raise not_yet(
                f"`{info.field_name}` (deprecated by OpenAI; use `tools` / `tool_choice`)", info.field_name or ""
            )
        return value

    def logprobs_asked(self) -> int | None:
        """How many alternatives to report per token when `logprobs` is true, else None.

        400 for top_logprobs without logprobs, as OpenAI answers (0 asks for nothing and is accepted).
        """
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest(
                "top_logprobs needs logprobs: send logprobs: true with it, or omit top_logprobs.", param="top_logprobs"
            )
        return (self.top_logprobs or 0) if self.logprobs else None

    def token_limit(self) -> int | None:
        """max_completion_tokens, else the older max_tokens."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def has_schemas(self) -> bool:
        """Whether building its inference request compiles JSON schemas into grammars (tools, response_format)."""
        return bool(self.tools) or self.response_format is not None

    def inference_request(self) -> InferenceRequest:
        """The conversation as the inference flow takes it; the messages as sent are committed to."""
        structure = output_structure(self.tools, self.tool_choice, self.response_format)
        return InferenceRequest(
            kind="chat",
            model=self.model,
            source=ChatPrompt(template_messages(self.messages), structure.template_tools),
            sampling=self.sampling(self.logprobs_asked()),
            max_tokens=self.token_limit(),
            committed_input=[m.model_dump(exclude_none=True) for m in self.messages],
            include_usage=self.include_usage(),
            constraint=structure.constraint,
            tool_names=structure.tool_names,
            structure_digest=structure_digest(self.structure_fields()),
            node_fields=self.structure_fields() or None,
        )

    def structure_fields(self) -> dict[str, Any]:
        """tools, tool_choice, parallel_tool_calls and response_format as sent (what a replay needs)."""
        return self.model_dump(
            include={"tools", "tool_choice", "parallel_tool_calls", "response_format"}, exclude_none=True, by_alias=True
        )


class CompletionRequest(_Generation):
    """POST /v1/completions (legacy text completion)."""

    prompt: Annotated[Any, PROMPT] = Field(
        description="a string or a list of token ids (or a list holding one of those)"
    )
    max_tokens: int | None = Field(default=16, ge=1)
    echo: Annotated[bool | None, WithJsonSchema({"anyOf": [{"const": False}, NULL]})] = False
    suffix: Annotated[str | None, WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 0}, NULL]})] = None
    # Legacy shape: the sampled token's logprob and this many most likely tokens at each position.
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LEGACY_LOGPROBS)
    best_of: Annotated[int | None, ONLY_ONE] = None

    @field_validator("best_of")
    @classmethod
    def _one_of_one(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise PydanticCustomError(
                "value_error.const", "only best_of=1 is supported; send one request per completion"
            )
        return value

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
            value = value[0]
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return value
        if isinstance(value, list) and len(value) > 1 and all(isinstance(p, str | list) for p in value):
            raise PydanticCustomError("value_error.list.max_items", "only one prompt per request is supported")
        raise PydanticCustomError("type_error.str", "str type expected, or a list of token ids")

    def inference_request(self) -> InferenceRequest:
        """The prompt, text or token ids, as the inference flow takes it."""
        source = TextPrompt(self.prompt) if isinstance(self.prompt, str) else TokenPrompt(self.prompt)
        return InferenceRequest(
            kind="text",
            model=self.model,
            source=source,
            sampling=self.sampling(self.logprobs),
            max_tokens=self.max_tokens,
            committed_input=self.prompt,
            include_usage=self.include_usage(),
        )

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool | None) -> bool | None:
        if value:
            raise PydanticCustomError("value_error.const", "echo is not supported; the prompt is yours already")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise PydanticCustomError("value_error.const", "suffix (fill-in-the-middle) is not supported")
        return value
