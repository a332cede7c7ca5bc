"""LM training with Lightning: task-mixed batches by length, per-task loss, tokens/s, MFU on GPU.

A step whose loss is not finite, or spikes above ``spike_factor`` x its running average, is skipped
(no optimizer update) and counted in ``train/skipped``: one bad batch should not wreck the run.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from speechlm.codec.lightning import warmup_cosine
from speechlm.codec.tokens import read_token_info
from speechlm.data.sampler import BucketingConfig, DurationBucketSampler
from speechlm.errors import SpeechLMError
from speechlm.lm.data import TASKS, LMDataset, collate, load_utterances
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.text.tokenizer import TextTokenizer


class LMModule(L.LightningModule):
    def __init__(self, size: str = "small", text_vocab: int = 118, n_codebooks: int = 4, codebook_size: int = 1000,
                 max_seq_len: int = 2048, lr: float = 3e-4, weight_decay: float = 0.1, warmup_steps: int = 1000,
                 max_steps: int = 100_000, spike_factor: float = 4.0, peak_tflops: float | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.layout = TokenLayout(text_vocab, n_codebooks, codebook_size)
        self.model = SpeechLM(lm_config(size, self.layout.stream_vocab, max_seq_len=max_seq_len))
        self._avg_loss: float | None = None
        self._skipped = 0
        self._t0 = time.perf_counter()

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and getattr(dm, "layout", None) not in (None, self.layout):
            raise SpeechLMError(f"model layout {self.layout} does not match the data's {dm.layout}: set "
                                "model.text_vocab / n_codebooks / codebook_size from the tokenizer and codec")

    def training_step(self, batch, batch_idx: int):
        inputs, targets, mask, tasks = batch
        out = self.model(inputs, targets, mask)
        loss = out.loss
        value = float(loss.detach())
        if not math.isfinite(value) or (self._avg_loss is not None and value > self.hparams.spike_factor * self._avg_loss):
            self._skipped += 1
            self.log("train/skipped", float(self._skipped))
            return None  # Lightning skips backward and the optimizer step
        self._avg_loss = value if self._avg_loss is None else 0.98 * self._avg_loss + 0.02 * value
        now = time.perf_counter()
        dt, self._t0 = max(now - self._t0, 1e-9), now  # wall time since the previous step
        steps = float(inputs.shape[0] * inputs.shape[-1])  # sequence steps (each carries K tokens)
        self.log_dict({"train/loss": loss, "train/steps_per_s": steps / dt}, prog_bar=True)
        for t, name in enumerate(TASKS):
            rows = tasks == t
            if rows.any():
                self.log(f"train/loss_{name}", out.row_loss[rows].sum() / out.row_tokens[rows].sum().clamp(min=1))
        if self.hparams.peak_tflops and inputs.is_cuda:
            flops = 6 * self.model.num_params() * steps  # forward + backward, matmul-dominated
            self.log("train/mfu", flops / dt / (self.hparams.peak_tflops * 1e12))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, targets, mask, _ = batch
        self.log("val/loss", self.model(inputs, targets, mask).loss, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        decay = [p for p in self.model.parameters() if p.dim() >= 2]  # no decay on norms
        other = [p for p in self.model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": other, "weight_decay": 0.0}], lr=h.lr, betas=(0.9, 0.95))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class LMDataModule(L.LightningDataModule):
    """Phonemized manifests (``<data_dir>/text``) + token shards (``token_dir``) -> length-bucketed batches."""

    def __init__(self, data_dir: str, token_dir: str, max_tokens: int = 8192, task_mix: dict[str, float] | None = None,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.layout: TokenLayout | None = None

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        text = Path(h.data_dir) / "text"
        tok = TextTokenizer.load(text / "tokenizer.json")
        train = load_utterances(text / "cuts_train.jsonl.gz", h.token_dir, "train", tok)
        val = load_utterances(text / "cuts_dev.jsonl.gz", h.token_dir, "dev", tok)
        info = read_token_info(next(Path(h.token_dir).glob("train-*.safetensors")))
        self.layout = TokenLayout(tok.vocab_size, info.n_codebooks, info.codebook_size)
        self.train_set = LMDataset(train, self.layout, h.task_mix, seed=h.seed)
        self.val_set = LMDataset(val, self.layout, h.task_mix, seed=h.seed + 1)

    def _loader(self, ds: LMDataset, shuffle: bool) -> DataLoader:
        world = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0
        lengths = [ds.length(i) for i in range(len(ds))]
        cap = max(self.hparams.max_tokens, max(lengths))
        sampler = DurationBucketSampler(lengths, BucketingConfig(max_duration=cap, shuffle=shuffle,
                                                                 seed=self.hparams.seed), world, rank)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=partial(collate, layout=self.layout),
                          num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
