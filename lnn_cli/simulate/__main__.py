"""python -m lnn_cli.simulate: run seeds, replay one, shrink a failure, or explore the small cases exhaustively."""

from __future__ import annotations

import argparse
import sys

from lnn_cli.simulate.search.runner import run_seed, run_seeds


def _numbers(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part.strip()} if text else set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnn_cli.simulate", description=__doc__)
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--seeds", type=int, default=100, help="run seeds FIRST..FIRST+N-1 (default 100)")
    parser.add_argument("--first", type=int, default=0, help="the first seed of --seeds (default 0)")
    parser.add_argument(
        "--disable", default="", help="fault numbers to leave out (comma separated), as --shrink prints"
    )
    parser.add_argument("--trace", action="store_true", help="print the schedule's trace")
    parser.add_argument("--shrink", action="store_true", help="shrink the failing --seed to its smallest fault set")
    parser.add_argument(
        "--mode",
        choices=("direct", "boto"),
        default="direct",
        help="reach moto directly (default) or through boto3 and botocore (slower, for cross-checks)",
    )
    parser.add_argument("--exhaustive", action="store_true", help="enumerate the small cases' interleavings")
    parser.add_argument(
        "--max-states", type=int, default=None, help="bound of --exhaustive: states per case (default: none)"
    )
    parser.add_argument(
        "--case", help="with --exhaustive: the one case to explore, or (with --script) of the schedule to replay"
    )
    parser.add_argument(
        "--script",
        help="with --exhaustive: replay the schedule of these choices (as a violation "
        "prints them) instead of exploring",
    )
    parser.add_argument("--keep-going", action="store_true", help="with --seeds: do not stop at the first failure")
    parser.add_argument(
        "--allow",
        default="",
        help="invariants to note but not fail on (comma separated), to look "
        "past a known defect: commits, fence, claims, epochs, model, message, reference, liveness",
    )
    args = parser.parse_args(argv)
    if args.allow:
        from lnn_cli.simulate.search import runner

        runner.ALLOWED = frozenset(part.strip() for part in args.allow.split(",") if part.strip())

    if args.exhaustive:
        from lnn_cli.simulate.search.exhaustive import main as exhaustive_main
        from lnn_cli.simulate.search.exhaustive import replay

        if args.script is None:
            return exhaustive_main(args.max_states, cases=[args.case] if args.case else None)
        result = replay(args.case, [int(part) for part in args.script.split(",") if part.strip()], trace=args.trace)
        if args.trace:
            print("\n".join(result.trace))
        print(result.summary())
        return 1 if result.failed else 0
    if args.seed is not None:
        if args.shrink:
            from lnn_cli.simulate.search.shrink import shrink

            return 0 if shrink(args.seed, disabled=_numbers(args.disable), mode=args.mode) is None else 1
        result = run_seed(args.seed, disabled=_numbers(args.disable), trace=args.trace, mode=args.mode)
        if args.trace:
            print("\n".join(result.trace))
        print("faults:", "; ".join(f.describe() for f in result.all_faults) or "none")
        print(result.summary())
        return 1 if result.failed else 0

    def show(result):
        if result.failed:
            print(result.summary(), flush=True)
            print(f"shrink: .venv/bin/python -m lnn_cli.simulate --seed {result.seed} --shrink", flush=True)

    summary = run_seeds(
        range(args.first, args.first + args.seeds),
        mode=args.mode,
        stop_after=None if args.keep_going else 1,
        on_result=show,
    )
    print(summary.report())
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
