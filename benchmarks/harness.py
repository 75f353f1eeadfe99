"""What every benchmark shares, so each benchmark file states only its workload.

- `Bench(name, args)`: the run. It takes the facts at the start (commit, date, exact command,
  CPU model and flags, cores, versions, load average) and refuses to start a run that would
  write results while engine/, gateway/ or benchmarks/ have uncommitted changes (unless
  `--allow-dirty`, which marks every output loudly). `bench.log(event, k=v)` prints one
  structured progress line on stderr; `bench.write(data, body, plot)` writes
  `results/<name>-<device>.json`, `.md` (facts block on top) and `.png`.
- `Worker(...)`: one system in its own fresh process (any Python, e.g. the peers' venv) with a
  fixed thread count, warm between rounds; told over stdin/stdout to run a round.
  `InProcess(key, fn)`: the same interface for work that must run in this process.
- `bench.interleave(systems)`: rounds, every system once per round in a rotating order, a
  bounded wait for a quiet machine before each round (recorded), and per run the seconds,
  the cores the system's processes used and the cores everything else on the machine used
  (from /proc).
- `spread(values)` / `show(spread)`: median and min-max over rounds (never the best round).
- `bar_chart` / `line_chart`: the PNGs (matplotlib, imported only when plotting).

Stdlib only at import time: the peers' venv imports this module too (as a worker).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]  # the code that runs: the repository, or a --snapshot of it
REPO = Path(os.environ.get("SHOAL_BENCH_REPO", ROOT))  # the repository: its git state, its results folder
RESULTS = REPO / "benchmarks" / "results"
WATCHED = ("engine", "gateway", "benchmarks")  # code a result depends on; benchmarks/results/ excluded
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "transformers", "sentence-transformers", "numpy", "tokenizers")
CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def log(bench: str, event: str, **fields) -> None:
    """One progress line on stderr: `[bench HH:MM:SS] event key=value ...`."""
    parts = " ".join(f"{k}={_field(v)}" for k, v in fields.items())
    print(f"[{bench} {time.strftime('%H:%M:%S')}] {event}{' ' + parts if parts else ''}", file=sys.stderr, flush=True)


def _field(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    text = str(value)
    return shlex.quote(text) if any(c.isspace() for c in text) else text


# ---- facts ---------------------------------------------------------------------------------
def git_state() -> dict:
    """HEAD and the uncommitted changes in the code a result depends on."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD").strip() or "unknown"
    status = git("status", "--porcelain", "--untracked-files=all", "--", *WATCHED).splitlines()
    dirty = [line[3:] for line in status if not line[3:].startswith("benchmarks/results/")
             and "__pycache__" not in line]
    return {"commit": commit, "short": commit[:10], "dirty": dirty}


def cpu_facts() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags],
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def versions(packages=PACKAGES) -> dict:
    """Installed versions, read from metadata (nothing imported)."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def facts(command: str, packages=PACKAGES) -> dict:
    return {"git": git_state(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": command,
            "cpu": cpu_facts(), "platform": platform.platform(), "versions": versions(packages),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def facts_lines(f: dict) -> list[str]:
    """The facts block on top of every results .md."""
    git, cpu = f["git"], f["cpu"]
    lines = []
    if git["dirty"]:
        lines += [f"**UNCOMMITTED CHANGES: these figures are not those of commit {git['short']}** "
                  f"(modified: {', '.join(git['dirty'][:12])}{' ...' if len(git['dirty']) > 12 else ''}).", ""]
    took = f", {f['wall_seconds']:.0f} s" if "wall_seconds" in f else ""
    lines += [
        f"- Command: `{f['command']}`",
        f"- Commit {git['short']}{' + uncommitted changes' if git['dirty'] else ''}"
        f"{' (run from a git archive of it: --snapshot)' if git.get('snapshot') else ''}; {f['date']}{took}.",
        f"- CPU: {cpu['model']}, {cpu['cores']} cores; flags {' '.join(cpu['flags']) or 'none of interest'} "
        f"(amx_bf16 {'yes' if cpu['amx_bf16'] else 'no'}, avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in f["versions"].items()) + ".",
    ]
    if git.get("not_measured"):
        lines.append(f"- Uncommitted changes in the working tree, not measured (--snapshot): "
                     f"{', '.join(git['not_measured'])}.")
    for group, found in f.get("peer_versions", {}).items():
        lines.append(f"- {group}: " + ", ".join(f"{k} {v}" for k, v in found.items()) + ".")
    lines.append(f"- Load average (1, 5, 15 min): {f['loadavg_start']} at the start"
                 + (f", {f['loadavg_end']} at the end." if "loadavg_end" in f else "."))
    if f.get("changed_during_run"):
        lines.append(f"- Changed during the run (after the processes had started): {f['changed_during_run']}.")
    return lines


# ---- CPU accounting from /proc -------------------------------------------------------------
def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (workers, their servers, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICK  # minus idle and iowait
    except (OSError, IndexError, ValueError):
        return float("nan")


class CpuWindow:
    """Cores used during a `with` block: by `pids` (the system measured; default this process)
    and by everything on the machine that is not this process or one of its descendants."""

    def __init__(self, pids: list[int] | None = None):
        self.pids = pids or [os.getpid()]

    def _ours(self) -> float:
        return sum(process_cpu(p) for p in [os.getpid(), *descendants(os.getpid())])

    def __enter__(self) -> "CpuWindow":
        self.machine, self.tree, self.system = machine_busy(), self._ours(), sum(map(process_cpu, self.pids))
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.started
        self.cores = (sum(map(process_cpu, self.pids)) - self.system) / self.wall
        self.others = max(0.0, (machine_busy() - self.machine - (self._ours() - self.tree)) / self.wall)


def wait_for_quiet(limit_s: float, max_cores: float) -> dict:
    """Sample others' CPU in 2 s windows until it is under `max_cores` or `limit_s` has passed."""
    started = time.monotonic()
    while True:
        with CpuWindow() as window:
            time.sleep(2.0)
        waited = time.monotonic() - started
        if window.others < max_cores or waited >= limit_s:
            return {"waited_s": round(waited, 1), "others_cores": round(window.others, 2),
                    "quiet": window.others < max_cores, "loadavg": [round(x, 2) for x in os.getloadavg()]}


