#!/usr/bin/env bash
# The one run command (`npm start`): services up, install, migrate, seed demo data,
# then the API and the worker side by side until Ctrl-C / SIGTERM (and, in development without
# STORAGE_ENDPOINT, a local image store: scripts/local-storage.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
# A stop before the API and the worker run ends the start instead of starting them afterwards.
# A SIGTERM to npm (a supervisor's stop) reaches this shell alone: the step under way (install,
# migrations, seed) finishes first, then it exits 143. Ctrl-C signals the terminal's whole process
# group: the step under way is interrupted too (each migration is one transaction, rolled back;
# an interrupted npm ci or seed is redone at the next start), then it exits 130 — a shell's code
# for SIGINT. npm passes a signal on to this shell because package.json's start script `exec`s it:
# npm's own shell (dash on Debian) neither passes signals on nor hands itself over, so they ended
# it alone, leaving this script, the API and the worker running (shutdown review).
stopped_early() {
  echo "[start] stopped before the API and the worker started"
  exit "$1"
}
trap 'stopped_early 143' TERM
trap 'stopped_early 130' INT
# .env (if any) through Node's parser, never `source`d: the real environment wins. The API, the
# worker, migrations and the seed read .env themselves too; this is for NODE_ENV and the ports.
# An ENV_FILE that names no file ends the start here (exit 78), before anything is set up.
# shellcheck source=scripts/dotenv.sh
source scripts/dotenv.sh
export_dotenv
# A local run is a development instance (demo data, simulated payments, built-in secrets; on
# loopback only) unless the operator chose otherwise: the processes themselves never assume
# development. Only an unset NODE_ENV becomes development — a set but empty one stays what the
# processes take it for (not development), so this script and `node dist/main.js` agree.
export NODE_ENV="${NODE_ENV-development}"
if [ "$NODE_ENV" = development ]; then
  bash scripts/ensure-services.sh
else
  # a deployment names its own services: nothing is installed, created or started here — a
  # forgotten DATABASE_URL must refuse to boot (at the migrations), not get a local database
  # under a role with a known password and a Redis without one
  echo "[start] NODE_ENV=${NODE_ENV:-(empty)}: using the configured DATABASE_URL and REDIS_URL (no local services set up)"
fi
if [ -L node_modules ]; then
  # A linked node_modules is shared (e.g. git worktrees): `npm ci` would empty the link's target
  # for everyone before replacing the link. Never install through it; say so if it looks stale.
  if [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "[start] note: node_modules is a link and older than package-lock.json; not reinstalling through it" >&2
  fi
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[start] installing dependencies (npm ci)"
  # dev dependencies too (swc runs the sources here: scripts/ts-register.js): a NODE_ENV=production from .env or
  # the shell would make npm leave them out
  npm ci --ignore-scripts --no-audit --no-fund --include=dev
fi
echo "[start] applying migrations"
# A DATABASE_URL (or DATABASE_LOCK_URL) whose server refuses the sign-in ends the start here with
# the CLI's exit code 78 and its one line (ormconfig.ts); one that does not answer with 1
npm run --silent migration:run
if [ "$NODE_ENV" = "development" ]; then
  echo "[start] seeding demo data"
  # Refused (exit 65) on a database holding data the seed did not create — a developer's own
  # accounts and orders, or a shop's, on this host: the seed has said so and written nothing, and
  # the start goes on without demo data. Any other failure stops it.
  seeded=0
  npm run --silent seed || seeded=$?
  if [ "$seeded" -eq 65 ]; then
    echo "[start] demo data not loaded (see above); starting on the database as it is"
  elif [ "$seeded" -ne 0 ]; then
    exit "$seeded"
  fi
fi
pids=()
stop() {
  # ignored, not reset: Ctrl-C reaches this shell from the terminal and again from npm, and the
  # second one must not end it while the API and the worker drain
  trap '' TERM INT
  echo "[start] stopping API and worker"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local code=0
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || code=$?
  done
  echo "[start] stopped"
  exit "$code"
}
trap stop TERM INT
node -r ./scripts/ts-register.js src/main.ts & pids+=($!)
node -r ./scripts/ts-register.js src/worker.ts & pids+=($!)
# Product images need an S3-compatible store: in development without STORAGE_ENDPOINT, a local one
# on its default (localhost:9000) unless something (a MinIO) already answers there
storage="images: STORAGE_ENDPOINT"
if [ "$NODE_ENV" = development ] && [ -z "${STORAGE_ENDPOINT:-}" ]; then
  if node -e 'require("net").connect(9000, "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))'; then
    storage="images: the store on localhost:9000"
  else
    node -r ./scripts/ts-register.js scripts/local-storage.ts & pids+=($!)
    storage="images: a local store on localhost:9000, files in ${LOCAL_STORAGE_DIR:-var/storage}"
  fi
fi
if [ "${DOCS_ENABLED:-true}" = true ] || [ "${DOCS_ENABLED:-}" = 1 ]; then
  docs="Swagger UI: /docs"
else
  docs="Swagger UI off (DOCS_ENABLED)"
fi
echo "[start] NODE_ENV=$NODE_ENV: API on http://localhost:${PORT:-3000} ($docs; metrics on :${METRICS_PORT:-9465}; $storage), worker running; Ctrl-C stops them"
# If either process dies, stop the other and exit with its status.
set +e
wait -n "${pids[@]}"
status=$?
kill -TERM "${pids[@]}" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
exit "$status"
