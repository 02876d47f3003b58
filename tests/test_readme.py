"""The README's commands are real: every `nfbench ...` it shows exists and answers --help."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from nfbench.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def test_setup_commands_come_first():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    first = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert first == ['pip install -e ".[dev,torch]"', "nfbench demo"]
    assert blocks[1].strip() == "pytest"


def test_every_command_in_the_readme_exists():
    commands = set(re.findall(r"`nfbench ((?:data )?[a-z]+)", README.read_text()))
    assert {"demo", "evaluate", "report", "models", "data check", "data phantom", "data split", "data slice"} <= commands
    for command in commands:
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output)