# ---- statistics ----------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    """Median and min-max over rounds: the only summary a table shows."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def show(s: dict, fmt: str = "{:,.0f}") -> str:
    """`median (min-max)`, or the lone value of a one-round run."""
    if len(s["rounds"]) == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


# ---- systems and workers -------------------------------------------------------------------
def thread_env(threads: int, extra: dict | None = None) -> dict:
    """Environment that pins a child's OpenMP / MKL / tokenizer pools to `threads`."""
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "RAYON_NUM_THREADS": n,
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(extra or {})}


class Worker:
    """A system in its own process: `python -m benchmarks.harness --worker` builds
    `target(**kwargs)` once (an object with `run(round) -> dict`, optional `info()` and
    `close()`), then runs it whenever told, so every round finds it warm."""

    def __init__(self, key: str, target: str, kwargs: dict, threads: int, python: str | None = None,
                 env: dict | None = None, start_timeout: float = 900.0):
        self.key, self.target = key, target
        self.process = subprocess.Popen([python or sys.executable, "-m", "benchmarks.harness", "--worker"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=thread_env(threads, env))
        self._send({"target": target, "kwargs": kwargs, "threads": threads})
        self.info = self._receive(start_timeout).get("info", {})

    def _send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise RuntimeError(f"worker {self.key} ({self.target}) gave no answer"
                               f"{' within %.0f s' % timeout if not ready else ''}; its stderr is above")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"worker {self.key} ({self.target}) failed:\n{reply.get('error')}")
        return reply

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def run(self, round_: int, timeout: float = 3600.0) -> dict:
        self._send({"op": "run", "round": round_})
        return self._receive(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"op": "stop"})
                self.process.wait(timeout=60)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()


@dataclass
class InProcess:
    """A system that runs in this process: `fn(round) -> dict` (may carry its own `seconds`)."""
    key: str
    fn: Callable[[int], dict]
    extra_pids: Callable[[], list[int]] = lambda: []
    cleanup: Callable[[], None] = lambda: None

    def pids(self) -> list[int]:
        return [os.getpid(), *self.extra_pids()]

    def run(self, round_: int) -> dict:
        started = time.perf_counter()
        result = dict(self.fn(round_) or {})
        result.setdefault("seconds", time.perf_counter() - started)
        return result

    def close(self) -> None:
        self.cleanup()


