#!/usr/bin/env bash
# Run a whole data recipe, stage by stage (each stage is idempotent: re-running a finished one is a no-op).
#
#   bash data_recipes/run.sh CORPUS CORPUS_ROOT OUT [--stage N] [--stop-stage M] [--size tiny|default]
#                            [--language en] [-- extra flags for stage 1]
#
#   CORPUS: synthetic | ljspeech | libritts | vctk | librispeech | fsdd | generic
#   synthetic: stage 0 first builds the corpus into CORPUS_ROOT (--size, default "default").
#   Stages: 0 corpus (synthetic), 1 prepare, 2 split, 3 text + tokenizer, 4 chat turns (synthetic).
#
# Examples:
#   bash data_recipes/run.sh synthetic data/synth exp/data/synth
#   bash data_recipes/run.sh ljspeech /data/LJSpeech-1.1 exp/data/ljspeech
#   bash data_recipes/run.sh librispeech /data/LibriSpeech exp/data/libri --stop-stage 2 -- --skip-bad
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 3 ]; then sed -n '2,15p' "$0" >&2; exit 2; fi
corpus="$1"; root="$2"; out="$3"; shift 3
stage=0; stop_stage=4; size=default; language=en; extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --language) language="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

if run 0 && [ "$corpus" = synthetic ]; then
  echo "== stage 0: build the synthetic corpus ($size) -> $root"
  bash "$here/00_synth.sh" "$root" "$size"
fi
if run 1; then
  echo "== stage 1: prepare $corpus manifests -> $out"
  bash "$here/01_prepare.sh" "$corpus" "$root" "$out" --language "$language" ${extra[@]+"${extra[@]}"}
fi
if run 2; then
  echo "== stage 2: split"
  bash "$here/02_split.sh" "$out"
fi
if run 3; then
  echo "== stage 3: text front-end + tokenizer"
  bash "$here/03_text.sh" "$out" "$language"
fi
if run 4 && [ "$corpus" = synthetic ]; then
  echo "== stage 4: chat turns for the LM's chat task"
  bash "$here/04_chat.sh" "$out" "$language"
fi
echo "== done: $out"
