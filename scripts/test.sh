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
