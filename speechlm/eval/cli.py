"""Options and entry of ``speechlm eval``; the main CLI mounts these on its ``eval`` subcommand."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from speechlm.errors import SpeechLMError


def add_eval_arguments(parser: ArgumentParser) -> ArgumentParser:
    """Add the ``speechlm eval`` options to ``parser`` (a jsonargparse parser, possibly with ``-c``)."""
    from speechlm.eval.asr import ASR_BACKENDS
    from speechlm.eval.report import METRIC_GROUPS

    # action="append" without a type: repeated flags and a YAML list both arrive as a list of str.
    parser.add_argument("--manifest", action="append", default=None,
                        help="JSONL/CSV/TSV of synthesized clips (fields: id, audio, text, reference_audio, "
                             "system); repeat for several systems")
    parser.add_argument("--out", type=str, required=True, help="folder for report.json, report.md, plots/")
    parser.add_argument("--metrics", type=str | None, default=None,
                        help=f"comma-separated subset of {','.join(METRIC_GROUPS)}; default: all that the "
                             "manifest fields allow")
    parser.add_argument("--system", action="append", default=None,
                        help="system name for each --manifest, in order (default: the manifest file name)")
    parser.add_argument("--asr", choices=ASR_BACKENDS, default="pocketsphinx", help="ASR backend for WER/CER")
    parser.add_argument("--whisper_model", type=str | None, default=None,
                        help="local Whisper model (.pt file, faster-whisper or transformers folder) for --asr whisper")
    parser.add_argument("--language", type=str, default="en", help="language of the texts, for normalization and ASR")
    parser.add_argument("--skip_bad", type=bool, default=False,
                        help="skip bad manifest rows and unreadable audio, listing them in the report")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--plots", type=bool, default=True, help="write distribution plots")
    parser.add_argument("--compare", action="append", default=None,
                        help="instead of --manifest: report.json files of earlier runs to put side by side")
    return parser


def _as_list(value: str | list[str] | None) -> list[str]:
    # A YAML config may give one path as a plain string instead of a one-item list.
    return [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]


def run_eval_command(args) -> int:
    """Run ``speechlm eval`` from parsed options; print the comparison table and where the report went."""
    from speechlm.eval.report import compare_reports
    from speechlm.eval.runner import run_eval

    manifests, systems, compare = _as_list(args.manifest), _as_list(args.system), _as_list(args.compare)
    try:
        if bool(manifests) == bool(compare):
            raise SpeechLMError("give either --manifest (one per system) or --compare (earlier report.json files)")
        if not 0 < args.confidence < 1:
            raise SpeechLMError(f"--confidence must be between 0 and 1, got {args.confidence}")
        if compare:
            report = compare_reports(compare)
            paths = report.write(args.out, plots=args.plots)
        else:
            report = run_eval(manifests, args.out, args.metrics, systems, asr=args.asr,
                              whisper_model=args.whisper_model, language=args.language, skip_bad=args.skip_bad,
                              confidence=args.confidence, plots=args.plots)
            paths = {"json": Path(args.out) / "report.json", "markdown": Path(args.out) / "report.md"}
    except SpeechLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.comparison_table())
    if report.rejected:
        print(f"skipped {len(report.rejected)} bad row(s); listed in {paths['markdown']}")
    print(f"report: {paths['markdown']} (per utterance: {paths['json']})")
    return 0
