"""The command line: exit codes, messages that name the field and the fix, no tracebacks, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import cli

from conftest import DELETE, FEATURES


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result, *needles: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert "Error:" in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def _broken_data(tmp_path: Path, artifacts) -> Path:
    frame = pd.read_csv(artifacts.data)
    frame.loc[5, "f2"] = np.nan
    path = tmp_path / "with_nan.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    "case",
    ["missing_file", "unknown_type", "bad_field", "feature_mismatch", "nan_in_data", "pickle_without_trust"],
)
def test_bad_input_exits_2_naming_the_field(case, command, tmp_path, write_policy, artifacts):
    if case == "missing_file":
        policy = write_policy(tmp_path, models__0__path="nowhere/model.skops")
        needles = ["models[0].path", "file not found", "nowhere/model.skops"]
    elif case == "unknown_type":
        policy = write_policy(tmp_path, explanations__1={"type": "shapley_magic"})
        needles = ["explanations[1]", "shapley_magic", "lime"]
    elif case == "bad_field":
        policy = write_policy(tmp_path, sample__size=-3)
        needles = ["sample.size", "greater than or equal to 1"]
    elif case == "feature_mismatch":
        fewer = [{"name": n} for n in FEATURES[:3]]
        policy = write_policy(tmp_path, datasets__0__features=fewer, datasets__1__features=fewer)
        needles = ["models[0]", "feature mismatch", "f3"]
    elif case == "nan_in_data":
        policy = write_policy(tmp_path, datasets__0__path=_broken_data(tmp_path, artifacts).name)
        needles = ["models[0]", "'f2'", "cannot take missing values", "imputer inside the model's pipeline"]
    else:
        policy = write_policy(tmp_path, models__0__path=str(artifacts.pickle), models__0__format="pickle")
        needles = ["models[0].format", "trust: pickle"]
    args = [command, policy] + (["--out", tmp_path / "out"] if command == "run" else [])
    result = invoke(*args)
    assert_user_error(result, str(policy), *needles)
    assert not (tmp_path / "out").exists(), "no output may be left behind for bad input"


def test_validate_reports_every_problem_with_lines(tmp_path, write_policy):
    policy = write_policy(tmp_path, sample__size=0, models__0__path="missing.skops",
                          explanations__0={"type": "nope"})
    result = invoke("validate", policy)
    assert_user_error(result, "3 problems", "sample.size", "models[0].path", "explanations[0]")
    # each problem carries file:line
    assert f"{policy}:" in result.output


def test_pickle_with_trust_runs_and_warns(tmp_path, write_policy, artifacts):
    policy = write_policy(tmp_path, models__0__path=str(artifacts.pickle), models__0__format="pickle",
                          models__0__trust="pickle", audited__1=DELETE, explanations__0=DELETE,
                          sample__size=2)
    result = invoke("run", policy, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    evidence = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert any("trust: pickle" in w for w in evidence["warnings"])
    assert "arbitrary code" in (tmp_path / "out" / "report.html").read_text()


def test_run_writes_outputs_and_refuses_non_empty_out(tmp_path, write_policy):
    policy = write_policy(tmp_path)
    out = tmp_path / "audit"
    first = invoke("run", policy, "--out", out, "-q")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == ["evidence.json", "evidence.schema.json", "manifest.json",
                                                      "model-card.cdx.json", "policy.yaml", "report.html"]
    before = (out / "evidence.json").read_bytes()

    again = invoke("run", policy, "--out", out, "-q")
    assert_user_error(again, "not empty", "--force")
    assert (out / "evidence.json").read_bytes() == before

    forced = invoke("run", policy, "--out", out, "--seed", "11", "-q", "--force")
    assert forced.exit_code == 0, forced.output
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["overrides"] == {"sample.seed": 11}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".audit.")], "temporary folders left behind"


def test_same_seed_same_evidence_bytes(tmp_path, write_policy):
    policy = write_policy(tmp_path)
    for name in ("a", "b"):
        result = invoke("run", policy, "--out", tmp_path / name, "-q")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "evidence.json").read_bytes() == (tmp_path / "b" / "evidence.json").read_bytes()
    other = invoke("run", policy, "--out", tmp_path / "c", "--seed", "99", "-q")
    assert other.exit_code == 0
    assert (tmp_path / "c" / "evidence.json").read_bytes() != (tmp_path / "a" / "evidence.json").read_bytes()


def test_schema_commands_print_json_schemas():
    import jsonschema

    for args in (["schema"], ["schema", "--evidence"]):
        result = invoke(*args)
        assert result.exit_code == 0
        jsonschema.Draft202012Validator.check_schema(json.loads(result.output))


def test_missing_policy_file_is_a_user_error(tmp_path):
    assert_user_error(invoke("validate", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_an_internal_error_exits_4_with_its_traceback_and_writes_nothing(tmp_path, write_policy, monkeypatch):
    """A bug is not bad input and not a failed finding: a scheduler must be able to tell a crash apart."""
    import auditor.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(auditor.pipeline, "render_html", broken)
    out = tmp_path / "audit"
    result = invoke("run", write_policy(tmp_path), "--out", out, "-q")
    assert result.exit_code == 4, result.output
    assert "planted bug" in result.output and "internal error" in result.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".audit.")]


def test_progress_on_a_terminal_is_a_live_bar_with_counts_and_time_left():
    """On a terminal each task is a bar with its count, time taken and time left; off a terminal (a log), one
    line per finished task and no bar."""
    import io

    from rich.console import Console

    from auditor.cli import _Progress

    tty = io.StringIO()
    console = Console(file=tty, force_terminal=True, width=120)
    with _Progress(console, enabled=True) as progress:
        advance = progress("lime · gbm", 10)
        advance(3)
        progress.progress.refresh()
        shown = tty.getvalue()
        assert "lime · gbm" in shown and "3/10" in shown and "left" in shown
        advance(7)
    assert "10/10" in tty.getvalue()

    log = io.StringIO()
    with _Progress(Console(file=log, force_terminal=False, width=120), enabled=True) as progress:
        advance = progress("lime · gbm", 10)
        advance(3)
        assert log.getvalue() == ""
        advance(7)
    assert log.getvalue().startswith("  lime · gbm: 10 done in ") and "\x1b[" not in log.getvalue()
