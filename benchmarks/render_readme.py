"""Renders the README's benchmark figures from the results files, so nobody copies them by hand.

README.md holds blocks like

    <!-- results:throughput -->
    ...generated from benchmarks/results/throughput-cpu.json...
    <!-- /results -->

and this script replaces each block's inside with what its renderer makes of the results file.
tests/test_readme_results.py checks that README.md equals its rendered form.

    python benchmarks/render_readme.py          # rewrite README.md
    python benchmarks/render_readme.py --check  # exit 1 if README.md is not its rendered form

Stdlib only (json, re): the test runs it without torch or matplotlib.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import show, table  # noqa: E402

README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def stem(name: str) -> str:
    """A block's results file: `<name>-cpu`, or a tagged models run (`models-cpu-<tag>`)."""
    return f"models-cpu-{name}" if name in MODEL_TAGS else f"{name}-cpu"


def load(name: str) -> dict | None:
    path = RESULTS / f"{stem(name)}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if "facts" in data else None  # a file from before the harness has no facts block


def origin(data: dict, name: str) -> list[str]:
    """Where the figures come from: command, commit, date, CPU; loud when the code was not committed."""
    f = data["facts"]
    cpu = f["cpu"]
    flags = "AMX-BF16" if cpu["amx_bf16"] else "AVX512-BF16, no AMX" if cpu["avx512_bf16"] else "no BF16 instructions"
    line = (f"`{f['command']}` at commit {f['git']['short']}, {f['date']}, on {cpu['model']} ({cpu['cores']} cores, "
            f"{flags}); [results/{stem(name)}.md](benchmarks/results/{stem(name)}.md), "
            f"[plot](benchmarks/results/{stem(name)}.png).")
    if f["git"]["dirty"]:
        line = f"**Measured with uncommitted changes ({', '.join(f['git']['dirty'])}).** " + line
    return [line, ""]


def statuses(by_status: dict) -> str:
    return ", ".join(f"{n:,} x {status}" for status, n in sorted(by_status.items())) or "none"


def verdicts(checks: list[dict], text) -> list[str]:
    if not checks:
        return []
    return ["", "Targets: " + "; ".join(f"{text(c)}: **{'met' if c['met'] else 'MISSED'}**" for c in checks) + "."]


# ---- one renderer per results file ---------------------------------------------------------
def throughput(d: dict) -> list[str]:
    m = d["method"]
    rows = [[r["key"], r["system"], r["precision"], show(r["tokens_per_s"]),
             "reference" if r["key"] == r.get("best_peer") else f"{r['vs_best_peer']:.2f}x {r['best_peer']}",
             f"{r['vs_st_fp32']:.2f}x", "reference" if r["key"] == "st-fp32" else f"{r['cosine_min']:.6f}"]
            for r in d["results"]]
    return [
        (f"{d['dataset']['texts']:,} texts, {d['dataset']['real_tokens']:,} real tokens; each system in its own "
         f"process with {m['threads']} threads; tokens/s is the median (min-max) of {m['rounds']} interleaved rounds. "
         "Ratios are against the best peer of the same precision class."), "",
        *table(["key", "system", "precision", "tokens/s", "x best peer in class", "x ST fp32",
                "min cosine vs ST fp32"], rows),
        *verdicts(d["checks"], lambda c: f"{c['check']} ({c['ratio']:.2f}x)"),
    ]


def models(d: dict) -> list[str]:
    m = d["method"]
    rows = [[r["workload"], r["key"], r["dtype"], show(r["tokens_per_s"]),
             "reference" if r["peer"] == r["key"] else f"{r['vs_peer']:.2f}x {r['peer']}"
             + (f" ({r['peer_note']})" if r.get("peer_note") else ""), r["agreement"]] for r in d["results"]]
    w = d["workloads"]
    shapes = "; ".join(f"{k}: {v['items']:,} {v['unit']}, {v['real_tokens']:,} real tokens" for k, v in w.items())
    return [
        (f"{shapes}; {m['threads']} threads, everything in one process; tokens/s is the median (min-max) of "
         f"{m['rounds']} interleaved rounds; ratios against the peer of the same precision."), "",
        *table(["workload", "system", "dtype", "tokens/s", "x peer", "agreement with the float32 peer"], rows),
        *verdicts(d["checks"], lambda c: f"{c['check']} ({c['ratio']:.2f}x)"),
    ]


