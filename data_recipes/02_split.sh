#!/usr/bin/env bash
# Stage 2: OUT/cuts.jsonl.gz -> OUT/cuts_{train,dev,test}.jsonl.gz (a corpus's own splits are kept).
# Usage: bash data_recipes/02_split.sh OUT [--by speaker] [--test-fraction 0.1]
source "$(dirname "$0")/common.sh"
out="$1"; shift
$SPEECHLM data split -c "$CONFIGS/split.yaml" --manifest "$out/cuts.jsonl.gz" --out "$out" "$@"
