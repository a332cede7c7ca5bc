#!/usr/bin/env bash
# Stage 1: scan the corpus, check every transcript and audio file, write OUT/cuts.jsonl.gz.
# Usage: bash data_recipes/01_prepare.sh CORPUS CORPUS_ROOT OUT [--skip-bad] [other flags]
# Options come from configs/data/prepare/CORPUS.yaml; flags given here override them.
source "$(dirname "$0")/common.sh"
corpus="$1"; root="$2"; out="$3"; shift 3
$SPEECHLM data prepare -c "$CONFIGS/prepare/${corpus}.yaml" --root "$root" --out "$out" "$@"
