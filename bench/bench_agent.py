"""Agent turn latency and overhead, measured side by side in one run.

For one question per intent, on fresh sessions (so tools really run), prints the warm turn
latency p50/p95, the intent recognised, and the agent overhead: turn wall time divided by the
sum of its tools' own compute time, the median over turns (targets: overhead <= 1.10; p50 <=
0.3 s for single-finding questions on 2 CPU cores).

    python bench/bench_agent.py [--images 15]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import Target, dev_images, percentile, write_results

QUESTIONS = {
    "ask_finding": "Is there an effusion?",
    "detect_findings": "What do you see?",
    "localize": "Where is the consolidation?",
    "measure": "What is the cardiothoracic ratio?",
    "report": "Write a report.",
    "guideline": "What do the guidelines say about managing a small pneumothorax?",
    "image_info": "What kind of image is this?",
    "compare_prior (no prior)": "Any change since the prior film?",
    "differential": "What is the differential for an effusion?",
    "segment_anatomy": "Outline the lungs",
}
# The latency bound is for single-finding questions; the overhead bound for turns whose tools
# run (with no prior, the comparison runs none, so it has no overhead to bound).
TOOL_INTENTS = ("ask_finding", "detect_findings")
TARGETS = [
    Target("ask_finding.p50_ms", "<=", 300, "ms"),
    *(Target(f"{intent}.overhead_ratio", "<=", 1.10) for intent in TOOL_INTENTS),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=15)
    args = parser.parse_args()

    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    paths = dev_images(args.images)
    if paths is None:
        return 2
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        agent = build_agent(Settings(state_dir=Path(scratch)))
        warm = agent.new_session()
        agent.add_study(warm, paths[0].read_bytes(), paths[0].name)
        agent.ask(warm, "What do you see?")  # load models, compile, warm caches
        for intent, question in QUESTIONS.items():
            walls, tool_times, recognised = [], [], collections.Counter()
            for path in paths:
                session = agent.new_session()
                agent.add_study(session, path.read_bytes(), path.name)
                started = time.perf_counter()
                events = list(agent.stream(session, question))
                walls.append((time.perf_counter() - started) * 1000)
                tool_times.append(sum(e.data.get("elapsed_ms", 0.0) for e in events
                                      if e.kind == "tool_end"))  # fmt: skip
                recognised.update(e.data["intent"] for e in events if e.kind == "understand")
            tools_total = sum(tool_times)
            # Per turn, then the median: a sum over turns lets one slow first call (an index
            # built on first use) hide every other turn's overhead.
            per_turn = [wall / tools for wall, tools in zip(walls, tool_times, strict=True)
                        if tools > 0]  # fmt: skip
            results[intent] = {
                "question": question,
                "recognised_as": recognised.most_common(1)[0][0],
                "turns": len(walls),
                "p50_ms": round(statistics.median(walls), 1),
                "p95_ms": round(percentile(walls, 0.95), 1),
                "tools_p50_ms": round(statistics.median(tool_times), 1),
                "overhead_ratio": round(statistics.median(per_turn), 3) if per_turn else None,
                "overhead_ratio_of_sums": (
                    round(sum(walls) / tools_total, 3) if tools_total else None
                ),
            }
    write_results("agent", results, TARGETS)
    print("| intent | recognised as | p50 ms | p95 ms | tools p50 ms | wall / tools, median "
          "turn | sum of walls / sum of tools |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for intent, r in results.items():
        print(f"| {intent} | {r['recognised_as']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['tools_p50_ms']} | {r['overhead_ratio']} | "
              f"{r['overhead_ratio_of_sums']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