def _serve_worker() -> None:
    """The worker side of `Worker`: replies go to a private copy of stdout; anything a
    library prints lands on stderr, so it can never corrupt a reply."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    setup = json.loads(sys.stdin.readline())
    try:
        try:
            import torch
            torch.set_num_threads(setup["threads"])
        except ImportError:
            pass
        module, name = setup["target"].split(":")
        system = getattr(importlib.import_module(module), name)(**setup["kwargs"])
        reply({"ok": True, "info": system.info() if hasattr(system, "info") else {}})
    except BaseException:  # noqa: BLE001 - the parent shows it
        reply({"ok": False, "error": traceback.format_exc()})
        return
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("op") != "run":
            break
        try:
            started = time.perf_counter()
            result = dict(system.run(message["round"]) or {})
            result.setdefault("seconds", time.perf_counter() - started)
            reply({"ok": True, **result})
        except BaseException:  # noqa: BLE001
            reply({"ok": False, "error": traceback.format_exc()})
    if hasattr(system, "close"):
        system.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`: a child never outlives the run."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the run -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, rounds: int | None = 3, quiet_wait: float = 180.0,
                  snapshot: bool = True) -> None:
    """The options every benchmark shares; `rounds=None` for a benchmark without rounds.
    (`snapshot` is accepted for older callers: every benchmark offers --snapshot.)"""
    group = parser.add_argument_group("harness")
    group.add_argument("--quick", action="store_true", help="smoke run; writes nothing unless --save")
    group.add_argument("--save", action="store_true", help="with --quick: write the results files anyway")
    if rounds:
        group.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {rounds}; 1 quick)")
    group.add_argument("--threads", type=int, default=None, help="threads of every system (default: torch's own)")
    group.add_argument("--quiet-wait", type=float, default=None,
                       help=f"before each round, wait up to this many seconds for a quiet machine "
                            f"(default {quiet_wait:g}; 0 with --quick)")
    group.add_argument("--quiet-cores", type=float, default=0.3,
                       help="quiet: other processes use fewer cores than this (default 0.3)")
    group.add_argument("--allow-dirty", action="store_true",
                       help="write results despite uncommitted changes (marked loudly in every output)")
    group.add_argument("--tag", default=None, help="results file suffix: results/<name>-<device>-<tag>.*")
    group.add_argument("--snapshot", action="store_true",
                       help="run the whole benchmark from HEAD's committed files (git archive), whatever the working "
                            "tree holds; results still go to this repository")
    parser.set_defaults(_harness_defaults={"rounds": rounds, "quiet_wait": quiet_wait})


def snapshot_head(commit: str) -> Path:
    """HEAD's tracked files (`git archive`) in a temp folder, made once per commit."""
    import io
    import tarfile
    import tempfile

    tree = Path(tempfile.gettempdir()) / f"shoal-snapshot-{commit[:12]}"
    if not tree.exists():
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True,
                                 check=True).stdout
        partial = tree.with_name(tree.name + f".{os.getpid()}")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(partial, filter="data")
        os.replace(partial, tree)
    return tree


def default_threads() -> int:
    try:
        import torch
        return torch.get_num_threads()  # the physical cores
    except ImportError:
        return os.cpu_count() or 1


