"""``speechlm mos create | serve | status | report``: parsers for the main command, and a standalone entry."""

from __future__ import annotations

import sys

from jsonargparse import ActionConfigFile, ArgumentParser

from speechlm.errors import SpeechLMError


def _leaf(description: str) -> ArgumentParser:
    p = ArgumentParser(description=description)
    p.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file(s); stack several")
    return p


def add_mos_subcommands(subcommands) -> None:
    """Add ``mos`` and its four subcommands to the ``subcommands`` object of a jsonargparse parser."""
    mos = ArgumentParser(description="MOS listening tests: create a blinded session, serve it, follow it, report.")
    subcommands.add_subcommand("mos", mos, help="MOS listening tests")  # jsonargparse wants levels added top-down
    sub = mos.add_subcommands(dest="mos_command")

    create = _leaf("Build a session from systems' audio folders (files matched by name) and print invite links.")
    create.add_argument("systems", nargs="+", help="NAME=DIR or DIR (named after the folder), one per system")
    create.add_argument("--out", type=str, required=True, help="new session folder")
    create.add_argument("--test", choices=("acr", "mos", "cmos", "ccr", "mushra", "ab", "preference"),
                        default="acr", help="acr (P.800 5-point), cmos/ccr (-3..+3 pairs), mushra, ab")
    create.add_argument("--reference", type=str | None, default=None,
                        help="system holding natural recordings / the baseline (needed by cmos, mushra, ab)")
    create.add_argument("--raters", type=int | None, default=None,
                        help="invites to create (default: one per Latin-square row)")
    create.add_argument("--utts_per_rater", type=int | None, default=None,
                        help="split the sentences into blocks of this many per rater")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--target_lufs", type=float, default=-26.0)
    create.add_argument("--sample_rate", type=int | None, default=None,
                        help="stimulus sample rate (default: the highest among the inputs)")
    create.add_argument("--min_listen_fraction", type=float, default=0.8,
                        help="the server refuses an answer given sooner than this share of the audio's length")
    create.add_argument("--held_out", type=str | None, default=None,
                        help="utterance id kept out of the test for gold, trap and training clips")
    create.add_argument("--base_url", type=str, default="http://127.0.0.1:8000", help="used to print links")
    sub.add_subcommand("create", create, help="build a blinded session from systems' audio folders")

    serve = _leaf("Serve a session to raters (plain HTML + JSON API; ratings go to the session's SQLite file).")
    serve.add_argument("session", type=str)
    serve.add_argument("--host", type=str, default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--invite", type=int, default=0, help="invite this many more raters and print their links")
    serve.add_argument("--base_url", type=str | None, default=None,
                       help="public URL raters use (default: http://HOST:PORT)")
    sub.add_subcommand("serve", serve, help="serve a session to raters")

    status = _leaf("Show each rater's progress.")
    status.add_argument("session", type=str)
    status.add_argument("--base_url", type=str, default="http://127.0.0.1:8000", help="used to print links")
    sub.add_subcommand("status", status, help="show each rater's progress")

    report = _leaf("Screen raters and write report.md, report.json, ratings.csv and scores.png.")
    report.add_argument("session", type=str)
    report.add_argument("--out", type=str | None, default=None, help="default: SESSION/report")
    report.add_argument("--min_completion", type=float, default=1.0,
                        help="share of items a rater must have rated to be counted (P.808: 1.0)")
    sub.add_subcommand("report", report, help="screen raters and write the report")


def _print_links(base_url: str, tokens: list[str], first: int) -> None:
    from speechlm.mos.session import rater_url

    for i, token in enumerate(tokens):
        print(f"rater {first + i}: {rater_url(base_url, token)}")


def run_mos_command(mos_cfg) -> int:
    """Run the parsed ``mos`` namespace (``cfg.mos`` of the main parser)."""
    cmd = mos_cfg.mos_command
    args = mos_cfg[cmd]
    if cmd == "create":
        from speechlm.mos.session import CreateOptions, create_session

        opts = CreateOptions(test_type=args.test, reference=args.reference, raters=args.raters,
                             utts_per_rater=args.utts_per_rater, seed=args.seed, target_lufs=args.target_lufs,
                             sample_rate=args.sample_rate, min_listen_fraction=args.min_listen_fraction,
                             held_out=args.held_out)
        session, tokens = create_session(args.systems, args.out, opts)
        plan = session.plan
        print(f"session {session.session_id}: {session.test_type.upper()}, {len(session.systems)} systems, "
              f"{len(session.utts) - 1} test sentences (+1 held out), {len(plan.lists)} rater list(s), "
              f"{len(plan.stimuli)} stimuli at {session.sample_rate} Hz, {session.target_lufs:g} LUFS")
        for note in session.notes:
            print(f"note: {note}")
        print(f"serve it with: speechlm mos serve {args.out}")
        _print_links(args.base_url, tokens, 0)
    elif cmd == "serve":
        from speechlm.mos.server import serve
        from speechlm.mos.session import add_raters, load_session

        session = load_session(args.session)
        base = args.base_url or f"http://{args.host}:{args.port}"
        if args.invite:
            first = len(session.store().raters())
            _print_links(base, add_raters(session, args.invite), first)
        print(f"serving {args.session} at {base} (Ctrl-C stops; ratings are saved as they arrive)", flush=True)
        serve(args.session, args.host, args.port)
    elif cmd == "status":
        from speechlm.mos.analysis import status
        from speechlm.mos.session import load_session, rater_url

        st = status(load_session(args.session))
        print(f"session {st['session_id']} ({st['test_type']}): {st['ratings']} ratings; "
              f"completed raters per list: {st['completed_per_list']}")
        for r in st["raters"]:
            print(f"rater {r['rater']:3d}  list {r['list']:2d}  {r['phase']:11s} {r['rated']:4d}/{r['total']:<4d} "
                  f"{rater_url(args.base_url, r['token'])}")
    elif cmd == "report":
        from pathlib import Path

        from speechlm.mos.analysis import to_markdown, write_report
        from speechlm.mos.session import load_session

        session = load_session(args.session)
        out = Path(args.out) if args.out else Path(args.session) / "report"
        report = write_report(session, out, args.min_completion)
        print(to_markdown(report))
        written = [n for n in ("report.md", "report.json", "ratings.csv", "scores.png") if (out / n).exists()]
        print(f"written to {out}/ ({', '.join(written)}); {len(report.included)} raters included")
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="speechlm", description="speechlm MOS listening tests")
    add_mos_subcommands(parser.add_subcommands(dest="command"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m speechlm.mos.cli mos ...``), handy before ``speechlm`` wires it in."""
    cfg = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run_mos_command(cfg.mos)
    except SpeechLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
