#!/usr/bin/env bash
# The project's test command. Starts one private PostgreSQL cluster for the whole run
# (unless DATABASE_URL is already set), points every test at it through DATABASE_URL,
# runs the workspace's tests, and removes the cluster whatever happens.
#
#   tests/run.sh                      # every test, then the doc tests
#   tests/run.sh -p berth-tests       # one package (arguments go to `cargo test`)
#   tests/run.sh -- --nocapture       # arguments after -- go to the test binaries
set -euo pipefail

cd "$(dirname "$0")/.."

# The directory holding initdb, pg_ctl and postgres: initdb on PATH (followed through
# its symlink, as packages link only some binaries there), else the newest
# /usr/lib/postgresql/<major>/bin.
find_pg_bin() {
    local initdb dir
    if initdb=$(command -v initdb 2>/dev/null); then
        dir=$(dirname "$(readlink -f "$initdb")")
        if [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

# Scratch space every user may enter: as root, Berth runs process servers as users of
# their own, and the test kit copies the fixture binary here when the checkout sits
# where they cannot reach it. Removed at the end, like the cluster.
scratch=$(mktemp -d /tmp/berth-scratch.XXXXXX)
chmod 755 "$scratch"
export BERTH_TEST_SCRATCH="$scratch"
cleanups=("rm -rf $scratch")
# `exit` runs the EXIT trap, so an interrupted run cleans up too.
trap 'for c in "${cleanups[@]}"; do eval "$c"; done' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${DATABASE_URL:-}" ]; then
    if ! bin=$(find_pg_bin); then
        echo "tests/run.sh: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH" \
            "or in /usr/lib/postgresql/*/bin: install PostgreSQL (apt-get install postgresql)" \
            "or set DATABASE_URL to a server the tests may create databases on." >&2
        exit 1
    fi

    # PostgreSQL refuses to run as root: as root, run it as the postgres user.
    as_pg=()
    pg_user=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "tests/run.sh: running as root, PostgreSQL needs an unprivileged 'postgres' user" \
                "(useradd --system postgres), or set DATABASE_URL." >&2
            exit 1
        fi
        as_pg=(runuser -u postgres --)
        pg_user=postgres
    fi

    # Under /tmp, which every user can traverse (/root cannot be).
    pg_root=$(mktemp -d /tmp/berth-run.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$pg_root"
    fi
    chmod 700 "$pg_root"

    stop_cluster() {
        if [ -f "$pg_root/data/postmaster.pid" ]; then
            "${as_pg[@]}" "$bin/pg_ctl" stop -D "$pg_root/data" -m fast -w -t 60 >/dev/null 2>&1 || true
        fi
        rm -rf "$pg_root"
    }
    cleanups+=(stop_cluster)

    if ! "${as_pg[@]}" "$bin/initdb" -D "$pg_root/data" -U "$pg_user" --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$pg_root/initdb.log" 2>&1; then
        cat "$pg_root/initdb.log" >&2
        exit 1
    fi
    # Only the Unix socket in the private directory; durability traded for speed.
    cat >>"$pg_root/data/postgresql.conf" <<EOF

# tests/run.sh
listen_addresses = ''
unix_socket_directories = '$pg_root'
port = 5432
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF
    if ! "${as_pg[@]}" "$bin/pg_ctl" start -D "$pg_root/data" -l "$pg_root/postgres.log" -w -t 60 -s; then
        echo "tests/run.sh: PostgreSQL did not start; end of $pg_root/postgres.log:" >&2
        tail -n 40 "$pg_root/postgres.log" >&2 || true
        exit 1
    fi
    export DATABASE_URL="host=$pg_root port=5432 user=$pg_user dbname=postgres"
    echo "tests/run.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') running in $pg_root" >&2
fi

# By default every target of every package; naming packages (-p) or targets (--test,
# --lib, ...) narrows the run to those, as with plain `cargo test`.
scope=(--workspace)
targets=(--all-targets)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
        --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --benches | --bench | \
            --bench=* | --examples | --example | --example=* | --doc | --all-targets) targets=() ;;
    esac
done

status=0
cargo test "${scope[@]}" "${targets[@]}" "$@" || status=$?
# Doc tests only on a full run: they compile one binary per example and add little
# to a targeted one.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
    cargo test --workspace --doc || status=$?
fi
exit "$status"
