# Sourced by the shell scripts (start.sh, ensure-services.sh): exports the `.env` entries the
# environment does not set yet (scripts/dotenv.js: Node's parser, never `source`d; the real
# environment wins). Read from a file, not a process substitution, whose exit code `set -e` never
# sees: an ENV_FILE that names no file ends the script here (exit 78), before anything is set up
# with the defaults.
export_dotenv() {
  local pairs key val status
  pairs="$(mktemp)"
  node scripts/dotenv.js > "$pairs" || {
    status=$?
    rm -f "$pairs"
    exit "$status"
  }
  while IFS= read -r -d '' key && IFS= read -r -d '' val; do
    export "$key=$val"
  done < "$pairs"
  rm -f "$pairs"
}
