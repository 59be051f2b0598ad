"""`pinaivu-local doctor` checks the services it is configured with: Postgres, Redis, a gateway's nodes."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.cli.doctor_services import check_nodes, check_redis, masked
from pinaivu_local.storage.database import Database
from pinaivu_local.storage.migrations import names
from pinaivu_local.storage.probe import probe_server
from tests.helpers import TEST_KEY, RunningServer, TinyModels, free_port, write_catalog


def doctor(tmp_path: Path, tiny_models: TinyModels, **env: str) -> Result:
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.q8), "n_ctx": 512}})
    where = ["--models-file", str(tmp_path / "models.toml"), "--data-dir", str(tmp_path / "d")]
    settings = {"PINAIVU_WEIGHT_REPACK": "off", "PINAIVU_N_GPU_LAYERS": None, **env}
    return CliRunner().invoke(main, ["doctor", "--json", *where], env=settings)


def write_nodes(path: Path, nodes: dict[str, str]) -> Path:
    path.write_text("".join(f'[nodes.{n}]\nurl = "{u}"\napi_key_env = "NODE_KEY"\n\n' for n, u in nodes.items()))
    return path


def table_names(url: str) -> set[str]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_postgres_fresh_migrated_and_changed_by_nothing(postgres_url: str) -> None:
    fresh = probe_server(postgres_url, 5.0)
    assert fresh["problem"] is None and fresh["connected"] and fresh["writable"]
    assert fresh["migrations_applied"] == 0 and fresh["migrations_pending"] == names()
    assert table_names(postgres_url) == set()  # the probe's _migrations and its row were rolled back
    Database(postgres_url).close()
    migrated = probe_server(postgres_url, 5.0)
    assert migrated["problem"] is None and migrated["writable"]
    assert migrated["migrations_applied"] == len(names()) and migrated["migrations_pending"] == []
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        recorded = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
    assert recorded == set(names())


def test_postgres_newer_schema_and_a_user_who_may_only_read(postgres_url: str) -> None:
    Database(postgres_url).close()
    bare = postgres_url.replace("+psycopg", "")
    with psycopg.connect(bare, autocommit=True) as conn:
        conn.execute("CREATE ROLE doctor_reader LOGIN")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO doctor_reader")
    reader = postgres_url.replace("postgres@", "doctor_reader@")
    row = probe_server(reader, 5.0)
    assert row["connected"] and not row["writable"]
    assert row["problem"] == "cannot write: permission denied for table _migrations"
    with psycopg.connect(bare, autocommit=True) as conn:
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', now())")
        conn.execute("DROP OWNED BY doctor_reader")
        conn.execute("DROP ROLE doctor_reader")
    newer = probe_server(postgres_url, 5.0)
    assert newer["problem"] == "written by a newer pinaivu-local (migrations m999_from_the_future); upgrade to use it"


def test_postgres_stopped() -> None:
    row = probe_server(f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/nothing", 2.0)
    assert not row["connected"] and row["url"].startswith("postgresql+psycopg://postgres:***@127.0.0.1:")
    assert row["problem"].startswith("cannot connect: ") and "refused" in row["problem"]


def test_redis_running_and_stopped(redis_url: str) -> None:
    row = check_redis(redis_url, 2.0)
    assert row["problem"] is None and row["connected"] and row["script"] and row["server_version"]
    stopped = check_redis(f"redis://:pw@127.0.0.1:{free_port()}/0", 2.0)
    assert not stopped["connected"] and stopped["url"].startswith("redis://:***@127.0.0.1:")
    assert stopped["problem"].startswith("cannot connect: ") and "refused" in stopped["problem"]


def test_nodes_reachable_stopped_and_refusing_the_key(
    tmp_path: Path, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    listed = write_nodes(tmp_path / "nodes.toml", {"up": server.base_url, "gone": gone})
    monkeypatch.setenv("NODE_KEY", TEST_KEY)
    up, down = check_nodes(listed, 5.0)["nodes"]
    identity = json_get(f"{server.v1}/node")
    assert up["problem"] is None and up["node_id"] == identity["node_id"]
    assert up["key_id"] == identity["current_key"]["key_id"]
    assert sorted(up["models"]) == ["llama3.2:1b", "llama3.2:3b"]
    assert down["problem"].startswith("unreachable (ConnectError")
    monkeypatch.setenv("NODE_KEY", "sk-pnv-not-" + "x" * 40)
    (refused,) = check_nodes(write_nodes(tmp_path / "one.toml", {"up": server.base_url}), 5.0)["nodes"]
    assert refused["problem"] == "refuses the key this gateway presents (HTTP 401 from /v1/models)"
    assert check_nodes(tmp_path / "missing.toml")["problem"].startswith(f"{tmp_path / 'missing.toml'}: cannot read")


def json_get(url: str) -> dict[str, object]:
    import httpx

    body = httpx.get(url).json()
    assert isinstance(body, dict)
    return body


def test_doctor_checks_every_configured_service(
    tmp_path: Path, tiny_models: TinyModels, postgres_url: str, redis_url: str, server: RunningServer
) -> None:
    Database(postgres_url).close()
    listed = write_nodes(tmp_path / "nodes.toml", {"box": server.base_url})
    env = {
        "PINAIVU_DATABASE_URL": postgres_url,
        "PINAIVU_REDIS_URL": redis_url,
        "PINAIVU_NODES_FILE": str(listed),
        "NODE_KEY": TEST_KEY,
    }
    result = doctor(tmp_path, tiny_models, **env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    services = report["services"]
    assert services["postgres"]["writable"] and services["postgres"]["migrations_pending"] == []
    assert services["redis"]["script"] and services["nodes"]["nodes"][0]["problem"] is None
    assert [p for p in report["problems"] if p["level"] == "error"] == []


def test_doctor_names_each_stopped_service(tmp_path: Path, tiny_models: TinyModels) -> None:
    port, redis_port, node_port = free_port(), free_port(), free_port()
    listed = write_nodes(tmp_path / "nodes.toml", {"edge": f"http://127.0.0.1:{node_port}"})
    env = {
        "PINAIVU_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/gone",
        "PINAIVU_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PINAIVU_NODES_FILE": str(listed),
        "NODE_KEY": TEST_KEY,
    }
    result = doctor(tmp_path, tiny_models, **env)
    assert result.exit_code == 1
    errors = [p["message"] for p in json.loads(result.output)["problems"] if p["level"] == "error"]
    assert len(errors) == 3, errors
    assert errors[0].startswith(f"postgres postgresql+psycopg://postgres@127.0.0.1:{port}/gone: cannot connect: ")
    assert errors[1].startswith(f"redis redis://127.0.0.1:{redis_port}/0: cannot connect: ")
    assert errors[2].startswith(f"node edge (http://127.0.0.1:{node_port}): unreachable")
    text = CliRunner().invoke(
        main,
        ["doctor", "--models-file", str(tmp_path / "models.toml"), "--data-dir", str(tmp_path / "d")],
        env={"PINAIVU_WEIGHT_REPACK": "off", **env},
    )
    assert text.exit_code == 1
    where = f"postgresql+psycopg://postgres@127.0.0.1:{port}/gone"
    assert f"postgres         {where} (PROBLEM: cannot connect" in text.output
    assert f"node             edge http://127.0.0.1:{node_port} (PROBLEM: unreachable" in text.output


def test_masked() -> None:
    assert masked("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert masked("redis://h:6379/0") == "redis://h:6379/0"


def test_nodes_against_the_keys_the_gateway_pinned(
    tmp_path: Path, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pinaivu_local.cli.doctor_services import pinned_keys
    from pinaivu_local.clock import utcnow
    from pinaivu_local.fleet.pins import NodePin, NodePins, node_keys
    from pinaivu_local.settings import Settings

    monkeypatch.setenv("NODE_KEY", TEST_KEY)
    listed = write_nodes(tmp_path / "nodes.toml", {"box": server.base_url})
    settings = Settings(data_dir=tmp_path / "gateway")
    assert pinned_keys(settings) == {}  # no database yet: nothing pinned, and none created
    assert not settings.database.exists()
    (unpinned,) = check_nodes(listed, 5.0, pins={})["nodes"]
    assert unpinned["problem"] is None and unpinned["pinned"] is False

    database = Database(settings.database)
    try:
        NodePins(database).trust("box", server.base_url, node_keys(json_get(f"{server.v1}/node")))
    finally:
        database.close()
    pins = pinned_keys(settings)
    assert pins is not None and set(pins) == {"box"}
    (pinned,) = check_nodes(listed, 5.0, pins=pins)["nodes"]
    assert pinned["problem"] is None and pinned["pinned"] is True

    other = NodePin(
        name="box", url=server.base_url, node_id="node-else", key_id="k-else", public_key="AA==", pinned_at=utcnow()
    )
    (changed,) = check_nodes(listed, 5.0, pins={"box": other})["nodes"]
    assert "not the key k-else of node node-else the gateway pinned" in changed["problem"]
    assert "pinaivu-local nodes trust box" in changed["problem"]
