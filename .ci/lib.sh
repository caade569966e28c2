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
# server's database test, on a free port; its URL is exported as AGENDA_TEST_PGBOUNCER_URL
# (tests/backends/pgbouncer.py writes its config). stop_pgbouncer stops it (.ci/run traps it
# on exit).
PGBOUNCER_DIR=""
start_pgbouncer() {
  say "PgBouncer in transaction pooling mode, in front of 127.0.0.1:5432/test"
  PGBOUNCER_PYTHON="$1/bin/python"
  PGBOUNCER_DIR="$(mktemp -d)"
  AGENDA_TEST_PGBOUNCER_URL="$("$1/bin/python" -m tests.backends.pgbouncer start "$PGBOUNCER_DIR")" \
    || die "pgbouncer did not start (see $PGBOUNCER_DIR/pgbouncer.log)"
  export AGENDA_TEST_PGBOUNCER_URL
  psql "$AGENDA_TEST_PGBOUNCER_URL" -Atc 'select 1' >/dev/null \
    || die "pgbouncer runs but database 'test' is not usable through it"
  echo "up: $AGENDA_TEST_PGBOUNCER_URL"
}

stop_pgbouncer() {
  if [ -n "$PGBOUNCER_DIR" ]; then
    "$PGBOUNCER_PYTHON" -m tests.backends.pgbouncer stop "$PGBOUNCER_DIR" || true
  fi
  PGBOUNCER_DIR=""
}

# start_redis_cluster: a Redis Cluster of three masters (no replicas) on free loopback ports,
# its data in a temporary folder, for the conformance suite on a cluster
# (tests/backends/redis_cluster.py); exports AGENDA_TEST_REDIS_CLUSTER_URL. stop_redis_cluster
# stops it (.ci/run traps it on exit).
REDIS_CLUSTER_PIDS=()
REDIS_CLUSTER_DIR=""
start_redis_cluster() {
  say "Redis Cluster (three masters on loopback)"
  need_command redis-server "the conformance suite runs on a local Redis Cluster"
  need_command redis-cli "redis-cli --cluster create makes the local Redis Cluster"
  local dir port bus nodes=() i
  dir="$(mktemp -d)"
  REDIS_CLUSTER_DIR="$dir"
  for i in 1 2 3; do
    # a data port and a cluster bus port (by default the data port + 10000, maybe taken)
    read -r port bus < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    mkdir -p "$dir/$port"
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/$port/nodes.conf" --dir "$dir/$port" --save "" \
      --appendonly no --daemonize yes --pidfile "$dir/$port/redis.pid" \
      --logfile "$dir/$port/server.log" || die "redis-server --cluster-enabled yes did not start on port $port"
    for _ in $(seq 1 60); do [ -s "$dir/$port/redis.pid" ] && break; sleep 0.5; done
    REDIS_CLUSTER_PIDS+=("$(cat "$dir/$port/redis.pid")")
    nodes+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null \
    || die "redis-cli --cluster create ${nodes[*]} failed (logs in $dir)"
  for _ in $(seq 1 60); do
    redis-cli -p "${nodes[0]##*:}" cluster info | grep -q '^cluster_state:ok' && break
    sleep 0.5
  done
  redis-cli -p "${nodes[0]##*:}" cluster info | grep -q '^cluster_state:ok' \
    || die "the Redis Cluster on ${nodes[*]} did not reach cluster_state:ok (logs in $dir)"
  export AGENDA_TEST_REDIS_CLUSTER_URL="redis+cluster://${nodes[0]}/0"
  echo "up: $AGENDA_TEST_REDIS_CLUSTER_URL (nodes ${nodes[*]})"
}

stop_redis_cluster() {
  local pid
  for pid in "${REDIS_CLUSTER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A server writes its log (and nodes.conf) while it shuts down: removing the folder before
  # every server is gone failed ("Directory not empty"), and a failure in this exit trap
  # turned a passing run into exit status 1.
  for pid in "${REDIS_CLUSTER_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  REDIS_CLUSTER_PIDS=()
  if [ -n "$REDIS_CLUSTER_DIR" ]; then rm -rf "$REDIS_CLUSTER_DIR" || true; fi
  REDIS_CLUSTER_DIR=""
}

# install_node_packages: Node Agenda and its backends, exactly as the lock pins them, for the
# interop suite (tests/interop/node).
install_node_packages() {
  say "Node Agenda (npm ci in tests/interop/node)"
  need_command node "the interop suite runs the real Node Agenda (Node.js >= 20.19)"
  need_command npm "the interop suite installs Node Agenda with npm ci"
  (cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error)
}

# install_chromium: Debian's chromium and its chromedriver for the dashboard's browser test
# (tests/browser/test_dashboard.py), installed with apt-get when missing.
install_chromium() {
  say "chromium and chromedriver (the dashboard's browser test)"
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    /usr/bin/chromium --version
    return 0
  fi
  echo "missing: apt-get install -y chromium chromium-driver"
  need_command apt-get "the browser test needs Debian's chromium and chromium-driver packages"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver >/dev/null \
    || die "could not install chromium and chromium-driver with apt-get; the browser test needs them"
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || die "apt-get ran, yet /usr/bin/chromium or /usr/bin/chromedriver is missing"
  /usr/bin/chromium --version
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
