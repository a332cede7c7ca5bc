# Sourced by the numbered stages: finds the `speechlm` command and the repository's configs.
set -euo pipefail
RECIPES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$RECIPES_DIR")"
if [ -z "${SPEECHLM:-}" ]; then  # override with SPEECHLM="python -m speechlm" etc.
  if command -v speechlm >/dev/null 2>&1; then SPEECHLM=speechlm
  elif [ -x "$REPO_DIR/.venv/bin/speechlm" ]; then SPEECHLM="$REPO_DIR/.venv/bin/speechlm"
  else echo "speechlm is not installed: run 'make setup' first" >&2; exit 1; fi
fi
CONFIGS="${CONFIGS:-$REPO_DIR/configs/data}"
