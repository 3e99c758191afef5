"""The README's capability examples run as they are, its command lines name real commands, its
configuration reference is the generated one, and every test it cites exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai.backend.common.cli import reference
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
    assert "Wire compatibility" in _section()


def _python_examples() -> list[str]:
    """Every python example of the section, found when the tests are collected."""
    return _blocks("python")


@pytest.mark.parametrize(
    "index", [pytest.param(i, id=f"example-{i}") for i in range(len(_python_examples()))]
)
def test_python_example_runs(index: int, tmp_path: Path) -> None:
    blocks = _blocks("python")
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


def test_config_reference_is_generated() -> None:
    text = README.read_text()
    assert reference.BEGIN in text, f"{README} lacks the {reference.BEGIN} marker"
    assert reference.END in text, f"{README} lacks the {reference.END} marker"
    shown = text.split(reference.BEGIN, 1)[1].split(reference.END, 1)[0]
    assert shown == "\n" + reference.render_reference(), (
        "the README's configuration reference is stale: run "
        "`backend.ai-common config reference --update README.md`"
    )


_CITED = re.compile(r"((?:tests/)?(?:\w+/)*test_\w+\.py)?::(test_\w+)")


def test_cited_tests_exist() -> None:
    """A guarantee cited with a test that does not exist is a promise nobody checks."""
    tests = README.parents[0] / "tests"
    files: list[Path] = []
    missing = []
    for match in _CITED.finditer(README.read_text()):
        name, test = match.group(1), match.group(2)
        if name:  # a bare `::test_x` continues the file named before it
            files = (
                [README.parents[0] / name]
                if name.startswith("tests/")
                else sorted(tests.rglob(Path(name).name))
            )
        found = any(
            f.is_file() and re.search(rf"def {test}\b", f.read_text()) is not None for f in files
        )
        if not found:
            missing.append(f"{name or '(same file)'}::{test}")
    assert missing == [], f"the README cites tests that do not exist: {missing}"
