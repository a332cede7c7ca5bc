#!/usr/bin/env bash
# Stage 0 (synthetic corpus only): speak the project's own sentences with offline Debian engines.
# Usage: bash data_recipes/00_synth.sh CORPUS_DIR [tiny|default] [extra speechlm flags]
# Resumable: finished audio files are kept; a finished build does nothing.
source "$(dirname "$0")/common.sh"
out="$1"; size="${2:-default}"; shift $(( $# >= 2 ? 2 : 1 ))
$SPEECHLM data synth -c "$CONFIGS/synth_${size}.yaml" --out "$out" "$@"
