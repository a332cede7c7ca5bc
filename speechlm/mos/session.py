"""A listening-test session on disk: create one from systems' audio folders, load it, invite raters."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechlm.errors import SpeechLMError
from speechlm.io import write_json
from speechlm.mos import design
from speechlm.mos.design import Plan, Stimulus, Trial
from speechlm.mos.store import Store

FORMAT_VERSION = 1
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SESSION_FILE, DB_FILE, STIMULI_DIR = "session.json", "ratings.sqlite", "stimuli"
MAX_CHECK_ATTEMPTS = 3  # a rater failing the listening check this often is turned away
TRAP_TEXT = "Attention, please. Select the answer: {answer}."


@dataclass
class CheckClip:
    """A listening-check question (P.808 environment / headphone check) with its answer."""

    name: str
    kind: str  # "beeps" | "headphones"
    question: str
    options: list[int]
    answer: int
    duration: float = 0.0


@dataclass(frozen=True)
class CreateOptions:
    test_type: str = "acr"
    reference: str | None = None  # natural recordings / baseline system
    raters: int | None = None  # invites to create; default: one per Latin-square row
    utts_per_rater: int | None = None  # split the sentences into blocks of this size
    seed: int = 0
    target_lufs: float = -26.0  # ITU-T P.56 / P.808 speech level
    sample_rate: int | None = None  # default: the highest rate among the inputs
    min_listen_fraction: float = 0.8  # server rejects a rating sooner than this share of the audio
    held_out: str | None = None  # sentence used for gold / trap / training clips (default: random)


@dataclass
class Session:
    session_id: str
    test_type: str
    created: str
    seed: int
    sample_rate: int
    target_lufs: float
    min_listen_fraction: float
    systems: list[str]
    reference: str | None
    utts: list[str]
    held_out: str
    plan: Plan
    checks: list[CheckClip]
    notes: list[str] = field(default_factory=list)
    directory: Path = field(default=Path("."), compare=False)

    @property
    def scale(self) -> design.Scale:
        return design.SCALES[self.test_type]

    @property
    def db_path(self) -> Path:
        return self.directory / DB_FILE

    @property
    def stimuli_dir(self) -> Path:
        return self.directory / STIMULI_DIR

    def store(self) -> Store:
        return Store(self.db_path)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("directory", "plan")}
        d["checks"] = [dataclasses.asdict(c) for c in self.checks]
        d["plan"] = dataclasses.asdict(self.plan)
        return {"format_version": FORMAT_VERSION, **d}


def load_session(directory: str | Path) -> Session:
    directory = Path(directory)
    path = directory / SESSION_FILE
    if not path.exists():
        raise SpeechLMError(f"{directory} is not a listening-test session (no {SESSION_FILE})")
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.pop("format_version", None) != FORMAT_VERSION:
        raise SpeechLMError(f"{path}: made by an incompatible speechlm version")
    p = d.pop("plan")
    plan = Plan(p["test_type"], {k: Stimulus(**v) for k, v in p["stimuli"].items()},
                {k: Trial(**v) for k, v in p["trials"].items()}, p["lists"], p["screening"], p["training"])
    checks = [CheckClip(**c) for c in d.pop("checks")]
    return Session(plan=plan, checks=checks, directory=directory, **d)


def parse_systems(specs: list[str] | dict[str, str | Path]) -> dict[str, Path]:
    """``["name=dir", "dir2"]`` -> ``{name: dir, dir2's folder name: dir2}``; names must be distinct."""
    if isinstance(specs, dict):
        return {str(k): Path(v) for k, v in specs.items()}
    out: dict[str, Path] = {}
    for spec in specs:
        name, eq, folder = spec.partition("=")
        name, folder = (name, folder) if eq else (Path(spec).name, spec)
        if not re.fullmatch(r"[\w.+-]+", name):
            raise SpeechLMError(f"system name {name!r} (from {spec!r}): use letters, digits, '_', '-', '.', '+'")
        if name in out:
            raise SpeechLMError(f"system name {name!r} given twice; name them explicitly: NAME=DIR")
        out[name] = Path(folder)
    return out


def find_audio(systems: dict[str, Path]) -> tuple[list[str], dict[str, dict[str, Path]], list[str]]:
    """Match systems' files by stem. Returns (shared utt ids, {system: {utt: file}}, notes on unmatched ids)."""
    files: dict[str, dict[str, Path]] = {}
    for name, folder in systems.items():
        if not folder.is_dir():
            raise SpeechLMError(f"system {name!r}: {folder} is not a folder")
        found: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file():
                if f.stem in found:
                    raise SpeechLMError(f"system {name!r}: {found[f.stem].name} and {f.name} share the id {f.stem!r}")
                found[f.stem] = f
        if not found:
            raise SpeechLMError(f"system {name!r}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
        files[name] = found
    shared = sorted(set.intersection(*(set(v) for v in files.values())))
    notes = [f"utterance {u!r} skipped: missing from {sorted(s for s in files if u not in files[s])}"
             for u in sorted(set.union(*(set(v) for v in files.values())) - set(shared))]
    return shared, files, notes


def _render(stim: Stimulus, files: dict[str, dict[str, Path]], sr: int, trap_message: np.ndarray | None,
            cache: dict) -> np.ndarray:
    from speechlm.mos import stimuli

    key = (stim.source, stim.utt)
    if key not in cache:
        cache[key] = stimuli.load_audio(files[stim.source][stim.utt], sample_rate=sr)[0]
    wav = cache[key]
    if stim.process == "clean":
        return wav
    if stim.process.startswith("lowpass"):
        return stimuli.lowpass(wav, sr, float(stim.process[len("lowpass"):]))
    if stim.process == "degraded":
        return stimuli.degrade(wav, sr)
    if stim.process == "trap_tone":
        return stimuli.tone_trap(wav, sr)
    if stim.process == "trap":
        return stimuli.trap_clip(wav, trap_message, sr)
    raise ValueError(f"unknown stimulus process {stim.process!r}")


def _check_clips(out: Path, sr: int, rng: np.random.Generator) -> list[CheckClip]:
    from speechlm.mos import stimuli

    clips = []
    for count in range(3, 7):
        name = secrets.token_hex(8) + ".wav"
        dur = stimuli.write_stimulus(out / name, stimuli.beeps_clip(count, sr, seed=count), sr, seed=count)
        clips.append(CheckClip(name, "beeps", "How many beeps do you hear?", [2, 3, 4, 5, 6, 7], count, dur))
    for quiet in range(3):
        antiphase = int(rng.choice([i for i in range(3) if i != quiet]))
        name = secrets.token_hex(8) + ".wav"
        dur = stimuli.write_stimulus(out / name, stimuli.headphone_clip(quiet, antiphase, sr), sr, seed=quiet)
        clips.append(CheckClip(name, "headphones", "Which of the three tones is the quietest?", [1, 2, 3],
                               quiet + 1, dur))
    return clips


def create_session(systems: list[str] | dict[str, str | Path], out: str | Path,
                   options: CreateOptions = CreateOptions()) -> tuple[Session, list[str]]:
    """Build a session folder (stimuli/, session.json, ratings.sqlite) and invite raters; returns (session, tokens).

    The folder is assembled under a temporary name and renamed at the end, so an interrupted
    create leaves no half-made session behind.
    """
    from speechlm.mos import stimuli  # here, not at the top: serving and reporting never build audio

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpeechLMError(f"{out} already exists and is not empty; choose a new session folder")
    test_type = design.normalize_test_type(options.test_type)
    system_dirs = parse_systems(systems)
    utts, files, notes = find_audio(system_dirs)
    rng = np.random.default_rng(options.seed)
    if options.held_out is not None and options.held_out not in utts:
        raise SpeechLMError(f"held-out utterance {options.held_out!r} is not shared by all systems")
    if len(utts) < 2:
        raise SpeechLMError(f"need at least 2 utterances shared by all systems; found {len(utts)}")
    held_out = options.held_out or str(rng.choice(utts))
    sr = options.sample_rate or max(sf.info(str(f)).samplerate for fs in files.values() for f in fs.values())
    trap_answer = design.TRAP_ANSWER.get(test_type, ("", 0))[0]
    trap_message = stimuli.speak(TRAP_TEXT.format(answer=trap_answer), sr) if test_type != "mushra" else None
    if trap_message is None and test_type != "mushra":
        notes.append("espeak-ng not found: no spoken trapping question" +
                     ("; a tone-burst trap is used instead" if test_type == "acr" else ""))
    anchors = tuple(fc for fc in (3500, 7000) if fc < 0.95 * sr / 2)
    plan = design.build_plan(test_type, list(system_dirs), utts, held_out, reference=options.reference,
                             utts_per_list=options.utts_per_rater, rng=rng,
                             spoken_trap=trap_message is not None, anchors=anchors)

    tmp = out.parent / f".{out.name}.creating-{secrets.token_hex(4)}"
    (tmp / STIMULI_DIR).mkdir(parents=True)
    try:
        cache: dict = {}
        for i, stim in enumerate(plan.stimuli.values()):
            try:
                wav, limited = stimuli.match_loudness(_render(stim, files, sr, trap_message, cache), sr,
                                                      options.target_lufs)
            except ValueError as e:
                raise SpeechLMError(f"{files[stim.source][stim.utt]}: {e}") from None
            if limited:
                notes.append(f"{stim.source}/{stim.utt} ({stim.process}) peak-limited: plays below "
                             f"{options.target_lufs:g} LUFS")
            stim.duration = stimuli.write_stimulus(tmp / STIMULI_DIR / stim.name, wav, sr, seed=options.seed + i)
        session = Session(
            session_id=secrets.token_hex(8), test_type=test_type, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            seed=options.seed, sample_rate=sr, target_lufs=options.target_lufs,
            min_listen_fraction=options.min_listen_fraction, systems=list(system_dirs),
            reference=options.reference, utts=utts, held_out=held_out, plan=plan,
            checks=_check_clips(tmp / STIMULI_DIR, sr, rng), notes=notes, directory=tmp)
        write_json(tmp / SESSION_FILE, session.to_json())
        session.store().init(session.session_id)
        tokens = add_raters(session, options.raters if options.raters is not None else len(plan.lists))
        if out.exists():
            out.rmdir()  # checked empty above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    session.directory = out
    return session, tokens


def add_raters(session: Session, count: int) -> list[str]:
    """Invite ``count`` more raters; each gets the next Latin-square row and a secret URL token."""
    return session.store().add_raters(count, lambda idx: design.rater_order(session.plan, idx, session.seed))


def rater_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/r/{token}"
