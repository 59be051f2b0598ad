"""The `pinaivu-local` group: every command answers --help, and each takes the one --data-dir option."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pinaivu_local.cli import main

LEAVES = [
    ["serve"],
    ["models", "list"],
    ["models", "pull"],
    ["models", "rm"],
    ["doctor"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["keys", "rotate"],
    ["bench"],
]


@pytest.mark.parametrize("args", [[], ["models"], ["keys"], *LEAVES])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.parametrize("args", LEAVES)
def test_one_data_dir_option_everywhere(args: list[str]) -> None:
    help_text = " ".join(CliRunner().invoke(main, [*args, "--help"]).output.split())
    assert "--data-dir DIRECTORY Data directory [PINAIVU_DATA_DIR]." in help_text
