"""CLI through typer's CliRunner: exit codes, key lines and JSON payloads."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm4seg.cli.main import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output and "models" in result.output


def test_models_json_lists_registry():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert {"cmunext", "llm4seg", "llm4seg_t", "llm4seg_random"} <= set(json.loads(result.stdout))


def test_info_json_reports_params_macs_and_layer(tiny_llama):
    result = runner.invoke(app, ["info", "--llm", str(tiny_llama[0]), "--layer", "1", "--image-size", "64",
                                 "--iterations", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["llm"]["layer"] == 1 and report["llm"]["hidden_size"] == 64
    assert report["params"]["frozen"] > 0 and report["macs"] > 0 and report["cpu_latency_ms"]["p50"] > 0


def test_baseline_macs_match_the_paper():
    result = runner.invoke(app, ["info", "--model", "cmunext", "--iterations", "0", "--json"])
    report = json.loads(result.stdout)
    assert report["params"]["total"] == 3_149_185
    assert round(report["macs"] / 1e9, 2) == 7.23


def test_errors_print_message_and_hint_and_exit_1():
    result = runner.invoke(app, ["info", "--llm", "nope", "--iterations", "0"])
    assert result.exit_code == 1
    assert "error: unknown LLM source 'nope'" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output


def test_usage_lines_name_arguments_as_placeholders():
    """Issue 34, item 4: usage lines printed `{checkpoint}`, read as a literal."""
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    for command, name in (("export", "CHECKPOINT"), ("eval", "CHECKPOINT"), ("video", "SOURCE"),
                          ("triton", "ART"), ("check", "ARTIFACT"), ("adopt-engine", "PLAN")):
        result = CliRunner().invoke(app, [command])
        usage = next(line for line in result.output.splitlines() if line.startswith("Usage:"))
        assert name in usage and name.lower() not in usage, usage
