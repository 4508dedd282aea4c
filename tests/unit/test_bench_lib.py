"""bench/lib.py: reading wrk's summary (real wrk outputs in fixtures/wrk) and the medians."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from bench.lib import BenchError, fmt_summary, parse_wrk, summary
from bench.run import ROOT, SCENARIOS, main

WRK = Path(__file__).parent / "fixtures" / "wrk"


def test_a_clean_run() -> None:
    r = parse_wrk((WRK / "ok.txt").read_text())
    assert (r.requests, r.seconds, r.rps) == (914, 1.0, 911.02)
    assert r.failed == 0 and r.non_2xx == 0
    assert r.latency_ms == {"p50": 1.59, "p90": 7.23, "p99": 20.24}


def test_non_2xx_answers_are_failures() -> None:
    r = parse_wrk((WRK / "404.txt").read_text())
    assert r.requests == 892 and r.non_2xx == 892 and r.failed == 892


def test_socket_errors_are_failures() -> None:
    r = parse_wrk((WRK / "errors.txt").read_text())
    assert r.socket_errors == {"connect": 0, "read": 2, "write": 2384, "timeout": 0}
    assert r.failed == 2386
    assert r.as_dict()["failed"] == 2386 and "output" not in r.as_dict()


def test_no_summary_is_an_error() -> None:
    with pytest.raises(BenchError, match="no summary"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_summary_keeps_every_value_and_skips_missing_ones() -> None:
    s = summary([3.0, None, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert s["values"] == [3.0, None, 1.0, 2.0]
    assert fmt_summary(s, "s") == "2.0 s (1.0-3.0)"
    assert fmt_summary(summary([None])) == "n/a"
    assert fmt_summary(summary([4.25]), "ms", 2) == "4.25 ms"


def test_the_committed_report_is_what_the_committed_results_render_to(tmp_path: Path) -> None:
    """docs/benchmarks.md is written from bench/results.json by each scenario's markdown():
    rendering the committed results again gives the committed report, so neither was edited
    by hand and every scenario's markdown() still reads the figures it wrote."""
    report = tmp_path / "benchmarks.md"
    assert main(["--render", "--json", str(ROOT / "bench" / "results.json"), "--report", str(report)]) == 0
    text = report.read_text()
    assert text == (ROOT / "docs" / "benchmarks.md").read_text()
    measured = json.loads((ROOT / "bench" / "results.json").read_text())["order"]
    assert text.count("\n## ") == len(measured) and "**Failed:**" not in text
    # Every measured scenario is still registered, in the registered order. A scenario added since
    # the last `make bench` (docker_paths) is not in the committed results until the next run
    # (`python bench/run.py --only NAME --merge`); its module must still be complete.
    assert measured == [name for name in SCENARIOS if name in measured]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_registered_scenario_is_a_complete_module(name: str) -> None:
    module = importlib.import_module(f"bench.scenarios.{name}")
    assert name == module.NAME and module.TITLE
    assert callable(module.run) and callable(module.markdown)