class Bench:
    def __init__(self, name: str, args: argparse.Namespace, argv: list[str] | None = None, device: str = "cpu",
                 packages=PACKAGES):
        self.name, self.args, self.device = name, args, device
        defaults = args._harness_defaults
        args.rounds = getattr(args, "rounds", None) or (1 if args.quick else defaults["rounds"] or 1)
        if args.quiet_wait is None:
            args.quiet_wait = 0.0 if args.quick else defaults["quiet_wait"]
        args.threads = args.threads or default_threads()
        argv = list(sys.argv[1:] if argv is None else argv)
        self.facts = facts(shlex.join(["python", f"benchmarks/{name}.py", *argv]), packages)
        self.writing = not args.quick or args.save
        self.rounds_log: list[dict] = []
        self.started = time.monotonic()
        if args.snapshot:
            self._from_snapshot(name, argv)
        self.tree = ROOT  # the code this run measures: the repository, or the snapshot it re-ran from
        dirty = self.facts["git"]["dirty"]
        if dirty and self.writing and not args.allow_dirty:
            raise SystemExit(f"{name}: refusing to measure for the results files: uncommitted changes in "
                             f"{', '.join(dirty)}. Commit first (or pass --allow-dirty: every output says so).")
        self.log("start", commit=self.facts["git"]["short"], dirty=len(dirty), rounds=args.rounds,
                 threads=args.threads, loadavg=self.facts["loadavg_start"][0], writing=self.writing)

    def _from_snapshot(self, name: str, argv: list[str]) -> None:
        """--snapshot: the whole benchmark (this process, its workers, its servers) runs HEAD's
        files from a `git archive`, so others' edits in the working tree cannot reach the
        measurement; the working tree's uncommitted changes are then recorded, not refused."""
        git = self.facts["git"]
        if ROOT == REPO:  # not yet: run this very command again from the snapshot
            tree = snapshot_head(git["commit"])
            self.log("snapshot", tree=tree)
            sys.stdout.flush()
            os.execve(sys.executable, [sys.executable, str(tree / "benchmarks" / f"{name}.py"), *argv],
                      {**os.environ, "SHOAL_BENCH_REPO": str(REPO)})
        git["snapshot"] = str(ROOT)
        git["not_measured"], git["dirty"] = git["dirty"], []

    def log(self, event: str, **fields) -> None:
        log(self.name, event, **fields)

    def interleave(self, systems: list, on_run: Callable[[object, dict], None] | None = None) -> dict[str, list]:
        """Every system once per round, the order rotating by one each round, after a bounded
        wait for a quiet machine. Returns, per key, one record per round."""
        records: dict[str, list[dict]] = {s.key: [] for s in systems}
        for r in range(self.args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            quiet = (wait_for_quiet(self.args.quiet_wait, self.args.quiet_cores) if self.args.quiet_wait > 0
                     else {"waited_s": 0.0, "quiet": None, "loadavg": [round(x, 2) for x in os.getloadavg()]})
            self.rounds_log.append({"round": r + 1, "order": [s.key for s in order], **quiet})
            self.log("round", n=f"{r + 1}/{self.args.rounds}", **quiet)
            for system in order:
                with CpuWindow(system.pids()) as cpu:
                    result = system.run(r + 1)
                record = {"round": r + 1, **result, "cores": round(cpu.cores, 2), "others_cores": round(cpu.others, 2)}
                records[system.key].append(record)
                self.log("ran", system=system.key, round=r + 1, seconds=record["seconds"], cores=record["cores"],
                         others=record["others_cores"])
                if on_run:
                    on_run(system, record)
        return records

    def method(self) -> dict:
        """How the rounds ran, for the JSON."""
        a = self.args
        return {"rounds": a.rounds, "threads": a.threads, "statistic": "median and min-max over rounds",
                "order": "every system once per round, rotating by one each round",
                "quiet_wait_s": a.quiet_wait, "quiet_cores": a.quiet_cores, "rounds_log": self.rounds_log}

    def method_line(self) -> str:
        a = self.args
        waits = [r["waited_s"] for r in self.rounds_log]
        loud = [r["round"] for r in self.rounds_log if r.get("quiet") is False]
        return (f"{a.rounds} interleaved round(s), every system once per round in a rotating order, {a.threads} "
                f"thread(s) per system; figures are medians with (min-max) over rounds. Before each round the run "
                f"waited up to {a.quiet_wait:g} s for other processes to use under {a.quiet_cores:g} cores (waited "
                f"{', '.join(f'{w:g}' for w in waits) or '-'} s"
                + (f"; NOT quiet before round(s) {loud}" if loud else "") + ").")

    def stem(self) -> Path:
        return RESULTS / f"{self.name}-{self.device}{'-' + self.args.tag if self.args.tag else ''}"

    def write(self, data: dict, title: str, body: list[str], plot: Callable[[Path], None] | None = None) -> None:
        """Print the report; unless a quick run, write .json, .md and .png beside each other."""
        f = self.facts
        f["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        f["wall_seconds"] = round(time.monotonic() - self.started, 1)
        end = git_state()
        if end["commit"] != f["git"]["commit"] or end["dirty"] != f["git"]["dirty"]:
            f["changed_during_run"] = {"commit": end["short"], "dirty": end["dirty"]}
        markdown = "\n".join([f"# {title}", "", *facts_lines(f), "", *body]).rstrip() + "\n"
        print(markdown)
        if not self.writing:
            self.log("not written", reason="--quick without --save")
            return
        stem = self.stem()
        stem.parent.mkdir(parents=True, exist_ok=True)
        payload = {"benchmark": self.name, "device": self.device, "facts": f, **data}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        stem.with_suffix(".md").write_text(markdown)
        if plot:
            plot(stem.with_suffix(".png"))
        self.log("wrote", files=f"{stem.relative_to(REPO)}.{{json,md{',png' if plot else ''}}}")


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


# ---- plots ---------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(path: Path, title: str, bars: list[dict], xlabel: str, note: str = "") -> None:
    """Horizontal bars at the median, whiskers from min to max; `bars`: label, spread, group."""
    plt = _pyplot()
    groups = list(dict.fromkeys(b["group"] for b in bars))
    colors = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(bars) + 1.8))
    for i, b in enumerate(reversed(bars)):
        s = b["spread"]
        ax.barh(i, s["median"], color=colors[b["group"]], label=b["group"])
        ax.errorbar(s["median"], i, xerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]], color="black",
                    capsize=3, lw=1)
        ax.text(s["max"], i, f"  {s['median']:,.{b.get('digits', 0)}f}", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)), [b["label"] for b in reversed(bars)], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
    ax.legend([handles[g] for g in groups], groups, fontsize=8, loc="lower right")
    ax.set_xlim(0, max(b["spread"]["max"] for b in bars) * 1.18)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def line_chart(path: Path, title: str, series: dict[str, tuple[list, list]], xlabel: str, ylabel: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _serve_worker()
    else:
        print(__doc__)
