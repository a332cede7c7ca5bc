"""Listening-test design: the trials of each test type, Latin-square assignment to raters, blinding, answer scales."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechlm.errors import SpeechLMError
from speechlm.mos import TEST_TYPES

ALIASES = {"ccr": "cmos", "mos": "acr", "preference": "ab"}


@dataclass(frozen=True)
class Scale:
    """The answer a rater gives: a category (ACR, CMOS), a forced choice (A/B) or 0-100 sliders (MUSHRA)."""

    kind: str  # "category" | "choice" | "slider"
    values: tuple
    labels: tuple[str, ...]
    question: str


SCALES: dict[str, Scale] = {
    # ITU-T P.800 Annex B listening-quality scale.
    "acr": Scale("category", (1, 2, 3, 4, 5), ("Bad", "Poor", "Fair", "Good", "Excellent"),
                 "How would you rate the quality of this speech sample?"),
    # ITU-T P.800 Annex E comparison category rating; the answer rates B relative to A.
    "cmos": Scale("category", (-3, -2, -1, 0, 1, 2, 3),
                  ("Much worse", "Worse", "Slightly worse", "About the same", "Slightly better", "Better",
                   "Much better"),
                  "Compared to sample A, the quality of sample B is:"),
    "ab": Scale("choice", ("A", "B"), ("Sample A", "Sample B"), "Which sample has the better quality?"),
    # ITU-R BS.1534-3 continuous quality scale; the labels mark its five 20-point bands.
    "mushra": Scale("slider", (0, 100), ("Bad", "Poor", "Fair", "Good", "Excellent"),
                    "Rate each sample against the reference (0-100)."),
}

# What the spoken trapping message asks for, per test type (P.808 trapping questions).
TRAP_ANSWER = {"acr": ("Excellent", 5), "cmos": ("Much better", 3), "ab": ("Sample A", 0)}


@dataclass
class Stimulus:
    """One audio file a rater hears. Only ``name`` ever leaves the server."""

    name: str  # blinded file name: random hex + ".wav"
    condition: str  # what analysis groups by: a system, "hidden_reference", "anchor_3.5k", "gold", ...
    source: str | None  # system whose recording it is made from
    utt: str | None
    process: str = "clean"  # clean | lowpass3500 | lowpass7000 | degraded | trap | trap_tone
    duration: float = 0.0


@dataclass
class Trial:
    """One rating a rater gives: the clip (ACR), the pair (CMOS, A/B) or the set of clips (MUSHRA)."""

    item_id: str
    kind: str  # test | gold | trap | training
    stimuli: list[str]  # canonical order: [clip] | [baseline, other] | MUSHRA conditions
    utt: str | None = None
    condition: str | None = None  # the system under test (ACR and pair tests)
    reference: str | None = None  # MUSHRA's open reference
    expected: list | None = None  # acceptable canonical answers of a gold or trap item
    shuffle: bool = True  # a trap keeps its order: its spoken instruction names an answer


@dataclass
class Plan:
    """Everything a session asks of its raters, before any audio exists."""

    test_type: str
    stimuli: dict[str, Stimulus] = field(default_factory=dict)
    trials: dict[str, Trial] = field(default_factory=dict)
    lists: list[list[str]] = field(default_factory=list)  # test item ids, one list per Latin-square row
    screening: list[str] = field(default_factory=list)  # gold and trap items every rater gets
    training: list[str] = field(default_factory=list)  # practice items every rater gets first

    def add_stimulus(self, condition: str, source: str | None, utt: str | None, process: str = "clean") -> str:
        # Random names, not a keyed hash of (system, utt): knowing the seed must not unblind a session.
        name = secrets.token_hex(8) + ".wav"
        self.stimuli[name] = Stimulus(name, condition, source, utt, process)
        return name

    def add_trial(self, kind: str, stimuli: list[str], **kw: Any) -> str:
        item_id = secrets.token_hex(6)
        self.trials[item_id] = Trial(item_id, kind, list(stimuli), **kw)
        return item_id


def normalize_test_type(name: str) -> str:
    t = ALIASES.get(name.lower(), name.lower())
    if t not in TEST_TYPES:
        raise SpeechLMError(f"unknown test type {name!r}; choose one of {', '.join(TEST_TYPES + tuple(ALIASES))}")
    return t


def latin_square(conditions: list[str], utts: list[str], utts_per_list: int | None,
                 rng: np.random.Generator) -> list[list[tuple[str, str]]]:
    """Rows of (condition, utt): each row holds every utt of its block once and every condition equally often.

    Utterances are split into blocks of about ``utts_per_list``; within a block, row ``r`` gives
    utterance ``p`` condition ``(p + r) mod C``, so the C rows of a block cover every (condition, utt)
    pair exactly once and a rater (one row) never hears a sentence twice.
    """
    c = len(conditions)
    if c == 0:
        raise SpeechLMError("no systems to test")
    if len(utts) < c:
        raise SpeechLMError(f"need at least {c} test utterances so each rater hears each of the {c} "
                            f"conditions once without repeating a sentence; got {len(utts)}")
    utts, conds = list(utts), list(conditions)
    rng.shuffle(utts)
    rng.shuffle(conds)
    per = len(utts) if not utts_per_list else max(int(utts_per_list), c)
    blocks = np.array_split(np.array(utts, dtype=object), max(1, len(utts) // per))
    return [[(conds[(p + r) % c], str(u)) for p, u in enumerate(block)] for block in blocks for r in range(c)]


def build_plan(test_type: str, systems: list[str], utts: list[str], held_out: str, *, reference: str | None,
               utts_per_list: int | None, rng: np.random.Generator, spoken_trap: bool,
               anchors: tuple[int, ...] = (3500, 7000)) -> Plan:
    """The trials of a session. ``held_out`` is a sentence kept out of the test for gold, trap and training clips."""
    test_type = normalize_test_type(test_type)
    if reference is not None and reference not in systems:
        raise SpeechLMError(f"reference system {reference!r} is not among the systems {systems}")
    if test_type != "acr" and reference is None:
        raise SpeechLMError(f"a {test_type.upper()} test needs --reference: the system every other one is "
                            "compared with (natural recordings, or the baseline)")
    others = [s for s in systems if s != reference] if test_type != "acr" else list(systems)
    if not others:
        raise SpeechLMError("need at least one system besides the reference")
    plan = Plan(test_type)
    test_utts = [u for u in utts if u != held_out]
    src = reference or systems[0]

    def held(process: str) -> str:  # a clip of the held-out sentence, from the reference when there is one
        return plan.add_stimulus("held_out", src, held_out, process)

    if test_type == "acr":
        for row in latin_square(others, test_utts, utts_per_list, rng):
            plan.lists.append([plan.add_trial("test", [plan.add_stimulus(s, s, u)], utt=u, condition=s)
                               for s, u in row])
        plan.screening.append(plan.add_trial("gold", [held("degraded")], utt=held_out, expected=[1, 2]))
        if reference is not None:  # only natural (reference) speech has a known high score
            plan.screening.append(plan.add_trial("gold", [held("clean")], utt=held_out, expected=[4, 5]))
        if spoken_trap:
            plan.screening.append(plan.add_trial("trap", [held("trap")], utt=held_out,
                                                 expected=[TRAP_ANSWER["acr"][1]]))
        else:  # no speech engine: an obviously broken clip (tone burst + heavy degradation) must score low
            plan.screening.append(plan.add_trial("trap", [held("trap_tone")], utt=held_out, expected=[1, 2]))
        plan.training = [plan.add_trial("training", [held(p)], utt=held_out)
                         for p in ("clean", "lowpass7000", "lowpass3500", "degraded")]
    elif test_type in ("cmos", "ab"):
        baseline: dict[str, str] = {}
        for row in latin_square(others, test_utts, utts_per_list, rng):
            ids = []
            for s, u in row:
                if u not in baseline:  # one baseline clip per sentence, shared by the rows that use it
                    baseline[u] = plan.add_stimulus(reference, reference, u)
                ids.append(plan.add_trial("test", [baseline[u], plan.add_stimulus(s, s, u)], utt=u, condition=s))
            plan.lists.append(ids)
        worse = [-3, -2, -1] if test_type == "cmos" else [0]  # canonical: B vs A, or index of the chosen clip
        plan.screening.append(plan.add_trial("gold", [held("clean"), held("degraded")], utt=held_out, expected=worse))
        if spoken_trap:
            # The instruction sits in a clip a careless rater would not pick (A/B) or would call worse (CMOS).
            pair = [held("clean"), held("trap")] if test_type == "cmos" else [held("degraded"), held("trap")]
            plan.screening.append(plan.add_trial("trap", pair, utt=held_out, shuffle=False,
                                                 expected=[TRAP_ANSWER[test_type][1]]))
        plan.training = [plan.add_trial("training", [held("clean"), held(p)], utt=held_out)
                         for p in ("lowpass3500", "degraded")]
    else:  # mushra: every rater hears every condition of each sentence; balance comes from the blocks
        def mushra_trial(kind: str, u: str) -> str:
            clips = [plan.add_stimulus(s, s, u) for s in others]
            clips.append(plan.add_stimulus("hidden_reference", reference, u))
            clips += [plan.add_stimulus(f"anchor_{fc / 1000:g}k", reference, u, f"lowpass{fc}") for fc in anchors]
            return plan.add_trial(kind, clips, utt=u, reference=plan.add_stimulus("reference", reference, u))

        test_utts = list(test_utts)
        rng.shuffle(test_utts)
        per = len(test_utts) if not utts_per_list else max(1, int(utts_per_list))
        blocks = np.array_split(np.array(test_utts, dtype=object), max(1, len(test_utts) // per))
        plan.lists = [[mushra_trial("test", str(u)) for u in block] for block in blocks]
        plan.training = [mushra_trial("training", held_out)]
    return plan


def rater_order(plan: Plan, rater_idx: int, seed: int) -> tuple[int, list[dict]]:
    """A rater's Latin-square row and the order they meet its items: training first, the rest shuffled.

    Each entry is ``{"item": id, "shown": [stimulus names in display order]}``; pair and MUSHRA
    clips are shuffled per rater so no position is tied to a system.
    """
    rng = np.random.default_rng([seed, rater_idx])
    list_idx = rater_idx % len(plan.lists)
    rest = list(plan.lists[list_idx]) + list(plan.screening)
    rng.shuffle(rest)
    order = []
    for item in list(plan.training) + rest:
        trial = plan.trials[item]
        shown = list(trial.stimuli)
        if trial.shuffle:
            rng.shuffle(shown)
        order.append({"item": item, "shown": shown})
    return list_idx, order


def canonical_value(test_type: str, trial: Trial, shown: list[str], value: Any) -> Any:
    """Check a submitted answer and express it in the trial's canonical order; ValueError says what is wrong.

    ACR: the score. CMOS: the score of ``trial.stimuli[1]`` relative to ``[0]``. A/B: the index in
    ``trial.stimuli`` of the chosen clip. MUSHRA: ``{stimulus name: score}``.
    """
    scale = SCALES[test_type]
    if test_type in ("acr", "cmos"):
        if isinstance(value, bool) or not isinstance(value, int) or value not in scale.values:
            raise ValueError(f"rating must be an integer from {scale.values[0]} to {scale.values[-1]}; "
                             f"got {value!r}")
        return value if shown == trial.stimuli else -value
    if test_type == "ab":
        if value not in ("A", "B"):
            raise ValueError(f"rating must be \"A\" or \"B\"; got {value!r}")
        return trial.stimuli.index(shown[0 if value == "A" else 1])
    if not isinstance(value, dict) or set(value) != set(shown):
        raise ValueError("rating must be an object giving a score for every sample of the item")
    for score in value.values():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 100:
            raise ValueError(f"every score must be a number from 0 to 100; got {score!r}")
    return {k: float(v) for k, v in value.items()}
