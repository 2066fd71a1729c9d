"""The audit history: every run recorded, completed, failed or cut short (EU AI Act Art. 12 logs).

SQLite by default (``audit-history.sqlite`` in the output root, the folder that holds the run's
output folder), or any SQLAlchemy URL (e.g. ``postgresql+psycopg://user@host/db``) via ``--history``
or the ``AUDITOR_HISTORY`` environment variable. A run is recorded *before* it computes anything
(status ``running``) and updated when it ends (``completed`` or ``failed``, with its findings and
exit code). A run killed outright keeps ``running`` and is listed as ``incomplete`` once its process
is gone. Recording is never skipped: a history that cannot be written is an error. Runs recorded by
many processes at once are all kept, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import AuditorError

__all__ = ["History", "HistoryError", "RunRecord", "history_url"]

ENV = "AUDITOR_HISTORY"
DEFAULT_FILE = "audit-history.sqlite"
SQLITE_BUSY_TIMEOUT_S = 60.0  # how long a SQLite writer waits for others (each holds the lock for milliseconds)
_SCHEMA_LOCK = 0x61756469746F72  # PostgreSQL advisory lock key held while the runs table is created ("auditor")


class HistoryError(AuditorError):
    """The history database cannot be opened or written."""


def history_url(option: str | None, output_root: Path) -> str:
    """--history, else $AUDITOR_HISTORY, else SQLite in the output root. Plain paths become SQLite URLs."""
    value = option or os.environ.get(ENV) or str(Path(output_root) / DEFAULT_FILE)
    return value if "://" in value else f"sqlite:///{Path(value).resolve()}"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    audit_id: str
    status: str  # running | completed | failed | incomplete (a 'running' row whose process is gone)
    started_utc: str
    finished_utc: str | None
    exit_code: int | None
    findings: dict
    out: str | None
    policy_path: str
    policy_sha256: str
    inputs: dict
    signer: str | None
    error: str | None
    host: str
    pid: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _now() -> str:
    """UTC time to the microsecond: runs are listed in start order, and a quick audit takes under a second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _alive(host: str, pid: int) -> bool:
    """Whether the process that recorded a run still runs: a killed one is gone, or a zombie until reaped."""
    if host != socket.gethostname():
        return True  # cannot tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS), or it ended just now
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")  # the state follows the command name in parentheses


