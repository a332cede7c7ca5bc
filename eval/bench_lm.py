"""LM decoding speed at batch 1: our SpeechLM against a Hugging Face GPT-2 of the same shape, run side by side.

    python eval/bench_lm.py --out eval/reports/lm [--sizes small,base,large] [--threads 1,2] [--compile]

For each LM size (``speechlm.lm.model.SIZES``) and thread count, a fresh process builds our LM with
random weights and a ``transformers`` ``GPT2LMHeadModel`` with the same width, depth, heads and
vocabulary (the sum of our per-stream vocabularies, so its one head is as large as our K heads
together), then times, alternating between the two, ``--repeats`` runs of each generating exactly
``--steps`` new positions after a ``--prompt``-step prompt with a KV cache:

* ours through ``speechlm.lm.generate.generate`` (the project's generation loop, with the per-stream
  rules, delay pattern and length guard), ``min_frames == max_frames`` so it never stops early,
  after ``optimize_for_decoding()``; with ``--compile`` also a copy ``optimize_for_decoding(compile=True)``;
* GPT-2 through ``model.generate(..., use_cache=True, min_new_tokens=max_new_tokens)``.

Both greedy, and both sampling (temperature 1, top-k 50, top-p 0.95). Time per step is the median
wall time of the whole call (prefill included) divided by the steps. One of our steps emits one token
per codebook (K codec tokens, one audio frame at steady state); one GPT-2 step emits one token. The
comparison is per step, which is what sets the audio frame rate we can stream.

Floor: the weights read per step (every parameter byte; GPT-2's position table is left out, as it
reads one row) divided by the copy bandwidth measured in the same process at the same thread count
(``2 * bytes / time`` of a 256 MB tensor copy). Load averages before and after each measurement are
recorded: on a shared machine, compare only numbers taken together.
Writes ``bench_lm.json`` and ``bench_lm.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLING = {"greedy": {"temperature": 0.0}, "sample": {"temperature": 1.0, "top_k": 50, "top_p": 0.95}}


# ----------------------------------------------------------------------------------------- measuring

def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def copy_bandwidth(mbytes: int = 256, repeats: int = 10) -> float:
    """GB/s of a ``mbytes`` MB tensor copy, counting the read and the write (median of ``repeats``)."""
    import torch

    src = torch.rand(mbytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t)
    return 2 * src.numel() * src.element_size() / statistics.median(times) / 1e9


def hf_gpt2(cfg, vocab: int):
    """A GPT-2 with our LM's width, depth, heads and total vocabulary, random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from speechlm.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

    conf = GPT2Config(vocab_size=vocab, n_positions=cfg.max_seq_len, n_embd=cfg.dim, n_layer=cfg.n_layers,
                      n_head=cfg.n_heads, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    return GPT2LMHeadModel(conf).eval()


def worker(size: str, threads: int, args: argparse.Namespace) -> dict:
    """Runs in a fresh process: one size at one thread count, the systems alternating run by run."""
    import torch
    import transformers

    from speechlm.lm.generate import GenerationConfig, generate
    from speechlm.lm.layout import AUDIO, TTS, TokenLayout
    from speechlm.lm.model import SpeechLM, lm_config
    from speechlm.lm.sampling import SamplingConfig
    from speechlm.text.tokenizer import BOS_ID

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    layout = TokenLayout(args.text_vocab, args.codebooks, args.codebook_size)
    k, n = layout.n_codebooks, args.steps
    torch.manual_seed(0)
    ours = SpeechLM(lm_config(size, layout.stream_vocab)).eval()
    models = {"ours": ours}
    if args.compile:  # the same weights, compiled
        models["ours_compiled"] = SpeechLM(ours.cfg).eval()
        models["ours_compiled"].load_state_dict(ours.state_dict())
        models["ours_compiled"].optimize_for_decoding(compile=True)
    ours.optimize_for_decoding()
    hf = hf_gpt2(ours.cfg, sum(layout.stream_vocab))
    text = torch.randint(layout.text_vocab - 40, layout.text_vocab, (args.prompt - 3,)).tolist()
    prompt = layout.text_steps([BOS_ID, TTS, *text, AUDIO])  # [K, P]: a TTS prompt up to the audio
    ids = prompt[:1]  # GPT-2 gets the same number of prompt tokens
    bw = [copy_bandwidth(args.copy_mb)]

    def run_ours(model: SpeechLM, mode: str) -> torch.Tensor:
        frames = n - (k - 1)  # the delayed streams finish K - 1 steps after the last frame's <eos>
        cfg = GenerationConfig(min_frames=frames, max_frames=frames, seed=0,
                               sampling=SamplingConfig(**SAMPLING[mode]))
        codes = generate(model, layout, [prompt], cfg)[0]
        assert codes.shape == (k, frames), codes.shape
        return codes

    def run_hf(mode: str) -> torch.Tensor:
        kw = {"do_sample": False} if mode == "greedy" else {"do_sample": True, **SAMPLING[mode]}
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                              use_cache=True, **kw)
        assert out.shape[-1] == ids.shape[-1] + n, out.shape
        return out

    runs = {name: (lambda mode, m=m: run_ours(m, mode)) for name, m in models.items()} | {"hf": run_hf}
    timings: dict[str, dict[str, list[float]]] = {name: {} for name in runs}
    first_call: dict[str, dict[str, float]] = {name: {} for name in runs}
    outputs: dict[str, dict[str, torch.Tensor]] = {name: {} for name in runs}
    for mode in args.modes:
        for name, run in runs.items():  # warm-up: allocator, thread pool, first-call paths, compilation
            t = time.perf_counter()
            outputs[name][mode] = run(mode)
            first_call[name][mode] = time.perf_counter() - t
            timings[name][mode] = []
        for _ in range(args.repeats):
            for name, run in runs.items():
                t = time.perf_counter()
                run(mode)
                timings[name][mode].append(time.perf_counter() - t)
    bw.append(copy_bandwidth(args.copy_mb))
    gbps = statistics.median(bw)

    def entry(model, read_params: int, name: str) -> dict:
        e = {"params": sum(p.numel() for p in model.parameters()), "weight_bytes_per_step": read_params * 4}
        e["floor_ms"] = e["weight_bytes_per_step"] / (gbps * 1e9) * 1e3
        for mode, t in timings[name].items():
            ms = statistics.median(t) / n * 1e3
            e[mode] = {"ms_per_step": ms, "steps_per_s": 1e3 / ms, "x_floor": ms / e["floor_ms"],
                       "runs_s": t, "first_call_s": first_call[name][mode]}
        return e

    res = {"size": size, "threads": threads, "steps": n, "prompt_steps": prompt.shape[-1], "copy_gbps": gbps,
           "copy_gbps_runs": bw,
           "config": {"dim": ours.cfg.dim, "layers": ours.cfg.n_layers, "heads": ours.cfg.n_heads,
                      "kv_heads": ours.cfg.kv_heads, "ffn_dim": ours.cfg.ffn_dim,
                      "stream_vocab": layout.stream_vocab, "hf_vocab": hf.config.vocab_size,
                      "hf_ffn_dim": 4 * hf.config.n_embd, "hf_attention": hf.config._attn_implementation}}
    for name, m in models.items():
        res[name] = entry(m, m.num_params(), name)
    res["hf"] = entry(hf, sum(p.numel() for pn, p in hf.named_parameters() if "wpe" not in pn), "hf")
    for mode in args.modes:
        h = res["hf"][mode]
        for name in models:
            o = res[name][mode]
            o["codec_tokens_per_s"] = o["steps_per_s"] * k
            o["x_real_time"] = o["steps_per_s"] / args.frame_rate
            o["speedup_vs_hf"] = h["ms_per_step"] / o["ms_per_step"]
        if "ours_compiled" in models:  # compiled logits differ from eager ones by rounding: do the codes?
            res["ours_compiled"][mode]["same_codes_as_eager"] = bool(
                torch.equal(outputs["ours"][mode], outputs["ours_compiled"][mode]))
    res["load_before"], res["load_after"] = load_before, os.getloadavg()
    return res


