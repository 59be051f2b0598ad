"""The pydantic models every library is asked for: nested, a datetime, a list, a Literal, optional fields."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class Address(BaseModel):
    street: str
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    name: str
    age: int


class Event(BaseModel):
    title: str
    starts_at: datetime
    kind: Literal["meeting", "call", "party"]
    attendees: list[Person]
    venue: Address
    note: str | None = None


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"] = "celsius"
    where: Address | None = None
