"""The trained LM as a folder of safetensors + JSON: what inference loads, never a pickle.

Folder layout (``model.export_dir`` of ``speechlm train lm``, written when training ends)::

    lm.safetensors   the SpeechLM state dict (tied head weights stored once)
    lm.json          {"format": "speechlm-lm", "format_version": "1",
                      "size": "small",                      # the named preset it was built from
                      "config": {...LMConfig fields...},    # what builds the SpeechLM
                      "layout": {"text_vocab", "n_codebooks", "codebook_size"},   # TokenLayout
                      "codec": {...CodecInfo...} | null,    # the codec whose tokens it was trained on
                      "step": 12000,                        # optimizer steps trained
                      "weights_sha256": "..."}              # catches an lm.json paired with other weights
    tokenizer.json   the text tokenizer that made its text ids (copied when training knew it)

A LoRA stage exports ``adapter_model.safetensors`` + ``adapter_config.json`` (peft's format) with the
same ``lm.json`` keys plus ``base_sha256`` (the base weights it was trained on, checked when loading);
load it on top of its base with ``load_lm(base_dir, adapter=dir)``.
Every file is written atomically and ``lm.json`` last, so a reader never pairs new JSON with old weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from safetensors.torch import load_model, save_model

from speechlm.codec.base import CodecInfo
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path, write_json
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import LMConfig, SpeechLM

FORMAT, FORMAT_VERSION = "speechlm-lm", "1"
WEIGHTS, CONFIG, TOKENIZER = "lm.safetensors", "lm.json", "tokenizer.json"
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"


class LoadedLM(NamedTuple):
    model: SpeechLM
    layout: TokenLayout
    meta: dict[str, Any]  # the whole lm.json


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lm_meta(size: str, model: SpeechLM, layout: TokenLayout, codec: CodecInfo | None, step: int) -> dict[str, Any]:
    """Everything but the weights: what rebuilds the model and checks it against its tokens."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "size": size,
            "config": dataclasses.asdict(model.cfg), "layout": dataclasses.asdict(layout),
            "codec": codec.to_dict() if codec is not None else None, "step": int(step)}


def export_lm(out_dir: str | Path, model: SpeechLM, meta: dict[str, Any], tokenizer: str | Path | None = None) -> Path:
    """Write ``model`` and ``meta`` (from :func:`lm_meta`) into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT})
        digest = _sha256(tmp)
    if tokenizer is not None:
        with atomic_path(out / TOKENIZER) as tmp:
            shutil.copyfile(tokenizer, tmp)
    write_json(out / CONFIG, {**meta, "weights_sha256": digest})
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    cfg_file = Path(path) / CONFIG
    if not cfg_file.is_file():
        raise SpeechLMError(f"{cfg_file}: not found ({path} is not an exported speechlm LM)")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SpeechLMError(f"{cfg_file}: invalid JSON ({e})") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise SpeechLMError(f"{cfg_file}: not a {FORMAT} v{FORMAT_VERSION} config "
                            f"(format={meta.get('format')!r}, version={meta.get('format_version')!r})")
    return meta


def load_lm(path: str | Path, adapter: str | Path | None = None, merge: bool = True) -> LoadedLM:
    """The exported LM in ``path`` (eval mode, CPU), optionally with a LoRA ``adapter`` folder on top.

    ``merge`` folds the adapter into the base weights (a plain SpeechLM, as fast as the base); without it
    the model stays a peft wrapper whose forward is the one training ran.
    """
    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        adapter_hint = f"; it holds a LoRA adapter: load_lm(BASE_DIR, adapter='{path}')"
        raise SpeechLMError(f"{weights}: not found{adapter_hint if (path / ADAPTER_CONFIG).exists() else ''}")
    if meta.get("weights_sha256") and _sha256(weights) != meta["weights_sha256"]:
        raise SpeechLMError(f"{weights} does not match {path / CONFIG} (checksum differs): re-export the model")
    cfg = LMConfig(**meta["config"])
    layout = TokenLayout(**meta["layout"])
    if cfg.stream_vocab != layout.stream_vocab:
        raise SpeechLMError(f"{path / CONFIG}: config.stream_vocab {cfg.stream_vocab} does not match the layout "
                            f"{layout} ({layout.stream_vocab})")
    model = SpeechLM(cfg)
    load_model(model, str(weights), strict=True)
    if adapter is not None:
        from speechlm.lm.lora import load_adapter

        base = read_meta(adapter).get("base_sha256")
        if base != meta.get("weights_sha256"):
            raise SpeechLMError(f"adapter {adapter} was trained on other base weights than {weights} "
                                f"(sha256 {base} vs {meta.get('weights_sha256')})")
        model = load_adapter(model, adapter, merge=merge)
    return LoadedLM(model.eval(), layout, meta)
