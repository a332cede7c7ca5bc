#!/usr/bin/env bash
# Stage 4 (embedded corpus): the project's chat turns phonemized with stage 3's tokenizer -> OUT/text/chat_{train,test}.jsonl.
# Usage: bash data_recipes/04_chat.sh OUT [en]
source "$(dirname "$0")/common.sh"
out="$1"; lang="${2:-en}"; shift $(( $# >= 2 ? 2 : 1 ))
$SPEECHLM data chat --language "$lang" --dir "$out" "$@"
