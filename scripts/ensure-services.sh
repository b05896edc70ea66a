#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are usable for DATABASE_URL / REDIS_URL (idempotent).
#   - PostgreSQL: starts a local cluster if it is down (installs it when missing and running as
#     root), then creates the URL's role (LOGIN, CREATEDB) and database when connecting fails —
#     on this machine only: a server elsewhere is only checked, never changed.
#   - Redis: starts a local redis-server if it is down (installs it when missing and root).
# Quiet and fast when everything already works. Never prints passwords.
# Alternative when this cannot fix things: docker compose -f docker/compose.services.yml up -d
set -euo pipefail
cd "$(dirname "$0")/.."
# `mapfile -d` here and `wait -n` in scripts/start.sh: bash 4.4 or later. macOS's /bin/bash is 3.2,
# where they would fail later with a misleading message (a URL that "does not parse").
if [ "${BASH_VERSINFO[0]}" -lt 4 ] || { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -lt 4 ]; }; then
  echo "[services] ERROR: bash 4.4 or later is needed (this is bash $BASH_VERSION; on macOS: brew install bash, then run npm start / npm test again)" >&2
  exit 1
fi

COMPOSE_HINT='docker compose -f docker/compose.services.yml up -d'

log() { echo "[services] $*"; }
warn() { echo "[services] $*" >&2; }
fail() {
  warn "ERROR: $*"
  warn "Alternative: run only PostgreSQL and Redis in Docker (from the repo root; they publish"
  warn "127.0.0.1:5432 / 127.0.0.1:6379, the default DATABASE_URL / REDIS_URL), then npm start / npm test:"
  warn "  $COMPOSE_HINT"
  warn "(or point DATABASE_URL / REDIS_URL at servers you already have)."
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }
can_apt() { is_root && have apt-get; }
with_timeout() { if have timeout; then timeout "$@"; else shift; "$@"; fi; }

# --- .env (values already in the environment win; Node's parser, never `source`d) ------------------
# shellcheck source=scripts/dotenv.sh
source scripts/dotenv.sh
export_dotenv # an ENV_FILE that names no file: exit 78 here, nothing set up with the defaults

export DATABASE_URL="${DATABASE_URL:-postgres://shop:shop@127.0.0.1:5432/shop}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"

