"""Every `lcm ...` command the README and docs/ show names a command that exists and only
options it has: a renamed option or command cannot leave the docs behind."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from publisher.cli import app
from tests.test_readme import ROOT

runner = CliRunner()


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("lcm "):
                    found.append((path.name, line))
        found += [(path.name, m) for m in re.findall(r"`(lcm [a-z][^`]*)`", text)]
    return found


HELP: dict[tuple[str, ...], str] = {}


def help_of(words: tuple[str, ...]) -> str:
    if words not in HELP:
        result = runner.invoke(app, [*words, "--help"], terminal_width=300)
        HELP[words] = result.output if result.exit_code == 0 else ""
    return HELP[words]


def test_the_docs_show_commands() -> None:
    assert len(documented_commands()) > 100


@pytest.mark.parametrize(("doc", "line"), documented_commands())
def test_documented_command_exists_with_its_options(doc: str, line: str) -> None:
    try:
        tokens = shlex.split(line)[1:]
    except ValueError:  # an unfinished quote in running text: nothing to check
        return
    words: tuple[str, ...] = ()
    while tokens and re.fullmatch(r"[a-z][a-z-]*", tokens[0]) and "Commands" in help_of(words):
        words += (tokens.pop(0),)
    text = help_of(words)
    assert text, f"{doc}: `{line}`: no command `lcm {' '.join(words)}`"
    for token in tokens:
        if token.startswith("--"):
            option = token.split("=")[0]
            assert option in text, f"{doc}: `{line}`: `lcm {' '.join(words)}` has no {option}"
