"""Routing: most free capacity among the nodes up, prefix affinity while that node has room, rotation on ties."""

from __future__ import annotations

from pinaivu_local.fleet.nodes import NodeSpec
from pinaivu_local.fleet.router import Router, prefix_key
from pinaivu_local.fleet.state import ModelLoad, NodeState

MODEL = "llama3.2:1b"


def node(name: str, slots: int = 2, running: int = 0, queued: int = 0, up: bool = True) -> NodeState:
    state = NodeState(NodeSpec(name=name, url=f"http://{name}"))
    state.up({MODEL: ModelLoad({"id": MODEL}, slots, running, queued)})
    if not up:
        state.down("connection refused", "connection")
    return state


def names(nodes: list[NodeState]) -> list[str]:
    return [n.name for n in nodes]


def test_most_free_capacity_first_and_down_nodes_left_out() -> None:
    busy, free, gone = node("busy", running=2, queued=1), node("free", running=1), node("gone", up=False)
    router = Router([busy, free, gone])
    assert names(router.candidates(MODEL)) == ["free", "busy"]
    assert router.known(MODEL) and not router.known("other")
    assert names(router.candidates(MODEL, exclude={"free"})) == ["busy"]


def test_requests_sent_but_not_yet_polled_count_as_load() -> None:
    a, b = node("a"), node("b")
    a.in_flight = 2
    assert names(Router([a, b]).candidates(MODEL)) == ["b", "a"]


def test_ties_rotate_per_placement_only() -> None:
    router = Router([node("a"), node("b")])
    firsts = []
    for _ in range(4):
        router.candidates(MODEL)  # looking (a model check, say) does not turn the rotation
        router.candidates(MODEL)
        firsts.append(names(router.pick(MODEL, "p"))[0])
    assert firsts == ["b", "a", "b", "a"]


def test_a_prefix_prefers_its_node_while_it_has_room() -> None:
    a, b = node("a"), node("b", slots=4)
    router = Router([a, b])
    prefix = prefix_key(MODEL, "key_1", '[{"content":"system prompt"}]')
    router.served(prefix, "a")
    assert names(router.pick(MODEL, prefix)) == ["a", "b"]  # b has more room, a has the prefix
    a.in_flight = 2  # full: room beats the cache
    assert names(router.pick(MODEL, prefix)) == ["b", "a"]
    assert names(router.pick(MODEL, prefix_key(MODEL, "key_2", '[{"content":"system prompt"}]'))) == ["b", "a"]


def test_prefix_key_looks_at_the_beginning_only() -> None:
    head = "x" * 600
    assert prefix_key(MODEL, "", head + "one") == prefix_key(MODEL, "", head + "two")
    assert prefix_key(MODEL, "", "a" + head) != prefix_key(MODEL, "", "b" + head)


def test_requests_that_ended_since_the_last_report_are_not_load() -> None:
    """Right after a burst the last report still shows it running: the node that holds a prefix keeps it
    (a stale report made the gateway send the next question of a conversation elsewhere)."""
    a, b = node("a"), node("b")
    router = Router([a, b])
    prefix = prefix_key(MODEL, "key_1", '[{"content":"system prompt"}]')
    router.served(prefix, "a")
    opened = [a.reports, a.reports]
    a.in_flight = 2
    a.up({MODEL: ModelLoad({"id": MODEL}, 2, running=2)})  # the report counts both as running
    assert a.free(MODEL) == 0 and names(router.pick(MODEL, prefix)) == ["b", "a"]
    for at in opened:
        a.finished(MODEL, at)
    assert a.free(MODEL) == 2 and names(router.pick(MODEL, prefix)) == ["a", "b"]
    before = a.reports
    a.in_flight = 1
    a.up({MODEL: ModelLoad({"id": MODEL}, 2, running=2)})  # ours (opened before it) and another client's
    a.finished(MODEL, before)
    assert a.free(MODEL) == 1
    a.in_flight = 1
    a.finished(MODEL, a.reports)  # opened after the report, which did not count it: nothing to take off
    assert a.free(MODEL) == 1
