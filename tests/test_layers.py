"""The architecture, checked: every import runs down the layers (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pinaivu_local

PACKAGE = Path(pinaivu_local.__file__).parent
# Inside api/: the flow knows no HTTP; the plumbing may use the flow; an API family both; the other
# routes all three; the wiring (app.py, services.py, dependencies.py) everything.
API_LAYERS = {"flow": 0, "http": 1, "openai": 2, "responses": 2, "anthropic": 2, "routes": 3, "wiring": 4}
# Packages the serving core never imports: the engine and the fleet know nothing of HTTP or of records.
BELOW_API = ("pinaivu_local.api", "pinaivu_local.cli")
ENGINE_NEVER = (
    *BELOW_API,
    "pinaivu_local.fleet",
    "pinaivu_local.requestlog",
    "pinaivu_local.receipts",
    "pinaivu_local.keys",
)


def imports(path: Path) -> list[str]:
    """The pinaivu_local modules `path` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pinaivu_local"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("pinaivu_local")]
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def api_layer(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[2] in API_LAYERS else "wiring"


def test_nothing_below_the_api_imports_it() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ("api", "cli", "__main__.py")
        for module in imports(path)
        if module.startswith(BELOW_API)
    ]
    assert not wrong


def test_the_engine_and_the_fleet_stay_below_http_and_records() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in modules("engine") + modules("fleet")
        for module in imports(path)
        if module.startswith(ENGINE_NEVER)
        and not (path.parts[-2] == "fleet" and module.startswith("pinaivu_local.fleet"))
        and not (module.startswith("pinaivu_local.receipts") and path.parts[-2] == "fleet")
    ]
    assert not wrong


def test_inside_the_api_imports_run_from_wiring_to_routes_to_families_to_plumbing_to_the_flow() -> None:
    wrong = []
    for path in modules("api"):
        me = api_layer("pinaivu_local." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for module in imports(path):
            if module.startswith("pinaivu_local.api.") and API_LAYERS[api_layer(module)] > API_LAYERS[me]:
                wrong.append(f"{path.relative_to(PACKAGE)} ({me}) imports {module}")
    assert not wrong
