"""LM training with Lightning: task-mixed batches by length, per-task loss, tokens/s, MFU on GPU.

Bad steps: a step whose loss is not finite, or spikes above ``spike_factor`` x its running average, is
skipped (its update dropped, counted in ``train/skipped``): one bad batch should not wreck the run. The
loss is averaged over ranks first, so every DDP rank skips the same steps. ``reload_after`` skips in a
row mean the weights themselves went bad (PaLM saw spikes that only a rollback cured). Skipped steps do
not change the weights, so the latest checkpoint may hold the same bad ones: the module rolls weights and
optimizer state back to the newest checkpoint saved *before* the bad stretch began (keep a few:
``save_top_k`` with ``monitor: step``), then goes on with the data after the stretch, keeping the step
counter and LR schedule where they are (``train/reloads`` counts rollbacks). With no such checkpoint
the run stops with an error rather than train through.

Resume: besides Lightning's checkpoint (weights, optimizer, scheduler, loop counters) the module saves its
skip state and the RNG states, and the data module the exact batch training reached, so a run killed at
any step and resumed ends with the same weights as one that never stopped (``tests/test_lm_faults.py``).

Stages: pretraining from scratch; SFT and LoRA start from an exported LM (``model.init_from``, see
``export.py``); ``model.lora`` trains peft adapters on the frozen base (``lora.py``). When training ends
the LM (or the adapter) is exported to ``model.export_dir``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from speechlm.codec.base import CodecInfo
from speechlm.codec.lightning import warmup_cosine
from speechlm.codec.tokens import read_token_info
from speechlm.data.sampler import BucketingConfig, DurationBucketSampler
from speechlm.errors import SpeechLMError
from speechlm.io import write_json
from speechlm.lm.align import (
    GuidedAttention,
    alignment_spans,
    attn_probs_request,
    guided_attention_loss,
)
from speechlm.lm.checkpoint import checkpoint_before, rng_state, set_rng_state
from speechlm.lm.data import TASKS, LMDataset, collate, load_chat, load_utterances
from speechlm.lm.export import CONFIG, export_lm, lm_meta, load_lm
from speechlm.lm.layout import TokenLayout
from speechlm.lm.lora import LoraSettings, apply_lora, save_adapter
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.text.tokenizer import TextTokenizer


class LMModule(L.LightningModule):
    def __init__(self, size: str = "small", text_vocab: int = 118, n_codebooks: int = 4, codebook_size: int = 1000,
                 max_seq_len: int = 2048, dropout: float = 0.0, lr: float = 3e-4, weight_decay: float = 0.1,
                 warmup_steps: int = 1000, max_steps: int = 100_000, spike_factor: float = 4.0,
                 reload_after: int = 8, peak_tflops: float | None = None, init_from: str | None = None,
                 lora: LoraSettings | None = None, guided_attention: GuidedAttention | None = None,
                 export_dir: str | None = None):
        """``init_from``: an exported LM folder to start from (SFT, LoRA); ``lora``: train adapters on that
        frozen model instead of all weights; ``guided_attention``: a diagonal-prior loss on some heads that
        teaches text-audio alignment (``align.py``); ``reload_after``: skipped steps in a row before rolling
        back to a checkpoint (0: never); ``export_dir``: where the LM goes when training ends (default
        ``<trainer.default_root_dir>/export``)."""
        super().__init__()
        self.save_hyperparameters()
        self.layout = TokenLayout(text_vocab, n_codebooks, codebook_size)
        model = SpeechLM(lm_config(size, self.layout.stream_vocab, max_seq_len=max_seq_len, dropout=dropout))
        self._base: dict | None = self._load_base(model, init_from) if init_from else None
        if lora is not None and not init_from:
            raise SpeechLMError("model.lora adapts a pretrained LM: set model.init_from to its export folder")
        self.model = apply_lora(model, lora) if lora is not None else model
        self._guided = attn_probs_request(guided_attention or {})
        bad = [layer for layer in self._guided if not 0 <= layer < model.cfg.n_layers]
        if bad or any(not 1 <= h <= model.cfg.n_heads for h in self._guided.values()):
            raise SpeechLMError(f"model.guided_attention {guided_attention}: a {size} LM has layers 0.."
                                f"{model.cfg.n_layers - 1} with {model.cfg.n_heads} heads each (guide 1..{model.cfg.n_heads} of them)")
        self._avg_loss: float | None = None  # running average of accepted losses (the spike reference)
        self._skipped = 0  # skipped steps in the whole run
        self._bad_run = 0  # skipped steps in a row
        self._bad_since = 0  # optimizer step at which the current bad run began
        self._reloads = 0
        self._drop_update = False  # this optimizer step must not update anything
        self._rng_to_restore: dict | None = None
        self._t0 = time.perf_counter()

    def _load_base(self, model: SpeechLM, path: str) -> dict:
        base = load_lm(path)
        if (base.meta["size"], base.layout) != (self.hparams.size, self.layout):
            raise SpeechLMError(
                f"model.init_from {path} holds a {base.meta['size']} LM with {base.layout}, this run builds a "
                f"{self.hparams.size} one with {self.layout}: set model.size / text_vocab / n_codebooks / "
                "codebook_size to match")
        model.load_state_dict(base.model.state_dict())
        # what the export records as its origin: the base's weights and its own total step count
        return {"path": str(path), "weights_sha256": base.meta["weights_sha256"],
                "step": base.meta.get("total_steps", base.meta.get("step"))}

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and getattr(dm, "layout", None) not in (None, self.layout):
            raise SpeechLMError(f"model layout {self.layout} does not match the data's {dm.layout}: set "
                                "model.text_vocab / n_codebooks / codebook_size from the tokenizer and codec")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Restored at the first batch, not in on_load_checkpoint, so that nothing running in between
        # (sanity check, loader set-up) can shift the numbers the next training step draws.
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def _forward(self, inputs, targets, mask):
        """``(LMOutput, loss, guided-attention loss or None)``: the loss trained on is CE + weight x guided."""
        out = self.model(inputs, targets, mask, attn_probs=self._guided or None)
        if not self._guided:
            return out, out.loss, None
        g = self.hparams.guided_attention
        guided = guided_attention_loss(out.attn, alignment_spans(inputs, self.layout), g.get("width", 0.2))
        if guided is None:
            return out, out.loss, None
        return out, out.loss + g.get("weight", 1.0) * guided, guided

    def training_step(self, batch, batch_idx: int):
        inputs, targets, mask, tasks = batch
        out, loss, guided = self._forward(inputs, targets, mask)
        value = float(self.trainer.strategy.reduce(loss.detach(), reduce_op="mean"))  # one decision for all ranks
        spike = self._avg_loss is not None and value > self.hparams.spike_factor * self._avg_loss
        if not math.isfinite(value) or spike:
            self._skipped += 1
            self._bad_run += 1
            if self._bad_run == 1:
                self._bad_since = self.global_step  # the weights now are those of this step
            self._drop_update = True  # see on_before_optimizer_step
            self.log("train/skipped", float(self._skipped))
            return loss
        self._bad_run = 0
        self._avg_loss = value if self._avg_loss is None else 0.98 * self._avg_loss + 0.02 * value
        now = time.perf_counter()
        dt, self._t0 = max(now - self._t0, 1e-9), now  # wall time since the previous step
        steps = float(inputs.shape[0] * inputs.shape[-1])  # sequence steps (each carries K tokens)
        self.log_dict({"train/loss": out.loss, "train/steps_per_s": steps / dt}, prog_bar=True)
        if guided is not None:
            self.log("train/guided_attn", guided, prog_bar=True)
        for t, name in enumerate(TASKS):
            rows = tasks == t
            if rows.any():
                self.log(f"train/loss_{name}", out.row_loss[rows].sum() / out.row_tokens[rows].sum().clamp(min=1))
        if self.hparams.peak_tflops and inputs.is_cuda:
            flops = 6 * self.model.num_params() * steps  # forward + backward, matmul-dominated
            self.log("train/mfu", flops / dt / (self.hparams.peak_tflops * 1e12))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # A bad step still runs backward: Lightning forbids skipping it under DDP, and every rank takes
        # the same decision anyway. Dropping the gradients makes AdamW leave weights, moments and its step
        # count alone (it skips parameters without a gradient). With gradient accumulation one bad batch
        # drops its whole accumulation window. Rolling back waits until here, after backward.
        if not self._drop_update:
            return
        optimizer.zero_grad(set_to_none=True)
        self._drop_update = False
        if self.hparams.reload_after and self._bad_run >= self.hparams.reload_after:
            self._roll_back()

    def _roll_back(self) -> None:
        """Weights and optimizer state from before the bad run; step, schedule and data move on."""
        found = checkpoint_before(self.trainer, self._bad_since)
        if found is None:
            raise SpeechLMError(
                f"{self._bad_run} bad steps in a row since step {self._bad_since} and no checkpoint from before "
                "it to go back to; keep more checkpoints (ModelCheckpoint save_top_k with monitor: step), or "
                "lower model.lr / raise model.warmup_steps if the run diverged from the start")
        path, ckpt = found
        self.load_state_dict(ckpt["state_dict"])
        scheduler = self.lr_schedulers()
        for opt, state in zip(self.trainer.optimizers, ckpt["optimizer_states"]):
            opt.load_state_dict(state)
            for group, lr in zip(opt.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr  # the schedule's current LR, not the one saved with the old state
        self._avg_loss = ckpt.get("speechlm", {}).get("avg_loss")
        self._bad_run = 0
        self._reloads += 1
        self.log("train/reloads", float(self._reloads))
        print(f"[lm] step {self.global_step}: {self.hparams.reload_after} bad steps in a row; "
              f"reloaded weights and optimizer from {path}", file=sys.stderr)

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, targets, mask, _ = batch
        out, _, guided = self._forward(inputs, targets, mask)
        self.log("val/loss", out.loss, prog_bar=True, sync_dist=True)
        if guided is not None:
            self.log("val/guided_attn", guided, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]  # LoRA: the adapters only
        decay = [p for p in params if p.dim() >= 2]  # no decay on norms
        other = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": other, "weight_decay": 0.0}], lr=h.lr, betas=(0.9, 0.95))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["speechlm"] = {"avg_loss": self._avg_loss, "skipped": self._skipped, "bad_run": self._bad_run,
                                  "bad_since": self._bad_since, "reloads": self._reloads, "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("speechlm")
        if state is None:
            return
        self._avg_loss, self._skipped = state["avg_loss"], state["skipped"]
        self._bad_run, self._bad_since, self._reloads = state["bad_run"], state["bad_since"], state["reloads"]
        self._rng_to_restore = state["rng"]

    def on_fit_end(self) -> None:
        # on_fit_end, not on_train_end: a resume whose checkpoint already reached max_steps (a schedule cut
        # short, ``--trainer.max_steps N`` at a saved step N) skips the training loop and its end hook, and
        # should still export those weights.
        if self.trainer.is_global_zero:
            self.export(self.hparams.export_dir or Path(self.trainer.default_root_dir) / "export")

    def export(self, out_dir: str | Path) -> Path:
        """The LM (``export.py``'s layout), or with ``lora`` the adapter + its ``lm.json``, into ``out_dir``."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        codec, tokenizer = getattr(dm, "codec_info", None), getattr(dm, "tokenizer_path", None)
        if self.hparams.lora is None:
            meta = lm_meta(self.hparams.size, self.model, self.layout, codec, self.global_step)
            if self._guided:  # which heads read the text in step: generation follows them (generate.py)
                meta["guided_attention"] = dict(self.hparams.guided_attention)
            if self._base is not None:  # continued from another export: say so, and count its steps too
                meta["init_from"] = self._base
                meta["total_steps"] = (self._base["step"] or 0) + int(self.global_step)
            return export_lm(out_dir, self.model, meta, tokenizer)
        out = save_adapter(self.model, out_dir)
        meta = lm_meta(self.hparams.size, self.model.get_base_model(), self.layout, codec, self.global_step)
        write_json(out / CONFIG, {**meta, "lora": dict(self.hparams.lora), "base_sha256": self._base["weights_sha256"]})
        return out


@dataclass
class BatchOrigin:
    """Where a training batch came from: sampler epoch, its number in that epoch, dataset indices."""

    epoch: int
    number: int
    items: list[int]


class _KeyedBatches(Sampler[list[tuple[int, int, int]]]):
    """The bucket sampler's batches as ``(epoch, batch number, index)`` keys.

    The epoch travels with each index so the dataset draws tasks for the right epoch even in worker
    processes, and the batch number comes back with the batch so the data module knows what training
    took, not how far the loader prefetched. No ``__len__`` on purpose: dynamic batching makes the count
    vary by epoch, and Lightning would cut every epoch at the first one's count.
    """

    def __init__(self, batches: DurationBucketSampler):
        self.batches = batches

    def __iter__(self):
        epoch, start = self.batches.epoch, self.batches.state_dict()["consumed"]
        for number, batch in enumerate(self.batches, start):
            yield [(epoch, number, i) for i in batch]


class _EpochItems(Dataset):
    """``(epoch, batch number, index)`` -> (the LMDataset item as drawn in that epoch, the key)."""

    def __init__(self, dataset: LMDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, _, i = key
        self.dataset.set_epoch(epoch)
        return self.dataset[i], key


def _collate_keyed(items, layout: TokenLayout):
    (epoch, number, _), indices = items[0][1], [key[2] for _, key in items]
    return (*collate([item for item, _ in items], layout), BatchOrigin(epoch, number, indices))


class LMDataModule(L.LightningDataModule):
    """Phonemized manifests (``<data_dir>/text``) + token shards (``token_dir``) -> length-bucketed batches.

    ``speakers`` keeps only those speakers' utterances (LoRA voice adaptation). ``chat`` adds the text
    turns of ``<data_dir>/text/chat_train.jsonl`` (``speechlm data chat``) for the ``chat`` task.
    ``text_dropout``: the share of training ``tts`` items without their target text, which classifier-free
    guidance needs (``LMDataset``; validation keeps every text). ``state_dict`` is the
    position after the last batch training took (``last_batch``); Lightning stores it in checkpoints.
    """

    def __init__(self, data_dir: str, token_dir: str, max_tokens: int = 8192, task_mix: dict[str, float] | None = None,
                 speakers: list[str] | None = None, chat: bool = False, num_workers: int = 0, seed: int = 0,
                 text_dropout: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.layout: TokenLayout | None = None
        self.codec_info: CodecInfo | None = None
        self.tokenizer_path: Path | None = None
        self.last_batch: BatchOrigin | None = None
        self._resume: dict[str, int] | None = None
        self._train_sampler: DurationBucketSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        text = Path(h.data_dir) / "text"
        self.tokenizer_path = text / "tokenizer.json"
        tok = TextTokenizer.load(self.tokenizer_path)
        train = self._keep(load_utterances(text / "cuts_train.jsonl.gz", h.token_dir, "train", tok), "train")
        val = self._keep(load_utterances(text / "cuts_dev.jsonl.gz", h.token_dir, "dev", tok), None)
        self.codec_info = read_token_info(next(Path(h.token_dir).glob("train-*.safetensors")))
        self.layout = TokenLayout(tok.vocab_size, self.codec_info.n_codebooks, self.codec_info.codebook_size)
        chat = []
        if h.chat:  # text turns for the chat task (speechlm data chat)
            path = text / "chat_train.jsonl"
            if not path.exists():
                raise SpeechLMError(f"{path}: not found; run `speechlm data chat --dir {h.data_dir}` or set data.chat false")
            chat = load_chat(path, tok, tok.language)
        self.train_set = LMDataset(train, self.layout, h.task_mix, seed=h.seed, chat=chat,
                                   text_dropout=h.text_dropout)
        self.val_set = LMDataset(val, self.layout, h.task_mix, seed=h.seed + 1) if val else None

    def _keep(self, utts: list, split: str | None) -> list:
        wanted = self.hparams.speakers
        if not wanted:
            return utts
        kept = [u for u in utts if u.speaker in wanted]
        if not kept and split:
            found = sorted({u.speaker for u in utts})
            raise SpeechLMError(f"no {split} utterance of speaker(s) {wanted}; the {split} split has {found}")
        return kept

    def _sampler(self, ds: LMDataset, shuffle: bool) -> DurationBucketSampler:
        world = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0
        lengths = [ds.length(i) for i in range(len(ds))]
        cap = max(self.hparams.max_tokens, max(lengths))
        return DurationBucketSampler(lengths, BucketingConfig(max_duration=cap, shuffle=shuffle,
                                                              seed=self.hparams.seed), world, rank)

    def _generator(self) -> torch.Generator:
        # Without one, each DataLoader iterator draws its worker seed from the global RNG, and validation
        # would shift the random numbers training sees next (dropout) depending on where a run resumed.
        return torch.Generator().manual_seed(self.hparams.seed)

    def train_dataloader(self) -> DataLoader:
        if self._train_sampler is None:  # one sampler for the whole run: it counts its own epochs
            self._train_sampler = self._sampler(self.train_set, shuffle=True)
            if self._resume:
                self._train_sampler.load_state_dict(self._resume)
        return DataLoader(_EpochItems(self.train_set), batch_sampler=_KeyedBatches(self._train_sampler),
                          collate_fn=partial(_collate_keyed, layout=self.layout),
                          num_workers=self.hparams.num_workers, generator=self._generator())

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            print(f"[lm data] no dev utterance of speaker(s) {self.hparams.speakers}: no validation", file=sys.stderr)
            return []
        return DataLoader(self.val_set, batch_sampler=self._sampler(self.val_set, shuffle=False),
                          collate_fn=partial(collate, layout=self.layout), num_workers=self.hparams.num_workers,
                          generator=self._generator())

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:
            *batch, self.last_batch = batch
        return tuple(batch)

    def state_dict(self) -> dict[str, int]:
        if self.last_batch is None:  # nothing trained yet in this process
            return dict(self._resume or {})
        return {"epoch": self.last_batch.epoch, "consumed": self.last_batch.number + 1}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state) or None
