"""What the HTTP plumbing needs of the app's services, read from the app's state.

The lifespan (api/app.py) puts the whole Services there (api/services.py); the plumbing states here
the few it uses, so that it depends on them and not on the wiring above it.
"""

from __future__ import annotations

from typing import Any, Protocol

from opentelemetry.trace import Tracer

from pinaivu_local.api.flow.metrics import Metrics
from pinaivu_local.api.http.auth import KeyAuthenticator
from pinaivu_local.api.http.in_flight import InFlight
from pinaivu_local.ratelimit.limits import Limiter
from pinaivu_local.settings import Settings

# The one key the lifespan uses in the app's state.
STATE_KEY = "services"


class PlumbingServices(Protocol):
    """The services guards and middleware use."""

    @property
    def settings(self) -> Settings: ...

    @property
    def authenticator(self) -> KeyAuthenticator: ...

    @property
    def in_flight(self) -> InFlight: ...

    @property
    def limiter(self) -> Limiter: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def tracer(self) -> Tracer | None: ...


def state_services(state: Any) -> Any:
    """What the lifespan put in the app's state; RuntimeError before it has."""
    services = state.get(STATE_KEY)
    if services is None:
        raise RuntimeError("the app's lifespan has not opened its services")
    return services


def plumbing_of(app: Any) -> PlumbingServices:
    """The services of a running app, as guards and middleware use them."""
    services: PlumbingServices = state_services(app.state)
    return services
