#!/usr/bin/env bash
# The bundled default model, end to end, on the machine at hand. Re-running resumes every stage
# (Lightning restores each run's elapsed time, so a finished stage ends at once).
#
#   1. training data: the embedded corpus (+ phonemes, chat turns), the LibriSpeech train-clean-100
#      sample and FSDD's train split (make codec-data)
#   2. codec + vocoder, stage 1: mel + STFT losses (configs/codec/base.yaml)            CODEC_TIME
#   3. the corpus's tokens with that codec (speechlm data tokenize)
#   4. side by side, one core each: the LM (configs/lm/base.yaml) and the vocoder's     LM_TIME
#      stage 2 on the frozen tokens: spectral losses on CPU (configs/vocoder/spectral.yaml),
#      VOCODER="" for the adversarial stage (base.yaml alone; for a GPU)
#   5. continued pretraining of that LM on both cores, from its export with a fresh warmup + cosine
#      schedule, on the 4-voice corpus (same sentences, twice the train audio; its WAVs start as hard
#      links to the default corpus's) (configs/lm/continue.yaml: 8,000 steps, bf16-mixed), then from that
#      export with guided attention on two heads (configs/lm/guided.yaml: 5,000 steps); LM_MORE=0 skips both
#   6. the vocoder, voice-conditioned, on the frozen tokens with the real read speech at its share of
#      the crops (configs/vocoder/real_speech.yaml + voice.yaml: a 13,000-step spectral schedule on one core;
#      the bundled vocoder stopped at 11,823 of them on its time budget); VOICE_VOCODER=0 skips it
#   7. voice presets (one train utterance per voice) and the pipeline folder, with the sampling
#      defaults chosen on the dev split (eval/eval_tts.py --split dev): temperature 0.7, fp32 LM
#      (int8 gave more outputs outside 0.5-2x the reference duration)
#
# Usage: bash data_recipes/train_default.sh [OUT]        OUT: speechlm/pretrained (the bundled model)
# Budgets are Lightning max_time values, DD:HH:MM:SS. On GPUs, stack the gpu.yaml overlays instead:
# EXTRA_CODEC="-c configs/codec/gpu.yaml" EXTRA_LM="-c configs/lm/gpu.yaml" VOCODER="" bash data_recipes/train_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPEECHLM=${SPEECHLM:-.venv/bin/speechlm}
PYTHON=${PYTHON:-.venv/bin/python}
out=${1:-speechlm/pretrained}
CODEC_TIME=${CODEC_TIME:-00:00:45:00}
LM_TIME=${LM_TIME:-00:01:15:00}
VOCODER=${VOCODER--c configs/vocoder/spectral.yaml}
data=exp/data/synth_default

[ -f exp/data/fsdd/cuts_train.jsonl.gz ] && [ -f "$data/text/chat_train.jsonl" ] || make codec-data

echo "== codec + vocoder stage 1 ($CODEC_TIME)"
$SPEECHLM train codec -c configs/codec/base.yaml ${EXTRA_CODEC:-} --trainer.max_time "$CODEC_TIME"

echo "== tokens"
$SPEECHLM data tokenize --dir "$data" --codec runs/codec/export

echo "== LM and vocoder stage 2, side by side ($LM_TIME each)"
mkdir -p logs
OMP_NUM_THREADS=1 $SPEECHLM train lm -c configs/lm/base.yaml ${EXTRA_LM:-} --trainer.max_time "$LM_TIME" \
  > logs/train_lm.log 2>&1 &
lm=$!
OMP_NUM_THREADS=1 $SPEECHLM train vocoder -c configs/vocoder/base.yaml $VOCODER ${EXTRA_CODEC:-} --trainer.max_time "$LM_TIME" \
  > logs/train_vocoder.log 2>&1 &
voc=$!
wait $lm || { echo "LM training failed: logs/train_lm.log" >&2; exit 1; }
wait $voc || { echo "vocoder training failed: logs/train_vocoder.log" >&2; exit 1; }

lm_out=runs/lm/export
if [ "${LM_MORE:-1}" != 0 ]; then
  echo "== the 4-voice corpus and its tokens, then the LM's continued pretraining from runs/lm/export"
  if [ ! -f data/synth_4voices/report.json ]; then
    mkdir -p data/synth_4voices
    [ -d data/synth_4voices/wavs ] || cp -al data/synth_default/wavs data/synth_4voices/
    $SPEECHLM data synth -c configs/data/synth_4voices.yaml --out data/synth_4voices
  fi
  SPEECHLM=$SPEECHLM bash data_recipes/run.sh synthetic data/synth_4voices exp/data/synth_4voices --stage 1
  $SPEECHLM data tokenize --dir exp/data/synth_4voices --codec runs/codec/export
  $SPEECHLM train lm -c configs/lm/base.yaml -c configs/lm/continue.yaml --model.init_from runs/lm/export ${EXTRA_LM:-} \
    > logs/train_lm_more.log 2>&1 || { echo "LM training failed: logs/train_lm_more.log" >&2; exit 1; }
  $SPEECHLM train lm -c configs/lm/base.yaml -c configs/lm/continue.yaml -c configs/lm/guided.yaml \
    --model.init_from runs/lm_more/export ${EXTRA_LM:-} \
    > logs/train_lm_guided.log 2>&1 || { echo "LM training failed: logs/train_lm_guided.log" >&2; exit 1; }
  lm_out=runs/lm_guided/export
fi

codec_out=runs/vocoder/export
if [ "${VOICE_VOCODER:-1}" != 0 ]; then
  echo "== vocoder, voice-conditioned, on real speech too (13,000 steps)"
  OMP_NUM_THREADS=1 $SPEECHLM train vocoder -c configs/vocoder/base.yaml $VOCODER -c configs/vocoder/real_speech.yaml \
    -c configs/vocoder/voice.yaml --model.codec_dir runs/vocoder/export --trainer.max_steps 13000 \
    --model.max_steps 13000 ${EXTRA_CODEC:-} > logs/train_vocoder_voice.log 2>&1 \
    || { echo "vocoder training failed: logs/train_vocoder_voice.log" >&2; exit 1; }
  codec_out=runs/vocoder_voice/export
fi

echo "== pipeline -> $out"
$PYTHON data_recipes/voices.py "$data/text/cuts_train.jsonl.gz" exp/voices.jsonl
$SPEECHLM pipeline build --codec "$codec_out" --lm "$lm_out" --tokenizer "$data/text/tokenizer.json" \
  --voices exp/voices.jsonl --default_voice flite-rms --out "$out" \
  --defaults "{temperature: 0.7, cpu_quantize: null}" \
  --note "Trained by data_recipes/train_default.sh (codec $CODEC_TIME, LM and vocoder stage 2 $LM_TIME)."
