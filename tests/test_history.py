"""Run history (SQLite and PostgreSQL through SQLAlchemy), `auditor history`, `auditor diff`, `run --compare-to`.

Tests taking ``history_db`` run twice: on a SQLite file, and on a database of its own on the PostgreSQL server
whose URL is in $AUDITOR_TEST_POSTGRES_URL (`make test` starts one with scripts/with-postgres.sh). Without that
variable the PostgreSQL cases are skipped, unless $AUDITOR_REQUIRE_POSTGRES=1 makes a missing or unreachable
server a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.history import History, history_url

POSTGRES_URL_ENV = "AUDITOR_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "AUDITOR_REQUIRE_POSTGRES"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _postgres_unavailable(reason: str):
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 requires the PostgreSQL cases to run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """An engine on the server's maintenance database, in autocommit mode (CREATE DATABASE runs outside a
    transaction)."""
    import sqlalchemy as sa

    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        _postgres_unavailable(f"no PostgreSQL server: ${POSTGRES_URL_ENV} is not set "
                              "(scripts/with-postgres.sh starts one and sets it)")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        _postgres_unavailable(f"PostgreSQL at ${POSTGRES_URL_ENV} ({url}) is unreachable: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def history_db(request, tmp_path) -> str:
    """The SQLAlchemy URL of an empty history: a SQLite file not created yet, or a fresh PostgreSQL database
    (dropped after the test, so no test sees another's runs)."""
    import sqlalchemy as sa

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history' / 'h.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"history_{uuid.uuid4().hex[:16]}"
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.url.set(database=name).render_as_string(hide_password=False)
    with server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_history_records_passing_failing_and_killed_runs(tmp_path, write_policy, history_db):
    db = history_db
    passing = write_policy(tmp_path, name="pass.yaml", sample={"size": 2, "seed": 1})
    failing = write_policy(tmp_path, name="fail.yaml", sample={"size": 2, "seed": 1},
                           thresholds=[{"metric": "performance.roc_auc", "min": 0.9999}])
    assert invoke("run", passing, "--out", tmp_path / "a", "--history", db, "-q").exit_code == 0
    assert invoke("run", failing, "--out", tmp_path / "b", "--history", db, "-q").exit_code == 1

    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", "run", str(passing), "--out", str(tmp_path / "c"),
                             "--history", str(db), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    history = History(history_url(db, tmp_path))
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


def test_a_run_that_fails_on_bad_data_is_recorded_as_failed(tmp_path, write_policy, artifacts, history_db):
    import pandas as pd

    frame = pd.read_csv(artifacts.data)
    frame.loc[3, "f1"] = float("inf")
    frame.to_csv(tmp_path / "bad.csv", index=False)
    policy = write_policy(tmp_path, datasets__0__path="bad.csv")
    result = invoke("run", policy, "--out", tmp_path / "o", "--history", history_db, "-q")
    assert result.exit_code == 2
    (run,) = History(history_url(history_db, tmp_path)).list()
    assert run.status == "failed" and run.exit_code == 2 and "infinite" in run.error


def test_unwritable_history_is_an_error_before_any_work(tmp_path, write_policy):
    (tmp_path / "blocker").write_text("a file where the database's folder should be")
    result = invoke("run", write_policy(tmp_path), "--out", tmp_path / "o", "--history",
                    tmp_path / "blocker" / "h.sqlite", "-q")
    assert result.exit_code == 2 and "audit history" in result.output
    assert not (tmp_path / "o").exists()


def test_diff_against_itself_shows_no_change_and_compare_to_last(tmp_path, write_policy, history_db):
    db = history_db
    policy = write_policy(tmp_path, sample={"size": 2, "seed": 1})
    assert invoke("run", policy, "--out", tmp_path / "a", "--history", db, "-q").exit_code == 0
    same = invoke("diff", tmp_path / "a", tmp_path / "a")
    assert same.exit_code == 0 and "No change." in same.output

    assert invoke("run", policy, "--out", tmp_path / "b", "--history", db, "--compare-to", "last", "-q").exit_code == 0
    changes = json.loads((tmp_path / "b" / "changes.json").read_text())
    assert changes["changed"] is False
    assert "Changes since the last audit" in (tmp_path / "b" / "report.html").read_text()
    runs = History(history_url(db, tmp_path)).list()
    by_id = invoke("diff", runs[0].run_id[:10], runs[1].run_id[:10], "--history", db, "--json")
    assert by_id.exit_code == 0 and json.loads(by_id.output)["changed"] is False


RECORDER = """
import sys, time, uuid
from pathlib import Path
from auditor.history import History

url, folder, index, runs = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(folder / f"ready-{index}").touch()
while not (folder / "go").exists():  # every process opens the new database at the same moment
    time.sleep(0.002)
history = History(url)
for _ in range(runs):
    run_id = uuid.uuid4().hex
    history.start(run_id=run_id, audit_id="concurrent", policy_path="policy.yaml", policy_sha256="0" * 64,
                  out=f"out/{index}", signer=None)
    history.finish(run_id, status="completed", exit_code=0, findings={"pass": 1, "warn": 0, "fail": 0, "failed": []})
    print(run_id)
"""


def test_eight_processes_recording_at_once_lose_no_run(tmp_path, history_db):
    processes, runs_each = 8, 6
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, history_db, str(tmp_path), str(i), str(runs_each)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("ready-*"))) < processes and time.time() < deadline:
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    recorded = {line for out, _ in outputs for line in out.split()}
    assert len(recorded) == processes * runs_each

    runs = History(history_db).list("concurrent")
    assert {r.run_id for r in runs} == recorded
    assert {r.status for r in runs} == {"completed"} and all(r.finished_utc for r in runs)
    assert len({r.pid for r in runs}) == processes


