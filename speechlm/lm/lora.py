"""LoRA adaptation of the LM through peft: a new voice from a few minutes of its speech, as a small adapter.

The pretrained SpeechLM stays frozen; peft adds trainable low-rank updates ``B @ A`` (rank ``r``, scaled
by ``alpha / r``) to the linear layers named in ``target_modules``. The names are module-path suffixes
in ``model.py``'s blocks: attention ``attn.q``, ``attn.kv``, ``attn.out``; feed-forward ``ffn.gate_up``,
``ffn.down``. ``B`` starts at zero, so training starts from exactly the base model.

An adapter is peft's folder: ``adapter_model.safetensors`` + ``adapter_config.json``; ``speechlm train
lm`` adds an ``lm.json`` naming the base it belongs to (``export.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from torch import nn

from speechlm.lm.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from speechlm.lm.model import SpeechLM

if TYPE_CHECKING:  # peft (and the transformers it loads) costs seconds: imported only by a LoRA run
    from peft import LoraConfig, PeftModel

ATTENTION = ("attn.q", "attn.kv", "attn.out")
FEED_FORWARD = ("ffn.gate_up", "ffn.down")


class LoraSettings(TypedDict, total=False):
    """``model.lora`` in YAML. A TypedDict, not a dataclass: it is stored in checkpoints as a plain dict,
    which ``torch.load(weights_only=True)`` accepts."""

    r: int  # rank of the update
    alpha: float  # the update is scaled by alpha / r
    dropout: float  # dropout on the adapter's input
    target_modules: list[str]  # module-name suffixes (ATTENTION, FEED_FORWARD)


DEFAULTS: LoraSettings = {"r": 8, "alpha": 16.0, "dropout": 0.0, "target_modules": [*ATTENTION, *FEED_FORWARD]}


def lora_config(settings: LoraSettings) -> LoraConfig:
    from peft import LoraConfig

    s = {**DEFAULTS, **settings}
    return LoraConfig(r=int(s["r"]), lora_alpha=float(s["alpha"]), lora_dropout=float(s["dropout"]),
                      target_modules=list(s["target_modules"]), bias="none")


def apply_lora(model: SpeechLM, settings: LoraSettings) -> PeftModel:
    """Freeze ``model`` and wrap it with fresh adapters; calling the wrapper calls ``SpeechLM.forward``."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(settings))


def save_adapter(model: PeftModel, out_dir: str | Path) -> Path:
    """peft's adapter files, each replaced atomically in ``out_dir`` (weights first, config last)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".adapter.") as tmp:
        model.save_pretrained(tmp)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            os.replace(Path(tmp) / name, out / name)
    return out


def load_adapter(model: SpeechLM, adapter_dir: str | Path, merge: bool = True) -> nn.Module:
    """``model`` with the adapter in ``adapter_dir``: merged into its weights, or as a frozen peft wrapper."""
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(adapter_dir))
    return wrapped.merge_and_unload() if merge else wrapped


def count_parameters(module: nn.Module, trainable: bool = False) -> int:
    """Parameters of ``module`` (tied weights once); only those that train with ``trainable``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)