def hotswap(d: dict) -> list[str]:
    by_key = {r["key"]: r for r in d["results"]}
    rows = []
    for r in d["results"]:
        if r["config"] != "host":
            continue
        disk = by_key[r["key"].replace("-host", "-disk")]
        rows.append([f"{r['n']} ({r['k']})", "Zipf(1.1)" if r["workload"] == "zipf" else "round-robin over k+1",
                     show(r["goodput_vs_resident"], "{:.2f}x"), show(r["hot_p99_inflation"], "{:.2f}x"),
                     show(disk["goodput_vs_resident"], "{:.2f}x"), show(disk["hot_p99_inflation"], "{:.2f}x"),
                     str(r["errors"] + disk["errors"])])
    p, m = d["probe"], d["method"]
    ms = lambda s: f"{s * 1000:.2f}" if s < 0.01 else f"{s * 1000:.0f}"  # noqa: E731
    return [
        (f"{m['requests_per_run']} requests per run from {m['concurrency']} closed-loop clients; float32; ratios are "
         f"each round's goodput (or hot-model p99) over the all-resident run of the same round, median (min-max) of "
         f"{m['rounds']} rounds."), "",
        *table(["N (k)", "stream", "host tier: goodput vs all-resident", "host: hot-model p99 x", "disk only: goodput",
                "disk: hot p99 x", "errors"], rows),
        "",
        (f"Idle load probe: host tier p50 {ms(p['host']['p50'])} ms, disk p50 {ms(p['disk-page-cache']['p50'])} ms "
         f"with the file in the page cache, {ms(p['disk-cold-file']['p50'])} ms with it dropped."),
        *verdicts(d["checks"], lambda c: c["check"] + (f" ({c['value_ms']} ms)" if "value_ms" in c else
                                                       f" ({c['ratio']:.2f}x)" if "ratio" in c else "")),
    ]


def vectordb(d: dict) -> list[str]:
    c, w, m = d["chroma"], d["weaviate_pattern"], d["method"]
    s, p, a = c["chroma-shoal"], c["chroma-st"], c["agreement"]
    f = "{:.1f}"
    return [
        (f"{d['docs']:,} wiki100 passages into a real Chroma (`PersistentClient`, batches of {d['batch']}) through "
         f"Shoal's EF over HTTP and Chroma's in-process `SentenceTransformerEmbeddingFunction`, {d['queries']} "
         f"queries; {m['threads']} torch thread(s) per side; medians (min-max) of {m['rounds']} interleaved rounds."),
        "",
        *table(["", "Shoal", "in-process sentence-transformers", "ratio of medians"], [
            ["Chroma ingest, docs/s", show(s["ingest_docs_per_s"], f), show(p["ingest_docs_per_s"], f),
             f"{c['ratios']['ingest_docs_per_s']:.2f}x"],
            ["Chroma query p50, ms", show(s["query_p50_ms"], f), show(p["query_p50_ms"], f),
             f"{c['ratios']['query_p50_ms']:.2f}x"],
            ["Chroma query p99, ms", show(s["query_p99_ms"], f), show(p["query_p99_ms"], f),
             f"{c['ratios']['query_p99_ms']:.2f}x"],
            ["one text per request (Weaviate's module pattern), texts/s: Shoal c=32 vs sequential",
             show(w["weaviate-c32"], f), show(w["weaviate-reference"], f),
             show(w["ratio_c32_vs_reference"], "{:.2f}x")]]),
        "",
        (f"Top-10 retrieval agreement: mean overlap {a['mean_top10_overlap']:.3f}, identical for "
         f"{a['identical_top10_sets']:.1%} of queries; min cosine of the one-per-request vectors against the "
         f"sequential reference {w['min_cosine_vs_reference']:.6f}."),
    ]


