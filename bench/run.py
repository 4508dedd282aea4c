"""``make bench``: run the benchmark scenarios, write bench/results.json and docs/benchmarks.md.

    python bench/run.py [--repeat 3] [--only heal,scale] [--providers local,docker] [--quick]
                        [--json bench/results.json] [--report docs/benchmarks.md]
    python bench/run.py --only heal,loss --merge   # measure two, keep the others' figures (and dates)
    python bench/run.py --render    # the report again from bench/results.json, nothing measured

Each scenario measures its figures ``--repeat`` times and reports the median (and the range);
figures that compare things (timer vs watcher, generated config vs the original design's
vs direct) are measured in the same run, one after the other, on the same machine.
A scenario that fails is reported with its error and makes the command exit non-zero; the
others still run and the report is still written.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib import ROOT, Context, machine

# In the order they run and appear in the report (fast and self-contained first).
SCENARIOS = ["parse", "rps", "drain", "servers", "docker_paths", "churn", "heal", "warm", "bake", "loss",
             "balancer", "scale", "step"]


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); the raw figures are in `bench/results.json`.",
        "Do not edit by hand: run `make bench` again. Every figure is the median of the",
        f"repetitions of one run (`--repeat {results['repeat']}`; the range follows in brackets)",
        "and the figures of a table were measured side by side in that same run.",
        "",
        f"- **Date:** {results['date']} (the run took {results['seconds'] / 60:.1f} min)",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"kernel {m['kernel']}",
        f"- **Software:** {m['haproxy']}; {m['nginx']}; Docker {m['docker']}; {m['ansible']}; "
        f"Python {m['python']}; {m['wrk']}",
        f"- **Command:** `{results['command']}`",
        "",
        "The load generator (wrk or the test helpers' Python clients), HAProxy, the web hosts and",
        "Ansible share the same cores, so absolute figures are those of a small machine; the",
        "ratios are what carries over.",
        "",
    ]
    for name in results["order"]:
        entry = results["scenarios"][name]
        lines += [f"## {entry['title']}", ""]
        if "error" in entry:
            lines += ["**Failed:**", "", "```", entry["error"].strip()[-3000:], "```", ""]
            continue
        module = importlib.import_module(f"bench.scenarios.{name}")
        when = entry.get("date", results["date"])
        measured = "" if when == results["date"] else f", measured {when} (an earlier `--merge`d run)"
        lines += [module.markdown(entry["result"]).rstrip(), "",
                  f"<sub>{entry['seconds']:.0f} s{measured}</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


def keep_earlier(results: dict[str, Any], old: dict[str, Any], only: list[str]) -> None:
    """``--merge``: the scenarios of an earlier run that this one does not measure, with their date."""
    for name, entry in old["scenarios"].items():
        if name not in only and name in SCENARIOS:
            results["scenarios"][name] = {"date": old["date"], **entry}
    results["order"] = [s for s in SCENARIOS if s in only or s in results["scenarios"]]


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each figure (default 3)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios among {','.join(SCENARIOS)}")
    parser.add_argument("--providers", default="local,docker",
                        help="providers for heal (default local,docker)")
    parser.add_argument("--quick", action="store_true", help="shorter loads and fewer sizes (a trial run)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--report", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other scenarios of the --json file (with their own date) "
                             "and replace only those of --only")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write the report again from the --json file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.render:
        Path(args.report).write_text(render(json.loads(Path(args.json).read_text())))
        print(f"wrote {args.report} from {args.json}")
        return 0

    only = [s for s in args.only.split(",") if s] or SCENARIOS
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    providers = [p for p in args.providers.split(",") if p]
    bad = sorted(set(providers) - {"local", "docker"})
    if bad:
        parser.error(f"--providers: {', '.join(bad)} (local and docker are benchmarked)")

    ctx = Context(repeat=args.repeat, providers=providers, quick=args.quick,
                  workdir=Path(tempfile.mkdtemp(prefix="hp-bench-", dir="/tmp")))
    ctx.img_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "repeat": args.repeat,
        "quick": args.quick,
        "machine": machine(),
        "order": [s for s in SCENARIOS if s in only],
        "scenarios": {},
    }
    if args.merge and Path(args.json).exists():
        keep_earlier(results, json.loads(Path(args.json).read_text()), only)
    failed = []
    for name in results["order"]:
        if name not in only:
            continue  # kept from the earlier run (--merge)
        module = importlib.import_module(f"bench.scenarios.{name}")
        ctx.log(f"=== {name}: {module.TITLE}")
        t0 = time.monotonic()
        entry: dict[str, Any] = {"title": module.TITLE, "date": results["date"]}
        try:
            entry["result"] = module.run(ctx)
        except Exception:
            entry["error"] = traceback.format_exc()
            failed.append(name)
            ctx.log(f"{name} FAILED:\n{entry['error']}")
        entry["seconds"] = round(time.monotonic() - t0, 1)
        results["scenarios"][name] = entry
        ctx.log(f"=== {name}: {entry['seconds']:.0f} s")
    results["seconds"] = round(time.monotonic() - started, 1)

    Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    Path(args.report).write_text(render(results))
    ctx.log(f"wrote {args.json} and {args.report} ({results['seconds'] / 60:.1f} min)")
    if failed:
        ctx.log(f"FAILED: {', '.join(failed)} (their state and logs are kept in {ctx.workdir})")
        return 1
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
