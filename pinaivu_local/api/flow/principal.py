"""Who is calling, as the flow sees it: a key's id, name, permissions and limits."""

from __future__ import annotations

from dataclasses import dataclass

from pinaivu_local.errors import PermissionDenied
from pinaivu_local.ratelimit.limits import Limits


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a key's id, name, permissions and limits."""

    key_id: str
    name: str
    admin: bool
    models: tuple[str, ...]
    limits: Limits

    def check_model(self, model_id: str) -> None:
        """PermissionDenied unless this key may use `model_id`."""
        if self.models and model_id not in self.models:
            raise PermissionDenied(
                f"This API key ({self.name!r}) may not use the model `{model_id}`; it is limited to "
                f"{', '.join(self.models)}. Ask an admin to add it, or use another key.",
                param="model",
            )
