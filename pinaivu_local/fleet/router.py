"""Which node runs a request: among the nodes up and serving the model, the one with most free capacity;
a request that shares its prompt's beginning with an earlier one prefers the node that served that one,
whose KV cache may still hold the prefix."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection

from pinaivu_local.fleet.state import NodeState

# How much of the prompt's beginning identifies a shared prefix (a system prompt, a conversation so far).
PREFIX_BYTES = 512
# Prefixes remembered; the oldest are forgotten first.
MAX_PREFIXES = 4096


class Router:
    """Picks nodes; remembers which node served which prompt prefix."""

    def __init__(self, nodes: list[NodeState]) -> None:
        self._nodes = nodes
        self._served: OrderedDict[str, str] = OrderedDict()
        self._turn = 0  # breaks ties in turn, so equal nodes share the work

    def known(self, model: str) -> bool:
        """Whether any node, up or down, has listed this model."""
        return any(model in node.models for node in self._nodes)

    def candidates(
        self, model: str, exclude: Collection[str] = (), *, model_sha256: str | None = None
    ) -> list[NodeState]:
        """The nodes that could run it now, best first (without looking at the prefix); with `model_sha256`
        only those known to hold that very model file."""
        usable = [
            node
            for node in self._nodes
            if node.serves(model)
            and node.name not in exclude
            and (model_sha256 is None or node.hashes.get(model) == model_sha256)
        ]
        turn = self._turn % len(usable) if usable else 0
        return sorted(usable[turn:] + usable[:turn], key=lambda node: -node.free(model))

    def pick(self, model: str, prefix: str, *, model_sha256: str | None = None) -> list[NodeState]:
        """The nodes to try, in order: the prefix's node first if it has a free slot, then by free capacity."""
        self._turn += 1  # each placement starts the tie-break one node further: equal nodes share the work
        ranked = self.candidates(model, model_sha256=model_sha256)
        preferred = self._served.get(prefix)
        for i, node in enumerate(ranked):
            if node.name == preferred and node.free(model) > 0:
                return [node, *ranked[:i], *ranked[i + 1 :]]
        return ranked

    def served(self, prefix: str, node: str) -> None:
        """Remember that `node` ran a prompt beginning with `prefix`."""
        self._served[prefix] = node
        self._served.move_to_end(prefix)
        while len(self._served) > MAX_PREFIXES:
            self._served.popitem(last=False)


def prefix_key(model: str, scope: str, prompt_json: str) -> str:
    """The identity of a prompt's beginning, per model and cache scope (a key, unless prefixes are shared)."""
    head = prompt_json.encode()[:PREFIX_BYTES]
    return hashlib.sha256(b"\0".join([model.encode(), scope.encode(), head])).hexdigest()
