#!/usr/bin/env bash
# Stage 3: phonemize the splits and build the text tokenizer -> OUT/text/{cuts_*.jsonl.gz,tokenizer.json}.
# Usage: bash data_recipes/03_text.sh OUT [en|zh|...]
source "$(dirname "$0")/common.sh"
out="$1"; lang="${2:-en}"; shift $(( $# >= 2 ? 2 : 1 ))
cfg="$CONFIGS/text_${lang}.yaml"
if [ -f "$cfg" ]; then $SPEECHLM data text -c "$cfg" --dir "$out" "$@"
else $SPEECHLM data text --language "$lang" --dir "$out" "$@"; fi
