#!/usr/bin/env bash
# The one test command (`npm test`): services up, install if needed, then
# lint + typecheck + unit + integration + e2e against real PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[test] installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
# Swagger UI is tested in a real browser (test/e2e/swagger-ui.test.ts): Debian's chromium,
# installed here when missing; only where that is impossible does that suite skip (it says so).
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing chromium (apt-get install chromium) for the Swagger UI test"
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "[test] WARNING: apt-get install chromium failed: the Swagger UI browser test will be skipped" >&2
  else
    echo "[test] WARNING: no chromium and no way to install it (needs root + apt-get): the Swagger UI browser test will be skipped" >&2
  fi
fi
echo "[test] lint";      npx eslint . --max-warnings 0
echo "[test] typecheck"; npx tsc -p tsconfig.json --noEmit
# the committed contract: zero problems under redocly.yaml and .spectral.yaml (offline)
echo "[test] openapi lint"
REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx redocly lint openapi.json
npx spectral lint openapi.json --fail-severity warn
echo "[test] jest (unit + integration + e2e)"
mkdir -p var
status=0
npx jest --ci --json --outputFile=var/jest-results.json "$@" || status=$?
# one plain summary line for CI: "jest: N passed, N failed"
node -e '
  const r = require("./var/jest-results.json");
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
' || true
exit "$status"