def soak(d: dict) -> list[str]:
    p = d["phases"]
    s, mem, trend = p["soak"]["summary"], p["soak"]["memory"], p["soak"]["rss_trend"]
    other = {k: v for k, v in s["by_status"].items() if k not in ("200", "504")}
    loads = p["soak"]["pool"]["loads_by_source"]
    load, idle = p["sigterm_load"], p["sigterm_idle"]
    in_flight = load["in_flight_at_sigterm"]
    replace = [p[k] for k in ("replace_host_cache", "replace_no_host_cache")]
    faulty, good = p["faults"]["faulty_models"], p["faults"]["good_models"]
    queue = p["soak"]["queue_after_traffic"]
    return [
        (f"{d['models']['count']} tiny BERTs behind a budget for 2 (host cache for 3), {s['sent']:,} Zipf requests "
         f"from {d['method']['concurrency']} clients, ~10% hanging up mid-request and ~10% with 50-500 ms deadlines; "
         f"served: {d['served_code'].split(' in ')[0]}."), "",
        *table(["", "result"], [
            [f"{s['sent']:,} requests", f"{s['by_status'].get('200', 0):,} answered 200, "
             f"{s['by_status'].get('504', 0):,} answered 504, {s['disconnected']:,} hung up"
             f"{', other: ' + statuses(other) if other else ''}; "
             f"**{s['mismatches']} mismatches** against sentence-transformers, **{s['hung']} hung**, "
             f"{s['server_errors_5xx']} 5xx"],
            ["queue gauges after traffic", f"back to 0 in {queue['seconds_to_zero']} s" if queue["settled"]
             else "NOT back to 0"],
            ["server RSS", f"{mem['after_warm_up']['rss_mib']} MiB warm, {mem['after_5s_idle']['rss_mib']} MiB at the "
             f"end ({trend.get('second_half_growth_mib')} MiB over the second half; {loads.get('disk', 0):.0f} disk "
             f"loads, {loads.get('host', 0):.0f} host-tier loads)"],
            [f"SIGTERM with {load['clients']} clients", f"{in_flight['sent']} in flight at SIGTERM: "
             f"{statuses(in_flight['by_status'])}, exit in {load['exit_seconds']} s (`--drain-seconds` "
             f"{d['method']['drain_seconds']:g}); idle: {idle['exit_seconds']} s"],
            ["weights replaced while served, then unloaded",
             "; ".join(f"host cache {r['host_cache'] // 2**20} MiB: switched to the new weights "
                       f"{'yes' if r['switched_to_new'] else 'NO'}, old after new {r['old_answers_after_first_new']}, "
                       f"5xx {r['errors_5xx'] or 0}" for r in replace)],
            ["corrupt, corrupted-later and deleted model folders",
             "; ".join(f"{k}: {statuses(v['by_status'])}, {v['hung']} hung" for k, v in faulty.items())
             + f"; the good models: {good['mismatches']} mismatches, {good['hung']} hung"]]),
        "",
        "Findings: " + ("; ".join(d["findings"]) if d["findings"] else "none") + ".",
    ]


def fleet(d: dict) -> list[str]:
    m, p = d["method"], d["projection"]
    names = m["variants"]
    rows = [[names[r["variant"]], show(r["hit_ratio"], "{:.3f}"), show(r["loads_per_1000"], "{:.0f}"),
             show(r["goodput_rps"], "{:.1f}"), show(r["latency_p50"], "{:.3f}"), show(r["latency_p99"], "{:.3f}")]
            for r in d["results"]]
    simulated = d["validation"]["modelled"]
    largest = str(max(p["replicas"]))
    projected = [[names[v], f"{simulated[v]['hit_ratio']:.3f}", f"{p['results'][v][largest]['hit_ratio']:.3f}",
                  f"{p['results'][v][largest]['loads_per_1000']:.0f}"] for v in p["results"]]
    return [
        (f"{m['replicas']} `shoal serve` replicas with room for {m['capacity']} of 24 models each (no host tier) "
         f"behind the real HAProxy with the shipped `haproxy.cfg` (one line apart per variant); Zipf({m['zipf_s']}) "
         f"traffic, {m['requests']:,} requests from {m['concurrency']} clients per round; medians (min-max) of "
         f"{m['rounds']} interleaved rounds (latency in seconds)."), "",
        *table(["router", "hit ratio", "loads per 1,000 requests", "goodput req/s", "p50 s", "p99 s"], rows),
        "",
        (f"A simulator running Shoal's own `ModelPool` behind HAProxy's consistent-hash ring, checked against the "
         f"real run on the same trace, projects {largest} replicas over {p['models']} models:"), "",
        *table(["router", f"simulated hit ratio, {m['replicas']} replicas (real above)",
                f"hit ratio, {largest} replicas", "loads per 1,000"], projected),
    ]


MODEL_TAGS = ("gliner", "zero-shot", "compress")
RENDERERS = {"throughput": throughput, "models": models, "hotswap": hotswap, "vectordb": vectordb, "soak": soak,
             "fleet": fleet, **{tag: models for tag in MODEL_TAGS}}


def block(name: str) -> str:
    data = load(name)
    if data is None:
        run = f"models.py --workloads {name} --tag {name}" if name in MODEL_TAGS else f"{name}.py"
        lines = [f"No results from the benchmark harness yet: run `python benchmarks/{run}`, then "
                 "`python benchmarks/render_readme.py`."]
    else:
        lines = origin(data, name) + RENDERERS[name](data)
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in RENDERERS:
            raise KeyError(f"README block results:{name}: no renderer (known: {', '.join(RENDERERS)})")
        return match.group(1) + block(name) + match.group(4)

    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not its rendered form")
    args = parser.parse_args(argv)
    text = README.read_text()
    rendered = render(text)
    if args.check:
        sys.exit(0 if rendered == text else 1)
    README.write_text(rendered)
    print(f"rendered {len(BLOCK.findall(text))} blocks into {README.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
