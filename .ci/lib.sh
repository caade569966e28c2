# Shared by .ci/run, .ci/compat and .ci/lock: starting the servers the tests need, making a
# virtual environment from a requirements file, and the checks themselves.
# shellcheck shell=bash

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# The uv that resolves the lock and the compatibility runs; pinned so that a uv release cannot
# change what a refresh produces.
UV_VERSION=0.13.9

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() {  # wait_for NAME CHECK: up to 30 s
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  die "$1 is not reachable on 127.0.0.1 and could not be started; the tests need the real server"
}

need_command() {  # need_command CMD WHY
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"
}

start_servers() {
  say "PostgreSQL on 127.0.0.1:5432"
  if ! postgres_up; then
    echo "down: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  wait_for PostgreSQL postgres_up
  psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null \
    || die "PostgreSQL answers but database 'test' (user postgres, trust auth) is not usable"

  say "Redis on 127.0.0.1:6379"
  if ! redis_up; then
    echo "down: starting it"
    local redis_args=(--daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no)
    [ -d /var/lib/redis ] && redis_args+=(--dir /var/lib/redis)
    redis-server "${redis_args[@]}" || true
  fi
  wait_for Redis redis_up
}

# install_pgbouncer: Debian's pgbouncer, for the conformance suite through a transaction pooler
# (tests/backends/postgres_pgbouncer starts a private one in front of 127.0.0.1:5432).
install_pgbouncer() {
  say "PgBouncer (Debian's pgbouncer)"
  if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    echo "missing: installing it with apt-get"
    command -v apt-get >/dev/null 2>&1 || die "pgbouncer is not installed and there is no apt-get to install it"
    apt-get update -qq -o DPkg::Lock::Timeout=300 || die "apt-get update failed: cannot install pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends pgbouncer >/dev/null \
      || die "apt-get could not install pgbouncer; the PgBouncer conformance run needs it"
  fi
  local binary
  binary="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
  "$binary" --version | head -n 1 || die "pgbouncer is installed but does not run"
}

# start_pgbouncer VENV: a private PgBouncer (transaction pooling) in front of the shared
# server's database test, on a free port, stopped when the calling script exits; its URL is
# exported as AGENDA_TEST_PGBOUNCER_URL (tests/backends/pgbouncer.py writes its config).
start_pgbouncer() {
  say "PgBouncer in transaction pooling mode, in front of 127.0.0.1:5432/test"
  PGBOUNCER_DIR="$(mktemp -d)"
  AGENDA_TEST_PGBOUNCER_URL="$("$1/bin/python" -m tests.backends.pgbouncer start "$PGBOUNCER_DIR")" \
    || die "pgbouncer did not start (see $PGBOUNCER_DIR/pgbouncer.log)"
  export AGENDA_TEST_PGBOUNCER_URL PGBOUNCER_DIR PGBOUNCER_PYTHON="$1/bin/python"
  trap '"$PGBOUNCER_PYTHON" -m tests.backends.pgbouncer stop "$PGBOUNCER_DIR"' EXIT
  psql "$AGENDA_TEST_PGBOUNCER_URL" -Atc 'select 1' >/dev/null \
    || die "pgbouncer runs but database 'test' is not usable through it"
  echo "up: $AGENDA_TEST_PGBOUNCER_URL"
}

# install_node_packages: Node Agenda and its backends, exactly as the lock pins them, for the
# interop suite (tests/interop/node).
install_node_packages() {
  say "Node Agenda (npm ci in tests/interop/node)"
  need_command node "the interop suite runs the real Node Agenda (Node.js >= 20.19)"
  need_command npm "the interop suite installs Node Agenda with npm ci"
  (cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error)
}

# make_venv DIR PYTHON REQUIREMENTS [pip options...]: a fresh environment with exactly the
# requirements, then the project itself, editable, without resolving anything more.
make_venv() {
  local venv=$1 python=$2 requirements=$3
  shift 3
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q "$@" -r "$requirements"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
}

# uv_tool: a private uv of the pinned version (only the lock and compat scripts need it).
uv_tool() {
  local tools="${AGENDA_CI_TOOLS:-${TMPDIR:-/tmp}/agenda-decl-ci-tools}"
  if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
  fi
  echo "$tools/bin/uv"
}

# run_checks VENV [pytest args...]: ruff, the import contracts, then run_typed_tests.
run_checks() {
  say "ruff"
  "$1/bin/ruff" check .
  say "import contracts (lint-imports)"
  "$1/bin/lint-imports"
  run_typed_tests "$@"
}

# run_typed_tests VENV [pytest args...]: mypy --strict, then every test.
run_typed_tests() {
  local venv=$1
  shift
  say "mypy --strict"
  "$venv/bin/mypy" agenda_decl
  say "tests"
  # pytest exits 5 when it collected no test: with `set -e` that fails the run, as it must.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
}
