"""The README's capability examples run as they are, and its command lines name real commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai.backend.common.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- capabilities:begin -->", "<!-- capabilities:end -->"


def _section() -> str:
    text = README.read_text()
    assert BEGIN in text, f"{README} lacks the {BEGIN} marker"
    return text[text.index(BEGIN) : text.index(END)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), re.S)


def test_section_has_the_examples() -> None:
    assert len(_blocks("python")) >= 8
    assert "Delivery guarantees" in _section()


@pytest.mark.parametrize("index", range(9))
def test_python_example_runs(index: int, tmp_path: Path) -> None:
    blocks = _blocks("python")
    assert index < len(blocks), f"the README has only {len(blocks)} python examples"
    proc = subprocess.run(
        [sys.executable, "-c", blocks[index]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, f"example {index} failed:\n{blocks[index]}\n{proc.stderr}"
    assert proc.stdout.strip(), f"example {index} printed nothing"
    assert "Traceback" not in proc.stderr


def test_shell_examples_name_real_commands() -> None:
    runner = CliRunner()
    checked = 0
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0] != "backend.ai-common":
                continue
            for stop in (">", "&&"):
                if stop in words:
                    words = words[: words.index(stop)]
            result = runner.invoke(cli, [*words[1:], "--help"])
            assert result.exit_code == 0, f"README line {line!r}: {result.output}"
            names = [w for w in words[1:] if w.isalpha() and w in result.output.split("\n")[0]]
            assert names, f"README line {line!r} names no command: {result.output}"
            checked += 1
    assert checked >= 8
