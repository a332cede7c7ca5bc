"""Stage stamps: a finished data stage records what it was run with, so re-running it does nothing.

A stamp ``<out>/.stages/<name>.json`` holds a fingerprint of the stage's parameters and inputs
(paths, sizes, modification times). A stage is done when its stamp matches and all of its outputs
exist; anything else (no stamp, changed inputs, a deleted output) makes it run again. Outputs are
written atomically before the stamp, so an interrupted stage never looks finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from speechlm import __version__
from speechlm.io import write_json


def fingerprint(params: dict[str, Any], inputs: list[Path] = ()) -> str:
    """Hash of the stage's parameters and the identity (path, size, mtime) of its input files."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for p in sorted(Path(i).resolve() for i in inputs):
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _stamp_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / ".stages" / f"{name}.json"


def load_stamp(out_dir: Path, name: str, fp: str, outputs: list[Path]) -> dict[str, Any] | None:
    """The stamp's summary when the stage already ran with ``fp`` and its outputs exist, else None."""
    path = _stamp_path(out_dir, name)
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if stamp.get("fingerprint") != fp or not all(Path(o).exists() for o in outputs):
        return None
    return stamp.get("summary", {})


def write_stamp(out_dir: Path, name: str, fp: str, summary: dict[str, Any]) -> None:
    write_json(_stamp_path(out_dir, name),
               {"stage": name, "fingerprint": fp, "speechlm_version": __version__, "summary": summary})
