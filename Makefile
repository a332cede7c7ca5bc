# speechlm: set-up, tests, the main job and benchmarks. `make help` lists the targets.
#
#   make run     set up, then run the main job: speak with the bundled model (see README.md)
#   make test    set up, then run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
SIZE ?= default
SHARED ?= ../shared/data
PYTEST_ARGS ?=
# Offline speech engines for the embedded corpus, espeak-ng for phonemes, audio tools, classic
# codecs for the codec benchmark, and Chromium for the browser tests (driven by Playwright).
DEB_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
                sox libsndfile1 ffmpeg codec2 opus-tools chromium
INSTALLED := $(VENV)/.installed

.PHONY: help setup system-deps test run data demo data-tiny codec-data train-codec train-default bench bench-codec bench-pipeline bench-lm bench-tts clean

help:
	@sed -n '1,4p' Makefile; echo; grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: system-deps $(INSTALLED) ## Debian packages (when root), virtual environment, the package + test tools

system-deps: ## install missing Debian packages with apt-get (as root), or name them
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo -n "$$p "; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages: $$missing -- install them with: sudo apt-get install $$missing" >&2; exit 1; fi; \
	fi

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

test: setup ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

TEXT ?= Hello! This is speechlm, speaking with the model that ships in its repository.
run: setup ## the main job: speak TEXT into out/hello.wav, and demo/examples.txt into out/examples/, with the bundled model
	$(BIN)/speechlm say "$(TEXT)" -o out/hello.wav
	$(BIN)/speechlm synthesize --input demo/examples.txt --out_dir out/examples

data: setup ## build the embedded corpus (SIZE=default|tiny) and run its data recipe
	SPEECHLM=$(BIN)/speechlm bash data_recipes/run.sh synthetic data/synth_$(SIZE) exp/data/synth_$(SIZE) --size $(SIZE)

MODEL ?= default
demo: setup ## serve the Gradio demo (TTS + voice chat) on http://127.0.0.1:7860 (MODEL=pipeline dir; DEMO_ARGS=flags)
	$(BIN)/speechlm demo -c configs/demo/default.yaml --model $(MODEL) $(DEMO_ARGS)

data-tiny: ## the same recipe on the tiny corpus (seconds)
	$(MAKE) data SIZE=tiny

codec-data: data ## training data for the codec: embedded corpus + shared LibriSpeech train-clean-100 sample + FSDD
	SPEECHLM=$(BIN)/speechlm bash data_recipes/run.sh generic $(SHARED)/librispeech_train_clean_100 exp/data/libri100 \
	  --stop-stage 1 -- --require-text false
	SPEECHLM=$(BIN)/speechlm bash data_recipes/run.sh fsdd $(SHARED)/fsdd exp/data/fsdd --stop-stage 2

train-codec: codec-data ## train (or resume) the codec + vocoder: configs/codec/base.yaml
	$(BIN)/speechlm train codec -c configs/codec/base.yaml $(TRAIN_ARGS)

bench: setup ## data-pipeline throughput benchmark -> eval/reports/
	$(BIN)/python eval/bench_data.py --out eval/reports

CODEC ?= default
bench-codec: setup ## codec vs Codec2 / Opus / EnCodec (quality + speed) -> eval/reports/codec/ (CODEC=dir)
	$(BIN)/python eval/bench_codec.py --codec $(CODEC) --data $(SHARED) --jobs 2 --out eval/reports/codec

# PIPELINE=dir measures a trained pipeline folder; without a bundled one the default is random weights
PIPELINE ?= $(if $(wildcard speechlm/pretrained/pipeline.json),default,random)
bench-pipeline: setup ## say RTF, stream latency, batch throughput, memory, int8/compile -> eval/reports/pipeline/ (PIPELINE=dir)
	$(BIN)/python eval/bench_pipeline.py $(if $(filter random,$(PIPELINE)),--random-weights,--model $(PIPELINE)) \
	  --out eval/reports/pipeline

# LM decoding speed; other sizes, or torch.compile (minutes per row): make bench-lm BENCH_LM_ARGS="--sizes small,base,large --compile"
BENCH_LM_ARGS ?= --sizes mini,small,base
$(VENV)/.bench-installed: pyproject.toml | $(INSTALLED)
	$(BIN)/python -m pip install -q -e ".[bench]"
	@touch $@

bench-lm: setup $(VENV)/.bench-installed ## LM decoding, batch 1, vs HF GPT-2 and the bandwidth floor -> eval/reports/lm/
	$(BIN)/python eval/bench_lm.py --out eval/reports/lm $(BENCH_LM_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
