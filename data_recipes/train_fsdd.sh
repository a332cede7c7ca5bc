#!/usr/bin/env bash
# The default LM recipe on FSDD (real voices, spoken digits), end to end, then its evaluation.
#
#   1. FSDD manifests and splits (make codec-data), phonemes + tokenizer (recipe stage 3)
#   2. FSDD's tokens with the bundled codec (speechlm data tokenize --codec default)
#   3. the `mini` LM from scratch, all tasks mixed (configs/lm/base.yaml + configs/lm/fsdd.yaml)
#   4. a pipeline: the bundled codec, that LM, one voice preset per FSDD speaker (a train clip)
#   5. eval/eval_fsdd.py: digit accuracy of its speech (pocketsphinx, ten-word grammar) and of its
#      own asr task, on the 300 test items, beside the recordings and their codec resynthesis
#
# Usage: bash data_recipes/train_fsdd.sh [OUT]          OUT: exp/pipelines/fsdd
# Re-running resumes the LM run (runs/lm_fsdd) and redoes the cheap stages. EXTRA_LM: more flags for
# the LM (e.g. "--trainer.precision 32-true" on CPUs without AVX512-BF16).
set -euo pipefail
cd "$(dirname "$0")/.."
SPEECHLM=${SPEECHLM:-.venv/bin/speechlm}
PYTHON=${PYTHON:-.venv/bin/python}
out=${1:-exp/pipelines/fsdd}
data=exp/data/fsdd

[ -f "$data/cuts_train.jsonl.gz" ] || make codec-data
SPEECHLM=$SPEECHLM bash data_recipes/run.sh fsdd ../shared/data/fsdd "$data" --stage 3 --stop-stage 3
$SPEECHLM data tokenize --dir "$data" --codec default

vocab=$($PYTHON -c "from speechlm.text.tokenizer import TextTokenizer; print(TextTokenizer.load('$data/text/tokenizer.json').vocab_size)")
echo "== LM on FSDD (text vocabulary $vocab)"
$SPEECHLM train lm -c configs/lm/base.yaml -c configs/lm/fsdd.yaml --model.text_vocab "$vocab" ${EXTRA_LM:-}

echo "== pipeline -> $out"
$PYTHON data_recipes/voices.py "$data/text/cuts_train.jsonl.gz" exp/voices_fsdd.jsonl --seconds 0.5
$SPEECHLM pipeline build --codec default --lm runs/lm_fsdd/export --tokenizer "$data/text/tokenizer.json" \
  --voices exp/voices_fsdd.jsonl --default_voice jackson --out "$out" \
  --defaults "{temperature: 0.7, cpu_quantize: null}" \
  --note "FSDD digits: the default LM recipe on FSDD's train split (data_recipes/train_fsdd.sh)."

echo "== evaluation -> eval/reports/fsdd"
$PYTHON eval/eval_fsdd.py --model "$out" --data "$data" --out eval/reports/fsdd
