"""The nodes file: what it may say, and the errors that name the node and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinaivu_local.errors import ConfigError
from pinaivu_local.fleet.nodes import load_nodes


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    return path


def test_nodes_with_keys_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOX_A_KEY", "sk-pnv-a")
    nodes = load_nodes(
        write(
            tmp_path,
            '[nodes.box-a]\nurl = "http://192.0.2.10:8080/"\napi_key_env = "BOX_A_KEY"\n'
            '[nodes.box-b]\nurl = "http://192.0.2.11:8080"\nkind = "openai"\nslots = 4\n',
        )
    )
    assert [(n.name, n.v1, n.kind, n.api_key, n.slots) for n in nodes] == [
        ("box-a", "http://192.0.2.10:8080/v1", "pinaivu", "sk-pnv-a", 1),
        ("box-b", "http://192.0.2.11:8080/v1", "openai", None, 4),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [nodes.NAME] table"),
        ('[node.a]\nurl = "http://h"\n', "unknown table 'node'"),
        ('[nodes.a]\nurl = "h:8080"\n', "nodes.a.url: Value error, must start with http://"),
        ('[nodes.a]\nurl = "http://h"\nkind = "vllm"\n', "nodes.a.kind"),
        ('[nodes.a]\nurl = "http://h"\napi_key = "sk-pnv-x"\n', "nodes.a.api_key: Extra inputs"),
        ('[nodes.a]\nurl = "http://h"\napi_key_env = "PINAIVU_TEST_UNSET_KEY"\n', "PINAIVU_TEST_UNSET_KEY is not set"),
        ('[nodes.local]\nurl = "http://h"\n', "the gateway's own engine"),
        ('[nodes.a]\nurl = "http://gw:sk-pnv-x@h:8080"\n', "nodes.a.url: Value error, holds a user name or password"),
        ('[nodes.a]\nurl = "https://user@h"\n', "name that variable with api_key_env"),
        ('[nodes.a]\nurl = "http://h/?key=sk-pnv-x"\n', "has a query or fragment"),
        ("[nodes.a\n", "not valid TOML"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_nodes(write(tmp_path, text))
    assert message in caught.value.message and str(tmp_path) in caught.value.message


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the nodes file"):
        load_nodes(tmp_path / "absent.toml")