KILLED = """
import os, signal, sys
from auditor.history import History

History(sys.argv[1]).start(run_id=sys.argv[2], audit_id="killed", policy_path="policy.yaml",
                           policy_sha256="0" * 64, out="out/killed", signer=None)
if sys.argv[3] == "exit":
    os._exit(3)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_process_gone_after_recording_its_start_is_listed_as_incomplete(tmp_path, history_db, how):
    history = History(history_db)
    history.start(run_id="live" + uuid.uuid4().hex, audit_id="killed", policy_path="policy.yaml",
                  policy_sha256="0" * 64, out="out/live", signer=None)  # this process: still running
    killed = "gone" + uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", KILLED, history_db, killed, how])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, but not reaped yet: a zombie
    try:
        for _ in range(2):  # before and after it is reaped
            status = {r.run_id: r.status for r in history.list("killed")}
            assert status[killed] == "incomplete" and status[next(k for k in status if k.startswith("live"))] == "running"
            listing = invoke("history", "killed", "--history", history_db)
            assert listing.exit_code == 0, listing.output
            (line,) = [line for line in listing.output.splitlines() if line.startswith(killed[:12])]
            assert line.split()[2] == "incomplete"
            rows = [json.loads(r) for r in invoke("history", "--history", history_db, "--json").output.splitlines()]
            assert {r["run_id"]: r["status"] for r in rows}[killed] == "incomplete"
            proc.wait()
    finally:
        proc.kill()
    assert proc.returncode == (3 if how == "exit" else -signal.SIGKILL)


@pytest.mark.parametrize("case", ["missing_identity", "bad_policy", "existing_destination", "bad_history_url",
                                  "unreachable_history", "unknown_compare_to"])
def test_a_run_refused_with_exit_2_writes_nothing(tmp_path, write_policy, case):
    root = tmp_path / "root"  # the output root: the history would be root/audit-history.sqlite
    args = ["--out", root / "x", "-q"]
    policy = write_policy(tmp_path)
    if case == "missing_identity":
        args += ["--identity", tmp_path / "missing"]
    elif case == "bad_policy":
        policy = write_policy(tmp_path, sample__size=-3)
    elif case == "existing_destination":
        (root / "x").mkdir(parents=True)
        (root / "x" / "kept.txt").write_text("an earlier file")
    elif case == "bad_history_url":
        args += ["--history", "nosuchdb://somewhere/history"]
    elif case == "unreachable_history":
        args += ["--history", f"postgresql+psycopg://postgres@/history?host={tmp_path / 'no-server'}"]
    else:
        args += ["--compare-to", "0123456789ab"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = invoke("run", policy, *args)

    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not root.exists() or case == "existing_destination"


def test_listing_a_history_that_does_not_exist_creates_nothing(tmp_path):
    listing = invoke("history", "--history", tmp_path / "none" / "h.sqlite")
    assert listing.exit_code == 0 and "No runs recorded." in listing.output
    assert not (tmp_path / "none").exists()
