"""``config check/show/sample`` as subprocesses: the sample validates, errors name file and key."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from ai.backend.common.bgtask import BackgroundTaskConfig
from ai.backend.common.cli import reference
from ai.backend.common.message_queue import QueueConfig

from .test_demo import run_cli


def test_sample_is_a_valid_config(tmp_path: Path) -> None:
    proc = run_cli("config", "sample")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "sample.toml"
    path.write_text(proc.stdout)
    check = run_cli("config", "check", str(path))
    assert check.returncode == 0, check.stderr
    assert "valid CommonSettings" in check.stdout


def test_check_names_file_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('namespace = "x"\n[events]\nmax-deliveries = 0\n')
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 1
    assert str(path) in proc.stderr
    assert "events.max-deliveries" in proc.stderr
    assert "greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_reports_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('namespce = "x"\n')
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 1
    assert "namespce" in proc.stderr
    assert str(path) in proc.stderr


def test_show_lists_sources_and_redacts_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'namespace = "prod"\n[auth]\naccess-key = "AKIAEXAMPLE"\nsecret-key = "s3cr3t"\n'
    )
    proc = run_cli("--json", "config", "show", "--no-env", str(path))
    assert proc.returncode == 0, proc.stderr
    rows = {row["key"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert rows["namespace"]["value"] == "prod"
    assert str(path) in rows["namespace"]["source"]
    assert rows["redis"]["source"] == "default"
    assert "s3cr3t" not in proc.stdout
    assert rows["auth.secret-key"]["value"] != "s3cr3t"


def test_schema_option_validates_other_models(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text("group = 'agent'\nmax-deliveries = 3\n")
    proc = run_cli(
        "config", "check", "--schema", "ai.backend.common.cli.settings:EventSettings", str(path)
    )
    assert proc.returncode == 0, proc.stderr
    bad = run_cli("config", "check", "--schema", "no.such.module:Model", str(path))
    assert bad.returncode == 1
    assert "--schema" in bad.stderr


def test_show_masks_url_passwords(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(
        'redis = "redis+sentinel://:hunter2x@s1:26379,s2:26379/mymaster/4?sentinel_password=hunter3x"\n'
        '[auth]\nsecret-key = "hunter4x"\n'
    )
    for args in (("config", "show", str(path)), ("--json", "config", "show", str(path))):
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        for secret in ("hunter2x", "hunter3x", "hunter4x"):
            assert secret not in out, out
        assert "s1:26379,s2:26379/mymaster/4" in out  # the rest stays readable
        assert ":***@" in out


def test_several_errors_are_one_line(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('namespce = "x"\nfoo = 1\n[events]\ngroupp = "a"\n')
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[events]\nmax-deliveries = 0\n[auth]\naccess-key = 5\n")
    for path, first, more in (
        (unknown, "namespce", "2 more"),
        (invalid, "max-deliveries", "1 more"),
    ):
        proc = run_cli("config", "check", str(path))
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert first in proc.stderr
        assert f"({more}; use --debug to see all)" in proc.stderr
        assert "[config_parse_invalid-parameters]" in proc.stderr
    debug = run_cli("--debug", "config", "check", str(unknown))
    assert "groupp" in debug.stderr  # --debug shows every item


def test_usage_errors_are_one_line() -> None:
    for args, message in (
        (("config", "check"), "Missing argument 'FILE'"),
        (("events", "tail", "--count", "0"), "'--count'"),
        (("--no-such-option",), "No such option"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr
        assert "--help" in proc.stderr


def test_json_sample_is_one_object() -> None:
    proc = run_cli("--json", "config", "sample")
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert row["format"] == "toml"
    assert row["schema"] == "CommonSettings"
    assert row["text"] == run_cli("config", "sample").stdout


def test_reference_lists_every_field(tmp_path: Path) -> None:
    proc = run_cli("--json", "config", "reference")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    keys = {(r["section"], r["key"]) for r in rows}
    for cls in (QueueConfig, BackgroundTaskConfig):
        assert {k for s, k in keys if s == cls.__name__} == {f.name for f in fields(cls)}
    for key in ("redis", "events.max-deliveries", "auth.secret-key"):
        assert ("CommonSettings", key) in keys
    for key in ("retry.backoff.max_delay", "breaker.wait_in_open", "bulkhead.max_concurrent"):
        assert ("PipelineConfig", key) in keys
    wait = next(r for r in rows if r["key"] == "breaker.wait_in_open")
    assert wait["default"] == "`30.0`"
    assert "half-opening" in wait["description"]  # documented through CircuitBreaker

    doc = tmp_path / "doc.md"
    doc.write_text(f"# x\n{reference.BEGIN}\nstale\n{reference.END}\ntail\n")
    first = run_cli("config", "reference", "--update", str(doc))
    assert first.returncode == 0, first.stderr
    generated = reference.render_reference()
    assert doc.read_text() == f"# x\n{reference.BEGIN}\n{generated}{reference.END}\ntail\n"
    again = run_cli("config", "reference", "--update", str(doc))
    assert "already up to date" in again.stdout
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    refused = run_cli("config", "reference", "--update", str(plain))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "markers" in refused.stderr