# ----------------------------------------------------------------------------------------- report

def markdown(r: dict) -> str:
    a = r["args"]
    intro = (f"Our LM (random weights, fp32, `optimize_for_decoding()`) vs a `transformers` {r['transformers']} "
             f"GPT2LMHeadModel with the same width, depth, heads and total vocabulary, generating "
             f"{a['steps']} steps after a {a['prompt']}-step prompt, KV cache on both, alternating runs, "
             f"median of {a['repeats']}. One of our steps = {a['codebooks']} codec tokens (one per codebook: "
             f"one audio frame at {a['frame_rate']:g} Hz); one GPT-2 step = 1 token. Speed-up = GPT-2 ms per "
             "step / ours (goal: at least 1.5x). Floor = weight bytes read per step / measured copy bandwidth; "
             "x floor = measured / floor (goal: at most 2 where bandwidth dominates). Sampling = temperature 1, "
             "top-k 50, top-p 0.95 (ours samples all K streams).")
    loads = [x[k][0] for x in r["results"] for k in ("load_before", "load_after")]
    # The 1-minute load average lags and counts the benchmark's own threads (up to one per core), so only
    # a load above the core count says that another job was running.
    load = (f"Load average (1 min, the benchmark's own threads included) during the run: {min(loads):.1f}-"
            f"{max(loads):.1f} on {r['machine']['cores']} cores"
            + (": other jobs shared the machine, so absolute times are inflated and the ratios noisy."
               if max(loads) > r["machine"]["cores"] + 0.5 else ": nothing else was running."))
    lines = [f"# LM decoding speed, batch 1 ({r['machine']['cores']} cores, {r['machine']['cpu']})", "",
             f"Command: `{r['command']}`", "", intro, "", load, ""]
    names = {"ours": "ours", "ours_compiled": "ours, compiled"}
    for mode in a["modes"]:
        header = ("| size | threads | LM | params ours / GPT-2 | ours ms/step | GPT-2 ms/step | speed-up | "
                  "ours steps/s (codec tokens/s, x real time) | floor ms ours / GPT-2 (copy GB/s) | "
                  "x floor ours / GPT-2 | load avg before -> after |")
        lines += [f"## {mode}", "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["results"]:
            h = x["hf"]
            for name in (nm for nm in names if nm in x):
                o = x[name]
                lines.append(
                    f"| {x['size']} | {x['threads']} | {names[name]} | {o['params'] / 1e6:.1f}M / "
                    f"{h['params'] / 1e6:.1f}M | {o[mode]['ms_per_step']:.2f} | {h[mode]['ms_per_step']:.2f} | "
                    f"**{o[mode]['speedup_vs_hf']:.2f}x** | {o[mode]['steps_per_s']:.0f} "
                    f"({o[mode]['codec_tokens_per_s']:.0f}, {o[mode]['x_real_time']:.1f}x) | "
                    f"{o['floor_ms']:.2f} / {h['floor_ms']:.2f} ({x['copy_gbps']:.1f}) | "
                    f"{o[mode]['x_floor']:.2f} / {h[mode]['x_floor']:.2f} | "
                    f"{x['load_before'][0]:.1f} -> {x['load_after'][0]:.1f} |")
        lines.append("")
    compiled = [x for x in r["results"] if "ours_compiled" in x]
    if compiled:
        runs = "; ".join(f"{x['size']}/{x['threads']}t {m} {x['ours_compiled'][m]['first_call_s']:.0f} s, "
                         f"{'same' if x['ours_compiled'][m]['same_codes_as_eager'] else 'different'}"
                         for x in compiled for m in a["modes"])
        lines += [("Compiled (`optimize_for_decoding(compile=True)`): first call (compilation included) and "
                   f"whether its codes equal the eager model's: {runs}."), ""]
    c = {x["size"]: x["config"] for x in r["results"]}
    header = ("| size | dim | layers | heads (KV heads) | FFN ours (SwiGLU) / GPT-2 (GELU) | "
              "vocab ours (per stream) / GPT-2 | GPT-2 attention |")
    lines += ["## Shapes", "", header, "|---|---|---|---|---|---|---|"]
    for size, s in c.items():
        lines.append(f"| {size} | {s['dim']} | {s['layers']} | {s['heads']} ({s['kv_heads']}) | "
                     f"{s['ffn_dim']} x3 / {s['hf_ffn_dim']} x2 | {'+'.join(map(str, s['stream_vocab']))} / "
                     f"{s['hf_vocab']} | {s['hf_attention']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "lm")
    ap.add_argument("--sizes", default="small,base", help="comma-separated lm_config sizes (tiny, small, base, large)")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--steps", type=int, default=200, help="new steps (positions) generated per run")
    ap.add_argument("--prompt", type=int, default=16, help="prompt length in steps")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modes", default="greedy,sample", help="greedy and/or sample")
    ap.add_argument("--compile", action="store_true", help="also time optimize_for_decoding(compile=True)")
    ap.add_argument("--copy-mb", type=int, default=256, help="tensor size for the copy-bandwidth measurement")
    # the layout of configs/lm/base.yaml: 118 text ids, the default codec's 4 codebooks x 1000 at 25 Hz
    ap.add_argument("--text-vocab", type=int, default=118)
    ap.add_argument("--codebooks", type=int, default=4)
    ap.add_argument("--codebook-size", type=int, default=1000)
    ap.add_argument("--frame-rate", type=float, default=25.0)
    ap.add_argument("--worker", nargs=2, metavar=("SIZE", "THREADS"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.modes = args.modes.split(",") if isinstance(args.modes, str) else args.modes
    sys.path.insert(0, str(REPO))
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return 0
    if unknown := set(args.modes) - set(SAMPLING):
        sys.exit(f"unknown mode(s) {sorted(unknown)}; known: {', '.join(SAMPLING)}")
    if args.steps < args.codebooks:
        sys.exit(f"--steps must be at least --codebooks ({args.codebooks})")
    try:  # fail here, not in every worker, when the bench extra is missing
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"{e}: pip install -e '.[bench]' (make bench-lm does)")

    results, t0 = [], time.time()
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("steps", "prompt", "repeats", "text_vocab", "codebooks", "codebook_size", "frame_rate",
                            "copy_mb")]
    for size in args.sizes.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            cmd = [sys.executable, __file__, "--worker", size, str(threads), f"--modes={','.join(args.modes)}",
                   *passthrough, *(["--compile"] if args.compile else [])]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode:
                sys.exit(f"worker {size}/{threads} failed:\n{r.stderr[-3000:]}")
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
            x = results[-1]
            print(f"  {size} x{threads}: " + ", ".join(
                f"{m} {name} {x[name][m]['ms_per_step']:.2f} ms/step vs GPT-2 {x['hf'][m]['ms_per_step']:.2f} "
                f"({x[name][m]['speedup_vs_hf']:.2f}x)" for m in args.modes for name in ("ours", "ours_compiled")
                if name in x) + f"; floor {x['ours']['floor_ms']:.2f} ms (load {x['load_before'][0]:.1f})",
                file=sys.stderr)
    report = {"command": "python eval/bench_lm.py " + " ".join(sys.argv[1:]),
              "machine": machine(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "args": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
              "seconds": time.time() - t0, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_lm.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (args.out / "bench_lm.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
