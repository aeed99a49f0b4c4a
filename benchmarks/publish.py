#!/usr/bin/env python3
"""Write the benchmark's results where users read them: the README's performance table and
the one docs/performance.rst includes, from ``bench.py --json`` files of one build (their
rounds pooled), with the commit, the date and the machine they were measured on. Nobody edits
these tables by hand.

usage: python benchmarks/publish.py RESULTS.json [MORE.json ...] [--readme README.md]
                                    [--rst docs/bench-results.rst]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench-table: start -->", "<!-- bench-table: end -->"  # README markers
COLUMNS = (("plain", "pytest"), ("xdist", "pytest-xdist"), ("procpar", "procpar"))


def caption(results: dict[str, Any]) -> str:
    """What the figures were measured with: the commit first, as every measured sentence."""
    machine = results["machine"]
    date = results.get("date")
    return (
        f"procpar at `{machine['procpar_git']}`, measured on {date or 'an unknown date'} "
        f"with `python benchmarks/bench.py --rounds {results['rounds']}`: {machine['nproc']} CPUs, "
        f"Python {machine['python']}, pytest {machine['pytest']}, "
        f"pytest-xdist {machine['pytest-xdist']}; median of {results['rounds']} interleaved "
        "rounds, and the median ratio to plain pytest in the same round (lower is better)"
    )


def cell(suite: dict[str, Any], name: str) -> str:
    """One configuration's figure: wall seconds, or peak PSS for the memory suite, with its
    ratio to plain pytest (the one-test suite: the seconds it adds)."""
    config = suite["configs"].get(name)
    if config is None:
        return "-"
    if not config["ok"]:
        return "failed"
    if suite["name"] == "memory":
        value, ratio = config["median_peak_pss_mib"], config["median_pss_ratio_to_plain"]
        figure = f"{value:.0f} MiB"
    else:
        value, ratio = config["median_wall_s"], config["median_ratio_to_plain"]
        figure = f"{value:.2f} s"
    if name == "plain" or ratio is None:
        return figure
    if suite["name"] == "one":  # the median over rounds of the seconds added in that round
        plain = suite["configs"]["plain"]["runs"]
        pairs = zip(config["runs"], plain, strict=True)
        added = [run["wall_s"] - base["wall_s"] for run, base in pairs]
        return f"{figure} ({statistics.median(added):+.2f} s)"
    return f"{figure} ({ratio:.2f}x)"


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for suite in results["suites"]:
        what = suite["description"]
        if suite["name"] == "memory":
            what += ": peak memory (PSS)"
        out.append([what, str(suite["workers"]), *(cell(suite, name) for name, _ in COLUMNS)])
    return out


def markdown(results: dict[str, Any]) -> str:
    header = ["suite", "`-n`", *(title for _, title in COLUMNS)]
    lines = [caption(results) + ":", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def rst(results: dict[str, Any]) -> str:
    header = ["Suite", "Workers", *(title for _, title in COLUMNS)]
    text = caption(results).replace("`", "``") + "."
    lines = [".. This file is written by benchmarks/publish.py: do not edit it.", "", text, ""]
    lines += [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows(results)]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {value}" for value in row[1:]]
    return "\n".join(lines) + "\n"


def replace_between_markers(text: str, new: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"the README has no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{new}\n{END}", text)


def pooled(files: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of one build: every configuration's runs of a suite together, the
    medians and the per-round ratios to plain worked out again over all of them."""
    first = files[0]
    builds = {result["machine"]["procpar_git"] for result in files}
    if len(builds) > 1:
        raise SystemExit(f"results of several builds: {', '.join(sorted(builds))}")
    suites: dict[str, dict[str, Any]] = {}
    for result in files:
        for suite in result["suites"]:
            into = suites.setdefault(suite["name"], {**suite, "configs": {}})
            for name, config in suite["configs"].items():
                runs = into["configs"].setdefault(name, {**config, "runs": []})["runs"]
                runs.extend(config["runs"])
    for suite in suites.values():
        plain = suite["configs"]["plain"]["runs"]
        for config in suite["configs"].values():
            runs = config["runs"]
            config["ok"] = all(run["ok"] for run in runs)
            config["median_wall_s"] = statistics.median(run["wall_s"] for run in runs)
            config["median_ratio_to_plain"] = _ratio(runs, plain, "wall_s")
            pss = [run["peak_pss_mib"] for run in runs if run.get("peak_pss_mib") is not None]
            config["median_peak_pss_mib"] = statistics.median(pss) if pss else None
            config["median_pss_ratio_to_plain"] = _ratio(runs, plain, "peak_pss_mib")
    rounds = sum(result["rounds"] for result in files)
    dates = sorted(result.get("date", "") for result in files)
    return {**first, "rounds": rounds, "date": dates[-1], "suites": list(suites.values())}


def _ratio(runs: list[dict[str, Any]], plain: list[dict[str, Any]], field: str) -> float | None:
    """The median over rounds of a run's ``field`` divided by plain's in the same round."""
    ratios = [
        run[field] / base[field]
        for run, base in zip(runs, plain, strict=True)
        if run.get(field) is not None and base.get(field)
    ]
    return statistics.median(ratios) if ratios else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files bench.py --json wrote")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--rst", type=Path, default=ROOT / "docs" / "bench-results.rst")
    args = parser.parse_args(argv)
    results = pooled([json.loads(path.read_text()) for path in args.results])
    args.readme.write_text(replace_between_markers(args.readme.read_text(), markdown(results)))
    args.rst.write_text(rst(results))
    print(f"wrote the table of {results['machine']['procpar_git']} to {args.readme}, {args.rst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
