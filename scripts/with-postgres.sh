#!/usr/bin/env bash
# Run COMMAND with a throw-away PostgreSQL server, e.g. `scripts/with-postgres.sh .venv/bin/python -m pytest -q`.
#
# The cluster lives in a fresh temporary folder: initdb there, the server listening only on a unix socket in that
# folder (no TCP port, no password), run in a session of its own so that a Ctrl-C reaches COMMAND and not the
# server. COMMAND gets
#   AUDITOR_TEST_POSTGRES_URL  the cluster's SQLAlchemy URL (postgresql+psycopg://postgres@/postgres?host=FOLDER)
#   AUDITOR_REQUIRE_POSTGRES=1 so that the PostgreSQL tests fail, rather than skip, when the server is missing.
# The server is stopped and the folder removed when COMMAND ends, fails or is interrupted; the exit status is
# COMMAND's. PostgreSQL refuses to run as root: as root the server runs as the `postgres` user, else as you.
# PG_BINDIR names the folder of initdb and pg_ctl (default: the newest /usr/lib/postgresql/*/bin, else PATH).
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 64
fi

find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
    else
        echo "$0: PostgreSQL's initdb not found (install the Debian package postgresql, or set PG_BINDIR)" >&2
        exit 69
    fi
}
BINDIR=$(find_bindir)

# The socket's path must stay under the kernel's ~107-byte limit, so the folder is in /tmp, not a long $TMPDIR.
PGDIR=$(mktemp -d /tmp/auditor-pg.XXXXXX)
AS=()
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "$0: running as root, and there is no 'postgres' user to run the server as" >&2
        rm -rf "$PGDIR"
        exit 67
    fi
    chown postgres: "$PGDIR"
    AS=(runuser -u postgres --)
fi

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
        (cd "$PGDIR" && "${AS[@]}" "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast -w -t 60 stop >/dev/null 2>&1) || true
    fi
    rm -rf "$PGDIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The server's own processes start in $PGDIR: the `postgres` user may not read the caller's folder.
if ! (cd "$PGDIR" && "${AS[@]}" "$BINDIR/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 \
        --no-sync >"$PGDIR/initdb.log" 2>&1); then
    cat "$PGDIR/initdb.log" >&2
    echo "$0: initdb failed (log above)" >&2
    exit 70
fi
# fsync off: the cluster is thrown away, and the tests need no durability across a crash.
if ! (cd "$PGDIR" && "${AS[@]}" setsid -w "$BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$PGDIR' -c fsync=off -c max_connections=200" \
        start >/dev/null); then
    cat "$PGDIR/server.log" >&2 || true
    echo "$0: the PostgreSQL server did not start (log above)" >&2
    exit 70
fi

export AUDITOR_TEST_POSTGRES_URL="postgresql+psycopg://postgres@/postgres?host=$PGDIR"
export AUDITOR_REQUIRE_POSTGRES=1
status=0
"$@" || status=$?
exit "$status"
