"""The admin API for keys: create, list, show, change, revoke, rotate (admin keys only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from pydantic import Field, field_validator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from pinaivu_local.api.http.openapi import error_responses, json_body
from pinaivu_local.api.http.validation import StrictBody, read_body
from pinaivu_local.catalog import Catalog
from pinaivu_local.errors import ValidationFailed
from pinaivu_local.keys.durations import parse_duration
from pinaivu_local.keys.store import MAX_RPM, MAX_TPM, IssuedKey, KeySettings, KeyStore

# The durations parse_duration takes, as the OpenAPI document describes them: a positive number of
# days, hours, minutes or seconds with few enough digits to stay under its bound (100 years) in any unit.
_DURATION = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "pattern": "^([1-9][0-9]{0,3}d|[1-9][0-9]{0,4}h|[1-9][0-9]{0,6}m|[1-9][0-9]{0,8}s)$"},
            {"type": "null"},
        ]
    }
)


class _KeyFields(StrictBody):
    models: list[str] | None = Field(default=None, max_length=100)
    rpm: int | None = Field(default=None, ge=1, le=MAX_RPM)
    tpm: int | None = Field(default=None, ge=1, le=MAX_TPM)


class CreateKey(_KeyFields):
    """POST /admin/keys."""

    name: str = Field(min_length=1, max_length=100)
    admin: bool = False
    expires_in: Annotated[str | None, _DURATION] = Field(
        default=None, description="30d, 12h, 90m or 45s (at most 100 years); absent: never"
    )

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except ValueError as exc:
                raise PydanticCustomError("value_error.duration", str(exc)) from None
        return value

    def expiry(self) -> timedelta | None:
        """expires_in as a timedelta."""
        return parse_duration(self.expires_in) if self.expires_in else None


class UpdateKey(_KeyFields):
    """PATCH /admin/keys/{id}: fields present are changed (null clears a limit)."""

    # Absent leaves the name as it is; null is refused (below), so the document says a string.
    name: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100})] = Field(
        default=None, min_length=1, max_length=100
    )

    @field_validator("name")
    @classmethod
    def _present(cls, value: str | None) -> str:
        if value is None:  # absent is fine (unchanged); an explicit null is not a name
            raise PydanticCustomError("type_error.none.not_allowed", "none is not an allowed value")
        return value


def _check_models(catalog: Catalog, models: list[str] | None) -> None:
    unknown = [m for m in models or [] if m not in catalog.ids()]
    if unknown:
        raise ValidationFailed(
            [
                {
                    "loc": ["body", "models"],
                    "msg": f"unknown model {unknown[0]!r}; known: {', '.join(catalog.ids())}",
                    "type": "value_error.model",
                }
            ]
        )


def _issued(issued: IssuedKey, **extra: Any) -> dict[str, Any]:
    return {**issued.record.public(), "key": issued.key, **extra}


@post(
    "/keys",
    status_code=201,
    summary="Create a key (its clear text is in this response only)",
    operation_class=json_body(CreateKey),
    responses=error_responses(400, 401, 403, 422),
)
async def create_key(
    request: Request[Any, Any, Any], key_store: NamedDependency[KeyStore], catalog: NamedDependency[Catalog]
) -> dict[str, Any]:
    """A new key with a name, optional model list, limits, expiry and admin flag."""
    body = await read_body(request, CreateKey)
    _check_models(catalog, body.models)
    settings = KeySettings(
        name=body.name,
        admin=body.admin,
        models=tuple(body.models or ()),
        rpm=body.rpm,
        tpm=body.tpm,
        expires_in=body.expiry(),
    )
    return _issued(await key_store.call(key_store.create, settings))


@get("/keys", summary="List keys (never their clear text)", responses=error_responses(401, 403))
async def list_keys(key_store: NamedDependency[KeyStore]) -> dict[str, Any]:
    """Every key, newest first."""
    return {"object": "list", "data": [k.public() for k in await key_store.call(key_store.list)]}


@get("/keys/{key_id:str}", summary="Show one key", responses=error_responses(400, 401, 403, 404))
async def show_key(key_store: NamedDependency[KeyStore], key_id: FromPath[str]) -> dict[str, Any]:
    """One key by id."""
    return (await key_store.call(key_store.get, key_id)).public()


@patch(
    "/keys/{key_id:str}",
    summary="Change a key's name, models or limits",
    operation_class=json_body(UpdateKey),
    responses=error_responses(400, 401, 403, 404, 422),
)
async def update_key(
    request: Request[Any, Any, Any],
    key_store: NamedDependency[KeyStore],
    catalog: NamedDependency[Catalog],
    key_id: FromPath[str],
) -> dict[str, Any]:
    """Only the fields present in the body change."""
    body = await read_body(request, UpdateKey)
    _check_models(catalog, body.models)
    changes = body.model_dump(exclude_unset=True)
    if "models" in changes:
        changes["models"] = ",".join(changes["models"] or [])
    return (await key_store.call(key_store.update, key_id, **changes)).public()


@delete("/keys/{key_id:str}", status_code=200, summary="Revoke a key", responses=error_responses(400, 401, 403, 404))
async def revoke_key(key_store: NamedDependency[KeyStore], key_id: FromPath[str]) -> dict[str, Any]:
    """Revoked at once: the next request with it gets 401 revoked_api_key."""
    return (await key_store.call(key_store.revoke, key_id)).public()


@post(
    "/keys/{key_id:str}/rotate",
    status_code=201,
    summary="Revoke a key and issue its replacement",
    responses=error_responses(400, 401, 403, 404, 409),
)
async def rotate_key(key_store: NamedDependency[KeyStore], key_id: FromPath[str]) -> Response[dict[str, Any]]:
    """Same settings, new secret; the old key is revoked."""
    return Response(_issued(await key_store.call(key_store.rotate, key_id), replaces=key_id), status_code=201)
