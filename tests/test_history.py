"""Run history (SQLite through SQLAlchemy), `auditor history`, `auditor diff`, and `run --compare-to last`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from auditor.cli import cli
from auditor.history import History, history_url


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_history_records_passing_failing_and_killed_runs(tmp_path, write_policy):
    db = tmp_path / "h.sqlite"
    passing = write_policy(tmp_path, name="pass.yaml", sample={"size": 2, "seed": 1})
    failing = write_policy(tmp_path, name="fail.yaml", sample={"size": 2, "seed": 1},
                           thresholds=[{"metric": "performance.roc_auc", "min": 0.9999}])
    assert invoke("run", passing, "--out", tmp_path / "a", "--history", db, "-q").exit_code == 0
    assert invoke("run", failing, "--out", tmp_path / "b", "--history", db, "-q").exit_code == 1

    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", "run", str(passing), "--out", str(tmp_path / "c"),
                             "--history", str(db), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    history = History(history_url(str(db), tmp_path))
    deadline = time.time() + 60
    while time.time() < deadline and len(history.list()) < 3:  # wait until the run is recorded as started
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    runs = history.list()
    assert [r.status for r in runs] == ["completed", "completed", "incomplete"]
    assert runs[0].exit_code == 0 and runs[0].findings == {"pass": 0, "warn": 0, "fail": 0, "failed": []}
    assert runs[1].exit_code == 1 and runs[1].findings["fail"] == 2
    assert runs[0].inputs["policy"]["sha256"] == runs[0].policy_sha256
    assert runs[2].finished_utc is None

    listing = invoke("history", "--history", db)
    assert listing.exit_code == 0
    assert listing.output.count("tiny-audit") == 3 and "incomplete" in listing.output
    rows = [json.loads(line) for line in invoke("history", "tiny-audit", "--history", db, "--json").output.splitlines()]
    assert [r["status"] for r in rows] == ["completed", "completed", "incomplete"]


def test_a_run_that_fails_on_bad_data_is_recorded_as_failed(tmp_path, write_policy, artifacts):
    import pandas as pd

    frame = pd.read_csv(artifacts.data)
    frame.loc[3, "f1"] = float("inf")
    frame.to_csv(tmp_path / "bad.csv", index=False)
    policy = write_policy(tmp_path, datasets__0__path="bad.csv")
    db = tmp_path / "h.sqlite"
    result = invoke("run", policy, "--out", tmp_path / "o", "--history", db, "-q")
    assert result.exit_code == 2
    (run,) = History(history_url(str(db), tmp_path)).list()
    assert run.status == "failed" and run.exit_code == 2 and "infinite" in run.error


def test_unwritable_history_is_an_error_before_any_work(tmp_path, write_policy):
    (tmp_path / "blocker").write_text("a file where the database's folder should be")
    result = invoke("run", write_policy(tmp_path), "--out", tmp_path / "o", "--history",
                    tmp_path / "blocker" / "h.sqlite", "-q")
    assert result.exit_code == 2 and "audit history" in result.output
    assert not (tmp_path / "o").exists()


def test_diff_against_itself_shows_no_change_and_compare_to_last(tmp_path, write_policy):
    db = tmp_path / "h.sqlite"
    policy = write_policy(tmp_path, sample={"size": 2, "seed": 1})
    assert invoke("run", policy, "--out", tmp_path / "a", "--history", db, "-q").exit_code == 0
    same = invoke("diff", tmp_path / "a", tmp_path / "a")
    assert same.exit_code == 0 and "No change." in same.output

    assert invoke("run", policy, "--out", tmp_path / "b", "--history", db, "--compare-to", "last", "-q").exit_code == 0
    changes = json.loads((tmp_path / "b" / "changes.json").read_text())
    assert changes["changed"] is False
    assert "Changes since the last audit" in (tmp_path / "b" / "report.html").read_text()
    runs = History(history_url(str(db), tmp_path)).list()
    by_id = invoke("diff", runs[0].run_id[:10], runs[1].run_id[:10], "--history", db, "--json")
    assert by_id.exit_code == 0 and json.loads(by_id.output)["changed"] is False