is_local_host() {
  local h="${1,,}" # (host names in any case)
  case "$h" in
    *,*) return 1 ;; # a list of hosts (PGHOST=a,b): not all of them need be this machine
    '' | localhost | localhost.localdomain | *.localhost | 127.* | ::1 | 0.0.0.0 | /*) return 0 ;;
    "$(hostname 2>/dev/null | tr '[:upper:]' '[:lower:]')" | "$(hostname -f 2>/dev/null | tr '[:upper:]' '[:lower:]')") return 0 ;;
    *) return 1 ;;
  esac
}

# =================================== PostgreSQL ================================================
PG_LAST_ERROR=''

# Succeeds when the URL connects, its role may create databases (the tests clone per-worker
# databases) and it may create tables in schema public (migrations).
pg_as_app() { # pg_as_app <sql> : runs SQL as DATABASE_URL's role, prints tuples (or the error)
  local parts=()
  # the password reaches psql in its environment, never in its arguments (the process list)
  mapfile -d '' parts < <(node -e '
    const u = new URL(process.env.DATABASE_URL);
    const pw = decodeURIComponent(u.password || "");
    u.password = "";
    process.stdout.write([u.toString(), pw].join("\0") + "\0");
  ' 2>/dev/null)
  if [ "${#parts[@]}" -ne 2 ]; then echo "DATABASE_URL is not a valid URL"; return 1; fi
  local -x PGPASSWORD="${parts[1]:-${PGPASSWORD:-}}"
  psql -X -w -q -At "${parts[0]}" -c "$1" 2>&1
}

pg_url_ok() {
  local out
  # CREATEDB only for the tests (scripts/test.sh: SERVICES_FOR_TESTS=1, they clone databases):
  # the application itself needs none, and a least-privileged role must not be refused
  local createdb=true
  [ "${SERVICES_FOR_TESTS:-0}" = 1 ] && createdb="(select rolcreatedb or rolsuper from pg_roles where rolname = current_user)"
  if out="$(pg_as_app "select $createdb and coalesce((select has_schema_privilege(oid,
      'CREATE') from pg_namespace where nspname = 'public'), true)")"; then
    PG_LAST_ERROR=''
    [ "$out" = t ] && return 0
    if [ "${SERVICES_FOR_TESTS:-0}" = 1 ]; then
      PG_LAST_ERROR="role lacks CREATEDB (the tests clone databases) or CREATE on schema public"
    else
      PG_LAST_ERROR="role lacks CREATE on schema public"
    fi
    return 1
  fi
  PG_LAST_ERROR="$(head -n 3 <<<"$out")"
  return 1
}

pg_parse() {
  # NUL-separated: host port user password db, then SQL-quoted ident/literal forms.
  local fields=()
  mapfile -d '' fields < <(node -e '
    const u = new URL(process.env.DATABASE_URL);
    const d = (s) => decodeURIComponent(s || "");
    // the host node-postgres connects to, as the app judges it (config.ts): ?host= over the
    // host in the URL, then PGHOST (libpq): a URL without one reaches PGHOST, once taken for this machine
    const host = d(u.searchParams.get("host")) || d(u.hostname).replace(/^\[(.*)\]$/, "$1") ||
      (process.env.PGHOST || "").trim() || "127.0.0.1";
    // the role and database node-postgres and libpq take when the URL names none
    const env = (name) => (process.env[name] || "").trim();
    const user = d(u.username) || env("PGUSER") || env("USER") || "postgres";
    const db = d(u.pathname.replace(/^\//, "")) || env("PGDATABASE") || user;
    const ident = (s) => "\"" + s.replace(/"/g, "\"\"") + "\"";
    const lit = (s) => "'"'"'" + s.replace(/'"'"'/g, "'"'"''"'"'") + "'"'"'";
    const pw = d(u.password) || process.env.PGPASSWORD || "";
    process.stdout.write([host, u.port || (process.env.PGPORT || "").trim() || "5432", user, pw, db,
      ident(user), lit(user), pw ? lit(pw) : "", ident(db), lit(db)].join("\0") + "\0");
  ') || fail "DATABASE_URL is not a valid URL"
  [ "${#fields[@]}" -eq 10 ] || fail "could not parse DATABASE_URL"
  PG_HOST="${fields[0]}" PG_PORT="${fields[1]}" PG_USER="${fields[2]}" PG_PASS="${fields[3]}"
  PG_DB="${fields[4]}" PG_USER_IDENT="${fields[5]}" PG_USER_LIT="${fields[6]}"
  PG_PASS_LIT="${fields[7]}" PG_DB_IDENT="${fields[8]}" PG_DB_LIT="${fields[9]}"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

pg_server_installed() {
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || have postgres
}

pg_wait_ready() {
  local i
  for i in $(seq 1 30); do
    pg_ready && return 0
    sleep 1
  done
  return 1
}

pg_start_local() {
  if ! pg_server_installed; then
    can_apt || fail "PostgreSQL is not running on $PG_HOST:$PG_PORT and is not installed (installing it needs root + apt-get)"
    log "installing PostgreSQL (apt-get install postgresql)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null ||
      fail "apt-get install postgresql failed"
    pg_ready && return 0
  fi
  have pg_lsclusters ||
    fail "PostgreSQL is not running on $PG_HOST:$PG_PORT; start it yourself (no pg_lsclusters here)"

  local ver name port status rest started=0
  while read -r ver name port status rest; do
    [ -n "${ver:-}" ] && [ "$port" = "$PG_PORT" ] || continue
    if [[ "$status" != online* ]]; then
      log "starting PostgreSQL cluster $ver/$name on port $port"
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
        warn "pg_ctlcluster $ver $name start failed (see /var/log/postgresql/postgresql-$ver-$name.log)"
    fi
    started=1
  done < <(pg_lsclusters -h 2>/dev/null)

  if [ "$started" = 0 ]; then
    if [ -z "$(pg_lsclusters -h 2>/dev/null)" ] && is_root && have pg_createcluster; then
      ver="$(find /usr/lib/postgresql -maxdepth 1 -mindepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)"
      [ -n "$ver" ] || fail "no PostgreSQL version found under /usr/lib/postgresql"
      log "creating and starting PostgreSQL cluster $ver/main on port $PG_PORT"
      pg_createcluster -p "$PG_PORT" --start "$ver" main >/dev/null ||
        fail "pg_createcluster $ver main failed"
    else
      fail "no local PostgreSQL cluster uses port $PG_PORT (pg_lsclusters: $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2":"$3" "$4}' | tr '\n' ' '))"
    fi
  fi
}

# Superuser access, tried in order: TCP as "postgres" (trust), peer auth as the postgres OS user
# (root only), then the current OS user over the socket if it is a superuser (e.g. Homebrew).
PG_ADMIN=''
pg_admin() { # pg_admin <db> : runs SQL from stdin as a superuser, prints tuples only
  # (in a subshell without libpq's connection variables: psql reaches the server named here and no
  # other — PGHOST or PGHOSTADDR pointing elsewhere sent the socket methods there)
  (
    unset PGHOST PGHOSTADDR PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE PGUSER PGDATABASE \
      PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS
    pg_admin_now "$@"
  )
}
pg_admin_now() {
  local db="$1"
  local opts=(-X -w -q -At -v ON_ERROR_STOP=1 -p "$PG_PORT" -d "$db")
  local sock=()
  [[ "$PG_HOST" == /* ]] && sock=(-h "$PG_HOST")
  case "$PG_ADMIN" in
    tcp) env -u PGPASSWORD -u PGUSER psql "${opts[@]}" -h "$PG_HOST" -U postgres ;;
    runuser) (cd / && runuser -u postgres -- psql "${opts[@]}" "${sock[@]}") ;;
    su) (cd / && su postgres -s /bin/sh -c "psql -X -w -q -At -v ON_ERROR_STOP=1 -p '$PG_PORT' -d '$db' ${sock[*]:+-h '$PG_HOST'}") ;;
    self) env -u PGUSER psql "${opts[@]}" "${sock[@]}" ;;
    *) return 1 ;;
  esac
}

pg_find_admin() {
  local m
  # a server that is not on this machine is never changed (roles, databases, settings): it may be
  # production's, reached with a DBA's ~/.pgpass — a typo in DATABASE_URL would create an empty
  # database there, and the app's role would be given CREATEDB
  if ! is_local_host "$PG_HOST"; then
    PG_LAST_ERROR="${PG_LAST_ERROR:+$PG_LAST_ERROR; }PostgreSQL at $PG_HOST is not on this machine: this script changes nothing there"
    return 1
  fi
  local methods=(tcp)
  if is_root && is_local_host "$PG_HOST"; then
    have runuser && methods+=(runuser)
    have su && methods+=(su)
  fi
  is_local_host "$PG_HOST" && methods+=(self)
  for m in "${methods[@]}"; do
    PG_ADMIN="$m"
    if [ "$(pg_admin postgres <<<'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null)" = t ]; then
      return 0
    fi
  done
  PG_ADMIN=''
  return 1
}

pg_provision() {
  pg_find_admin ||
    fail "cannot reach PostgreSQL as a superuser to create role '$PG_USER' / database '$PG_DB' (last error: ${PG_LAST_ERROR:-unknown}); create them yourself with LOGIN CREATEDB"
  local attrs="LOGIN CREATEDB"
  local existing
  existing="$(pg_admin postgres <<<"select rolsuper::text || ' ' || (rolpassword is not null)::text from pg_authid where rolname = $PG_USER_LIT")"
  if [ -n "$existing" ]; then
    # An existing role is given what the app needs, never a password over its own: the URL's may
    # be a typo, and the role another service's (or the superuser) — that is for a person to fix.
    local refused=''
    case "$PG_LAST_ERROR" in *authentication*) refused=1 ;; esac
    if [ -n "$refused" ] && [ "${existing%% *}" = true ]; then
      fail "cannot sign in as role '$PG_USER' with DATABASE_URL ($PG_LAST_ERROR); it is a superuser, which this script does not change: fix DATABASE_URL (or the server's authentication)"
    elif [ -n "$refused" ] && [ "${existing##* }" = true ]; then
      fail "cannot sign in as role '$PG_USER' with the password in DATABASE_URL ($PG_LAST_ERROR); the role has a password of its own, which this script does not replace: fix DATABASE_URL (or ALTER ROLE yourself)"
    fi
    if [ "${existing%% *}" = true ]; then
      : # a superuser has every right the app needs: nothing to change
    else
      if [ "${existing##* }" != true ] && [ -n "$PG_PASS_LIT" ]; then
        attrs="$attrs PASSWORD $PG_PASS_LIT" # a role without one: the URL's is its first
      fi
      if [ "$attrs" = "LOGIN CREATEDB" ]; then
        log "updating role '$PG_USER' (LOGIN CREATEDB)"
      else
        log "updating role '$PG_USER' (LOGIN CREATEDB, its first password: the one in DATABASE_URL)"
      fi
      pg_admin postgres <<<"ALTER ROLE $PG_USER_IDENT $attrs" >/dev/null || fail "ALTER ROLE failed"
    fi
  else
    [ -n "$PG_PASS_LIT" ] && attrs="$attrs PASSWORD $PG_PASS_LIT"
    log "creating role '$PG_USER'"
    pg_admin postgres <<<"CREATE ROLE $PG_USER_IDENT $attrs" >/dev/null || fail "CREATE ROLE failed"
  fi
  local owner
  owner="$(pg_admin postgres <<<"select pg_get_userbyid(datdba) from pg_database where datname = $PG_DB_LIT")"
  if [ -z "$owner" ]; then
    log "creating database '$PG_DB' owned by '$PG_USER'"
    pg_admin postgres <<<"CREATE DATABASE $PG_DB_IDENT OWNER $PG_USER_IDENT" >/dev/null || fail "CREATE DATABASE failed"
  elif [ "$owner" != "$PG_USER" ] &&
    [ "$(pg_admin "$PG_DB" <<<"select has_schema_privilege($PG_USER_LIT, 'public', 'CREATE')")" != t ]; then
    log "granting '$PG_USER' CREATE on schema public of existing database '$PG_DB' (owner: $owner)"
    pg_admin postgres <<<"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE $PG_DB_IDENT TO $PG_USER_IDENT" >/dev/null || fail "GRANT failed"
    pg_admin "$PG_DB" <<<"GRANT USAGE, CREATE ON SCHEMA public TO $PG_USER_IDENT" >/dev/null || fail "GRANT failed"
  fi
}

# The app's failing statements are not to be copied into the server log: the checkout sends its
# values inlined (simple protocol), and a refused reservation would log the whole order with its
# idempotency record. A superuser-only setting, put on the app's role (new sessions take it);
# checked on every run, so a role made before this check gets it too — or a warning.
pg_quiet_statements() {
  [ "$(pg_as_app 'show log_min_error_statement')" = panic ] && return 0
  pg_parse
  if pg_find_admin &&
    pg_admin postgres <<<"ALTER ROLE $PG_USER_IDENT SET log_min_error_statement = 'panic'" >/dev/null; then
    log "role '$PG_USER': log_min_error_statement = panic (failing statements stay out of the server log)"
  else
    warn "role '$PG_USER' copies failing statements into the server log (the checkout's values are inlined);"
    warn "  as a superuser: ALTER ROLE \"$PG_USER\" SET log_min_error_statement = 'panic'"
  fi
}

ensure_postgres() {
  ensure_postgres_usable
  if have psql; then
    pg_quiet_statements
  else
    warn "psql is not installed: role '$PG_USER' may copy failing statements into the server log (the checkout's values are inlined);"
    warn "  as a superuser: ALTER ROLE \"$PG_USER\" SET log_min_error_statement = 'panic'"
  fi
}

# A TCP connect to host:port within 3 s (no client needed).
tcp_answers() {
  with_timeout 5 node -e '
    const s = require("net").connect(Number(process.argv[2]), process.argv[1]);
    s.setTimeout(3000, () => process.exit(1));
    s.on("connect", () => process.exit(0)).on("error", () => process.exit(1));
  ' "$1" "$2" >/dev/null 2>&1
}

ensure_postgres_usable() {
  if have psql && pg_url_ok; then return 0; fi
  pg_parse
  local where="$PG_HOST:$PG_PORT"
  # (as root with apt-get the client is installed below instead, and everything checked)
  if ! have psql && ! can_apt && [[ "$PG_HOST" != /* ]] && tcp_answers "$PG_HOST" "$PG_PORT"; then
    # (e.g. docker/compose.services.yml's server, and no client here): its role and database
    # cannot be checked or created without psql — the migrations will say if they are missing
    log "PostgreSQL answers on $where; psql is not installed, so role '$PG_USER' and database '$PG_DB' are not checked (install the PostgreSQL client to have them created)"
    return 0
  fi
  if ! have psql || ! have pg_isready; then
    if is_local_host "$PG_HOST" && ! pg_server_installed; then
      pg_start_local # installs the server (with the client) when root
    elif can_apt; then
      log "installing the PostgreSQL client (apt-get install postgresql-client)"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null ||
        fail "apt-get install postgresql-client failed"
    else
      fail "psql / pg_isready are not installed (install the PostgreSQL client)"
    fi
  fi
  if ! pg_ready; then
    is_local_host "$PG_HOST" || fail "PostgreSQL at $where does not answer (remote host, not starting anything)"
    pg_start_local
    log "waiting for PostgreSQL on $where"
    pg_wait_ready || fail "PostgreSQL on $where did not become ready within 30 s"
  fi
  if pg_url_ok; then
    log "PostgreSQL ok ($where, db '$PG_DB', role '$PG_USER')"
    return 0
  fi
  pg_provision
  pg_url_ok || fail "still cannot use DATABASE_URL (role '$PG_USER', db '$PG_DB' on $where): $PG_LAST_ERROR"
  log "PostgreSQL ok ($where, db '$PG_DB', role '$PG_USER')"
}

# ===================================== Redis ===================================================
redis_parse() {
  local fields=()
  mapfile -d '' fields < <(node -e '
    const u = new URL(process.env.REDIS_URL);
    const d = (s) => decodeURIComponent(s || "");
    process.stdout.write([d(u.hostname).replace(/^\[(.*)\]$/, "$1") || "127.0.0.1",
      u.port || "6379", d(u.username), d(u.password), u.protocol].join("\0") + "\0");
  ') || fail "REDIS_URL is not a valid URL"
  [ "${#fields[@]}" -eq 5 ] || fail "could not parse REDIS_URL"
  R_HOST="${fields[0]}" R_PORT="${fields[1]}" R_USER="${fields[2]}" R_PASS="${fields[3]}" R_PROTO="${fields[4]}"
}

# PING over plain TCP with node (no redis-cli needed); handles AUTH and rediss:// (TLS).
redis_node_ping() {
  with_timeout 5 node -e '
    const u = new URL(process.env.REDIS_URL);
    const d = (s) => decodeURIComponent(s || "");
    const host = d(u.hostname).replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
    const port = Number(u.port || 6379);
    const cmd = (...a) => `*${a.length}\r\n` + a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join("");
    const s = u.protocol === "rediss:" ? require("tls").connect({ host, port, servername: host })
                                       : require("net").connect({ host, port });
    let buf = "";
    s.setTimeout(3000, () => process.exit(1));
    s.on("error", () => process.exit(1));
    s.once(u.protocol === "rediss:" ? "secureConnect" : "connect", () => {
      let out = "";
      if (u.password) out += u.username ? cmd("AUTH", d(u.username), d(u.password)) : cmd("AUTH", d(u.password));
      s.write(out + cmd("PING"));
    });
    const want = u.password ? 2 : 1; // replies expected: [AUTH], PING
    s.on("data", (c) => {
      buf += c;
      const lines = buf.split("\r\n").slice(0, -1);
      if (lines.length >= want) process.exit(lines[want - 1] === "+PONG" ? 0 : 1);
    });
  ' >/dev/null 2>&1
}

redis_ping() {
  # URLs with credentials go through node: keeps the password off command lines, and some
  # redis-cli versions mishandle "redis://:password@host" (empty user name).
  if have redis-cli && [[ "$REDIS_URL" != *@* ]]; then
    local tls=()
    [[ "$REDIS_URL" == rediss://* ]] && tls=(--tls)
    [ "$(with_timeout 5 redis-cli --no-auth-warning "${tls[@]}" -u "$REDIS_URL" ping 2>/dev/null)" = PONG ]
  else
    redis_node_ping
  fi
}

redis_start_local() {
  if ! have redis-server; then
    can_apt || fail "Redis is not running on $R_HOST:$R_PORT and redis-server is not installed (installing it needs root + apt-get)"
    log "installing Redis (apt-get install redis-server)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null ||
      fail "apt-get install redis-server failed"
    redis_ping && return 0
  fi
  local bind=(127.0.0.1)
  local v
  v="$(redis-server --version 2>/dev/null | sed -nE 's/.*v=([0-9]+)\.([0-9]+).*/\1 \2/p')"
  # "-::1" (optional bind address) needs Redis >= 6.2.
  if [ -n "$v" ] && { [ "${v% *}" -gt 6 ] || { [ "${v% *}" -eq 6 ] && [ "${v#* }" -ge 2 ]; }; }; then
    bind+=(-::1)
  fi
  local args=(--daemonize yes --bind "${bind[@]}" --port "$R_PORT" --save "" --appendonly no)
  if [ -d /var/lib/redis ] && [ -w /var/lib/redis ]; then args+=(--dir /var/lib/redis); fi
  log "starting redis-server on port $R_PORT"
  if [ -n "$R_PASS" ] && { [ -z "$R_USER" ] || [ "$R_USER" = default ]; }; then
    # Password through the config on stdin, so it never shows up in a command line.
    printf 'requirepass "%s"\n' "$(sed 's/[\\"]/\\&/g' <<<"$R_PASS")" |
      redis-server - "${args[@]}" >/dev/null || fail "redis-server failed to start"
  else
    redis-server "${args[@]}" >/dev/null || fail "redis-server failed to start"
  fi
}

ensure_redis() {
  if redis_ping; then return 0; fi
  redis_parse
  local where="$R_HOST:$R_PORT"
  is_local_host "$R_HOST" || fail "Redis at $where does not answer (remote host, not starting anything)"
  [ "$R_PROTO" = "redis:" ] || fail "Redis at $where does not answer over TLS; start it yourself"
  redis_start_local
  log "waiting for Redis on $where"
  local i
  for i in $(seq 1 15); do
    if redis_ping; then
      log "Redis ok ($where)"
      return 0
    fi
    sleep 1
  done
  fail "Redis on $where did not answer PING within 15 s"
}

ensure_postgres
ensure_redis