def _serialise_sqlite_writers(engine) -> None:
    """Every SQLite transaction begins with BEGIN IMMEDIATE: it waits for the write lock up front (the busy
    timeout), instead of failing with 'database is locked' when two processes upgrade a read lock at once."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver begins no transaction of its own
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class History:
    """The runs table at ``url``. The URL is checked here, but nothing is created until the first run is
    recorded, so a run refused before it starts (a bad policy, a missing identity) leaves no database and no
    folder behind; listing a SQLite history that does not exist yet finds no runs and creates nothing.

    Many processes may record runs in one database at once. On SQLite each transaction takes the write lock
    when it begins (``BEGIN IMMEDIATE``) and waits up to ``SQLITE_BUSY_TIMEOUT_S`` for it; on PostgreSQL the
    table is created under an advisory lock, as concurrent ``CREATE TABLE`` statements collide in the catalog.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self._created = False
        try:
            self.engine = sa.create_engine(url)
        except Exception as exc:
            raise HistoryError(f"cannot open the audit history at {url}: {type(exc).__name__}: {exc}",
                               hint="give a SQLite file or an SQLAlchemy URL such as "
                                    f"postgresql+psycopg://user@host/db (--history, ${ENV})") from None
        if self.engine.dialect.name == "sqlite":
            _serialise_sqlite_writers(self.engine)
        self.meta = sa.MetaData()
        self.runs = sa.Table(
            "runs", self.meta,
            sa.Column("run_id", sa.String(64), primary_key=True),
            sa.Column("audit_id", sa.String(128), nullable=False, index=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("started_utc", sa.String(32), nullable=False),
            sa.Column("finished_utc", sa.String(32)),
            sa.Column("exit_code", sa.Integer),
            sa.Column("findings", sa.Text, nullable=False, default="{}"),
            sa.Column("out", sa.Text),
            sa.Column("policy_path", sa.Text, nullable=False),
            sa.Column("policy_sha256", sa.String(64), nullable=False),
            sa.Column("inputs", sa.Text, nullable=False, default="{}"),
            sa.Column("signer", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
        )

    def open(self) -> None:
        """Create the database (a SQLite file and its folder) and the runs table if missing; once per process."""
        if self._created:
            return
        import sqlalchemy as sa

        try:
            if self._no_file_yet():
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                    self.meta.create_all(conn)
            except sa.exc.DBAPIError:
                if not sa.inspect(self.engine).has_table(self.runs.name):
                    raise  # not another process creating the same table at the same moment
        except Exception as exc:
            raise HistoryError(f"cannot open the audit history at {self.url}: {type(exc).__name__}: {exc}",
                               hint=f"check the path or URL (--history, ${ENV}) and that it is writable") from None
        self._created = True

    def _no_file_yet(self) -> bool:
        database = self.engine.url.database
        return (self.engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"
                and not Path(database).exists())

    def _write(self, statement) -> None:
        self.open()
        try:
            with self.engine.begin() as conn:
                conn.execute(statement)
        except Exception as exc:
            raise HistoryError(f"cannot write the audit history at {self.url}: {type(exc).__name__}: {exc}",
                               hint="the run is not recorded; fix the history database and run again") from None

    def start(self, *, run_id: str, audit_id: str, policy_path: str, policy_sha256: str, out: str,
              signer: str | None) -> None:
        self._write(self.runs.insert().values(
            run_id=run_id, audit_id=audit_id, status="running", started_utc=_now(), findings="{}", out=out,
            policy_path=policy_path, policy_sha256=policy_sha256, inputs="{}", signer=signer,
            host=socket.gethostname(), pid=os.getpid()))

    def finish(self, run_id: str, *, status: str, exit_code: int, findings: dict | None = None,
               inputs: dict | None = None, error: str | None = None) -> None:
        values = {"status": status, "finished_utc": _now(), "exit_code": exit_code, "error": error}
        if findings is not None:
            values["findings"] = json.dumps(findings, sort_keys=True)
        if inputs is not None:
            values["inputs"] = json.dumps(inputs, sort_keys=True)
        self._write(self.runs.update().where(self.runs.c.run_id == run_id).values(**values))

    def list(self, audit_id: str | None = None) -> list[RunRecord]:
        query = self.runs.select().order_by(self.runs.c.started_utc, self.runs.c.run_id)
        if audit_id:
            query = query.where(self.runs.c.audit_id == audit_id)
        if self._no_file_yet():
            return []  # nothing recorded, and listing does not create the database
        self.open()
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except Exception as exc:
            raise HistoryError(f"cannot read the audit history at {self.url}: {exc}") from None
        out = []
        for r in rows:
            status = r["status"]
            if status == "running" and not _alive(r["host"], r["pid"]):
                status = "incomplete"
            out.append(RunRecord(r["run_id"], r["audit_id"], status, r["started_utc"], r["finished_utc"],
                                 r["exit_code"], json.loads(r["findings"] or "{}"), r["out"], r["policy_path"],
                                 r["policy_sha256"], json.loads(r["inputs"] or "{}"), r["signer"], r["error"],
                                 r["host"], r["pid"]))
        return out

    def get(self, run_id: str) -> RunRecord | None:
        return next((r for r in self.list() if r.run_id == run_id or r.run_id.startswith(run_id)), None)

    def last_completed(self, audit_id: str, *, exclude: str | None = None) -> RunRecord | None:
        runs = [r for r in self.list(audit_id) if r.status == "completed" and r.run_id != exclude
                and r.out and Path(r.out, "evidence.json").is_file()]
        return runs[-1] if runs else None
