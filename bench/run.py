"""The serving benchmark: wrk on loopback against four servers, all on the same machine.

1. service   this service under gunicorn (service/gunicorn_conf.py) with the trained model;
2. bare      the bare framework: Flask on the same gunicorn settings, the same JSON body
             parsed, a constant answer (bare.py): the reference of the overhead target;
3. constant  the service with a constant prediction instead of the model (constant.py): the
             model's share;
4. baseline  Flask's development server calling Keras model.predict per request (baseline.py).

service, bare and constant run side by side and are loaded in turn, round after round, so a
busy moment of the (shared) machine touches all three alike; each figure is the median of the
rounds. For each: requests per second, p50 and p99 latency at concurrency 1 and 32 (one row
per request, in TF Serving's row format keyed by feature name). For the service also: the
slow-client scenario (ordinary clients at concurrency 32 while 200 connections stall or
trickle, bench/slow_clients.py, against the same with none), the server-side p50 of a
1024-row request (its Server-Timing header), the cold start (process start to /readyz 200)
and the memory of each worker. Prints a report and writes it to bench/RESULTS.md (unless
--no-write), next to the hand-written notes kept there.

    .venv/bin/python -m bench.run [--model-dir DIR] [--duration 10] [--rounds 5] ...
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
MARKER = "<!-- bench/run.py writes below this line; the notes above are kept -->"
TARGETS = {"ratio_bare": 0.9, "ratio_constant": 0.85, "ratio_baseline": 50.0, "p99_ms": 15.0,
           "slow_p99_ratio": 2.0, "batch_p50_ms": 5.0, "cold_start_s": 1.0, "rss_mb": 150.0}
SLOW_CLIENTS = 200
# Headers within gunicorn's keepalive (5 s), then the body within BODY_TIMEOUT (10 s); 1 s
# for the scheduling of a busy machine.
SLOW_HELD_S = 5 + 10 + 1
# wrk's Lua hooks: POST the body, and print the figures as one JSON line at the end.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, ' ..
    '"timeouts": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, timeout=10.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen, timeout: float) -> float:
    """Seconds from now until /readyz answers 200 (polled every 5 ms)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        try:
            status, _, body = request(port, "GET", "/readyz", timeout=1)
        except OSError:
            status, body = None, b""
        if status == 200:
            return time.perf_counter() - started
        if b'"failed"' in body:  # the model will never load
            raise RuntimeError(body.decode())
        time.sleep(0.005)
    raise RuntimeError(f"not ready after {timeout} s")


class Server:
    """One server process on a free port, stopped with SIGTERM (then killed) on exit."""

    def __init__(self, label: str, command: list[str], env: dict, ready_timeout=60.0):
        self.label, self.port = label, free_port()
        self.log = tempfile.TemporaryFile()
        self.runtime_dir = tempfile.TemporaryDirectory(prefix="bench-")
        env = {**os.environ, **env, "PORT": str(self.port),
               "XDG_RUNTIME_DIR": self.runtime_dir.name}
        command = [part.replace("{port}", str(self.port)) for part in command]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        try:
            self.cold_start = time.perf_counter() - started + wait_ready(
                self.port, self.process, ready_timeout)
        except RuntimeError:
            self.stop()
            self.log.seek(0)
            sys.exit(f"{label}: {sys.exc_info()[1]}\n{self.log.read().decode()[-3000:]}")

    def worker_memory(self) -> list[dict]:
        """RSS and PSS (shared pages split between the processes) of each worker, in MB."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split() or [str(self.process.pid)]
        memory = []
        for pid in pids:
            fields = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) / 1024
            memory.append({"pid": int(pid), "rss_mb": round(fields["Rss"], 1),
                           "pss_mb": round(fields["Pss"], 1)})
        return memory

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the server's processes have used so far."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        total = 0
        for pid in [str(self.process.pid), *children.read_text().split()]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.runtime_dir.cleanup()


def wrk(server: Server, path: str, body_file: Path, connections: int, seconds: int) -> dict:
    """One wrk run; with the server's CPU time per request (less sensitive than requests/s to
    what else runs on a shared machine)."""
    cpu = server.cpu_seconds()
    result = _wrk(server.port, path, body_file, connections, seconds)
    result["cpu_us"] = (server.cpu_seconds() - cpu) / max(result["requests"], 1) * 1e6
    return result


def _wrk(port: int, path: str, body_file: Path, connections: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        threads = min(connections, 2)
        output = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", script.name, f"http://127.0.0.1:{port}{path}"],
            env={**os.environ, "BENCH_BODY": str(body_file)}, capture_output=True, text=True,
            check=True).stdout
    finally:
        os.unlink(script.name)
    result = json.loads(output.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    result["errors"] = sum(result[key] for key in ("connect_errors", "read_errors",
                                                   "write_errors", "status_errors", "timeouts"))
    return result


def rows(schema: dict, example: dict, count: int, seed: int = 0) -> list[dict]:
    """`count` rows around the example, each value kept inside its feature's range."""
    generator = random.Random(seed)
    out = []
    for _ in range(count):
        row = {}
        for feature in schema["features"]:
            value = example[feature["name"]] * generator.uniform(0.8, 1.2)
            low, high = feature["minimum"], feature["maximum"]
            value = min(max(value, low if low is not None else value),
                        high if high is not None else value)
            row[feature["name"]] = round(value) if feature["dtype"] == "int" else value
        out.append(row)
    return out


def batch_latency(port: int, path: str, body: bytes, count: int) -> dict:
    """p50 of the server's own time (Server-Timing) and of the client's round trip."""
    server, client = [], []
    for _ in range(count):
        started = time.perf_counter()
        status, headers, _ = request(port, "POST", path, body)
        client.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"the 1024-row request answered {status}")
        server.append(float(headers["Server-Timing"].split("dur=")[1]))
    return {"server_p50_ms": statistics.median(server),
            "client_p50_ms": statistics.median(client)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(memory) / 2**20),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_before": os.getloadavg()}


def service_command(app: str, extra: list[str]) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "service/gunicorn_conf.py",
            *extra, app]


def median_run(runs: list[dict]) -> dict:
    """The run of median throughput among the rounds (its latencies come with it)."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def show(label: str, run: dict) -> None:
    print(f"    {label}: {run['rps']:.0f} rps, p50 {run['p50_us'] / 1000:.2f} ms, p99 "
          f"{run['p99_us'] / 1000:.2f} ms, {run['errors']} errors, server CPU "
          f"{run['cpu_us']:.0f} us a request", file=sys.stderr, flush=True)


def slow_clients(server: Server, path: str, body: Path, rounds: int, seconds: int) -> dict:
    """Ordinary clients (wrk, 32 connections) with no slow client, then while SLOW_CLIENTS
    connections stall or trickle; alternated `rounds` times."""
    from bench.slow_clients import SlowClients
    idle, slow, held, memory = [], [], {}, []
    for _ in range(rounds):
        idle.append(wrk(server, path, body, 32, seconds))
        show("c=32, no slow clients", idle[-1])
        with SlowClients(server.port, SLOW_CLIENTS) as clients:
            clients.wait_open()
            slow.append(wrk(server, path, body, 32, seconds))
            slow[-1]["slow_open"] = clients.open
            memory.append(server.worker_memory())
            summary = clients.summary()
        show(f"c=32, {SLOW_CLIENTS} slow clients", slow[-1])
        for kind, figures in summary.items():
            held.setdefault(kind, {"closed": 0, "max_held_s": 0.0})
            held[kind]["closed"] += figures["closed"]
            held[kind]["max_held_s"] = max(held[kind]["max_held_s"], figures["max_held_s"] or 0)
    return {"idle": median_run(idle), "slow": median_run(slow), "held": held,
            "max_rss_mb": max(worker["rss_mb"] for workers in memory for worker in workers)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path,
                        default=Path(os.environ.get("MODEL_DIR") or "artifacts"))
    parser.add_argument("--model-name", default=os.environ.get("MODEL_NAME") or "model")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="alternated runs per figure")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    servers = ["service", "bare", "constant", "baseline"]
    parser.add_argument("--only", choices=servers, nargs="+", default=servers)
    parser.add_argument("--gunicorn-args", default="",
                        help="extra gunicorn options for service, bare and constant (to "
                             "compare settings), e.g. '--worker-class sync'")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    model_dir = args.model_dir.resolve()
    if not (model_dir / "manifest.json").is_file() or not (model_dir / "model.tflite").is_file():
        sys.exit(f"no trained model in {model_dir}: run `make train` first")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (`make provision` installs it)")
    manifest = json.loads((model_dir / "manifest.json").read_text())

    sys.path.insert(0, str(ROOT))
    from service.predictor import Predictor
    example = Predictor(model_dir).example()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    one_row = work / "one_row.json"
    one_row.write_text(json.dumps({"instances": [example]}))
    batch = rows(manifest["schema"], example, 1024)
    names = [feature["name"] for feature in manifest["schema"]["features"]]
    batch_bodies = {"named": json.dumps({"instances": batch}).encode(),
                    "lists": json.dumps({"instances": [[row[name] for name in names]
                                                       for row in batch]}).encode()}
    path = f"/v1/models/{args.model_name}:predict"
    env = {"MODEL_DIR": str(model_dir), "MODEL_NAME": args.model_name}
    extra = args.gunicorn_args.split()
    commands = {
        "service": service_command("service:create_app()", extra),
        "bare": service_command("bench.bare:create_app()", extra),
        "constant": service_command("bench.constant:create_app()", extra),
        "baseline": [str(ROOT / ".venv" / "bin" / "python"), "bench/baseline.py",
                     str(model_dir), "{port}"],
    }
    report = {"machine": machine(), "settings": args.gunicorn_args or "service/gunicorn_conf.py",
              "duration_s": args.duration, "rounds": args.rounds, "servers": {}}
    alternated = [label for label in args.only if label != "baseline"]
    running = {}
    try:
        for label in alternated:
            running[label] = Server(label, commands[label], env)
        runs = {label: {c: [] for c in args.concurrency} for label in alternated}
        for round_ in range(args.rounds):
            for connections in args.concurrency:
                for label in alternated:
                    runs[label][connections].append(
                        wrk(running[label], path, one_row, connections, args.duration))
                    show(f"round {round_ + 1}, {label}, c={connections}",
                         runs[label][connections][-1])
        for label in alternated:
            report["servers"][label] = {"runs": {c: median_run(runs[label][c])
                                                 for c in args.concurrency},
                                        "rounds": runs[label]}
        for label in alternated:
            if label != "service":
                running.pop(label).stop()
        if "service" in running:
            server = running["service"]
            figures = report["servers"]["service"]
            figures["memory"] = server.worker_memory()
            print("==> service: slow clients", file=sys.stderr, flush=True)
            figures["slow_clients"] = slow_clients(server, path, one_row, args.rounds,
                                                   args.duration)
            figures["batch_1024"] = {kind: batch_latency(server.port, path, body, 200)
                                     for kind, body in batch_bodies.items()}
            colds = [server.cold_start]
            running.pop("service").stop()
            for _ in range(4):
                again = Server("service", commands["service"], env)
                colds.append(again.cold_start)
                again.stop()
            figures["cold_start_s"] = statistics.median(colds)
            figures["cold_starts_s"] = colds
    finally:
        for server in running.values():
            server.stop()
    if "baseline" in args.only:
        print("==> baseline", file=sys.stderr, flush=True)
        server = Server("baseline", commands["baseline"], env)
        try:
            report["servers"]["baseline"] = {"runs": {}}
            for connections in args.concurrency:
                run = wrk(server, path, one_row, connections, args.duration)
                report["servers"]["baseline"]["runs"][connections] = run
                show(f"baseline, c={connections}", run)
        finally:
            server.stop()
    report["machine"]["load_after"] = os.getloadavg()
    shutil.rmtree(work)
    text = render(report, args.concurrency)
    print(text)
    if not args.no_write:
        write_results(text)
    return 0


def render(report: dict, concurrency: list[int]) -> str:
    m = report["machine"]
    lines = [f"## Measured {m['date']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
             f"{m['kernel']}, Python {m['python']}. Load average before "
             f"{'/'.join(f'{x:.2f}' for x in m['load_before'])}, after "
             f"{'/'.join(f'{x:.2f}' for x in m['load_after'])} (1/5/15 min; the machine is "
             f"shared). wrk on loopback, {report['duration_s']} s per run, one row per request "
             f"(row format, keyed by feature name); service, bare and constant alternated, "
             f"median of {report['rounds']} rounds (a ratio: the median of the rounds' "
             f"ratios). gunicorn: {report['settings']}.", "",
             "| server | concurrency | requests/s | p50 ms | p99 ms | errors | server CPU us "
             "a request |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    servers = report["servers"]
    for label, figures in servers.items():
        for connections in concurrency:
            run = figures["runs"][connections]
            lines.append(f"| {label} | {connections} | {run['rps']:.0f} | "
                         f"{run['p50_us'] / 1000:.2f} | {run['p99_us'] / 1000:.2f} | "
                         f"{run['errors']} | {run['cpu_us']:.0f} |")
    service = servers.get("service")
    if service and "slow_clients" in service:
        slow = service["slow_clients"]
        lines += ["", f"Slow clients: the service, wrk at 32 connections, with no other client "
                      f"and while {SLOW_CLIENTS} connections (a quarter each: headers never "
                      f"finished, headers at one byte a second, body stalled after one byte, "
                      f"body at one byte a second; each reopened when the server closes it) "
                      f"are held open:", "",
                  "| ordinary clients | requests/s | p50 ms | p99 ms | errors |",
                  "| --- | --- | --- | --- | --- |"]
        for label, run in (("alone", slow["idle"]), (f"with {SLOW_CLIENTS} slow", slow["slow"])):
            lines.append(f"| {label} | {run['rps']:.0f} | {run['p50_us'] / 1000:.2f} | "
                         f"{run['p99_us'] / 1000:.2f} | {run['errors']} |")
        lines += ["", "| slow connection | closed by the server | longest held open s |",
                  "| --- | --- | --- |"]
        for kind, figures in slow["held"].items():
            lines.append(f"| {kind} | {figures['closed']} | {figures['max_held_s']:.1f} |")
    lines += ["", "| target | figure | met |", "| --- | --- | --- |"]
    top = max(concurrency)

    def check(name: str, figure: float, target: float, text: str, higher=True):
        met = figure >= target if higher else figure <= target
        lines.append(f"| {name} | {text} | {'yes' if met else '**no**'} |")

    if service:
        if "bare" in servers:
            for connections in concurrency:
                ratio, text = paired_ratio(service, servers["bare"], connections, "rps")
                check(f"throughput at c={connections} >= {TARGETS['ratio_bare']} x bare Flask",
                      ratio, TARGETS["ratio_bare"], text)
            # What the throughput at saturation follows on a machine of its own; steadier
            # than requests/s on a shared one.
            ratio, text = paired_ratio(servers["bare"], service, top, "cpu_us")
            check(f"server CPU a request at c={top}, bare / service >= {TARGETS['ratio_bare']}",
                  ratio, TARGETS["ratio_bare"], text)
        rps = service["runs"][top]["rps"]
        if "constant" in servers:
            ratio, text = paired_ratio(service, servers["constant"], top, "rps")
            check(f"throughput at c={top} >= {TARGETS['ratio_constant']} x constant model",
                  ratio, TARGETS["ratio_constant"], text)
        if "baseline" in servers:
            ratio = rps / servers["baseline"]["runs"][top]["rps"]
            check(f"throughput at c={top} >= {TARGETS['ratio_baseline']:g} x baseline", ratio,
                  TARGETS["ratio_baseline"], f"{ratio:.0f} x")
        p99 = service["runs"][top]["p99_us"] / 1000
        check(f"p99 at c={top} <= {TARGETS['p99_ms']:g} ms", p99, TARGETS["p99_ms"],
              f"{p99:.2f} ms", higher=False)
        if "slow_clients" in service:
            slow = service["slow_clients"]
            ratio = slow["slow"]["p99_us"] / slow["idle"]["p99_us"]
            check(f"p99 with {SLOW_CLIENTS} slow clients <= {TARGETS['slow_p99_ratio']:g} x "
                  f"without, no error", ratio if slow["slow"]["errors"] == 0 else float("inf"),
                  TARGETS["slow_p99_ratio"], f"{ratio:.2f} x, {slow['slow']['errors']} errors",
                  higher=False)
            longest = max(figures["max_held_s"] for figures in slow["held"].values())
            check(f"slow connections closed within {SLOW_HELD_S} s", longest, SLOW_HELD_S,
                  f"{longest:.1f} s", higher=False)
            check(f"RSS per worker with slow clients <= {TARGETS['rss_mb']:g} MB",
                  slow["max_rss_mb"], TARGETS["rss_mb"], f"{slow['max_rss_mb']:.0f} MB",
                  higher=False)
        for kind, figures in service.get("batch_1024", {}).items():
            check(f"1024 rows ({kind}), server-side p50 <= {TARGETS['batch_p50_ms']:g} ms",
                  figures["server_p50_ms"], TARGETS["batch_p50_ms"],
                  f"{figures['server_p50_ms']:.2f} ms (round trip "
                  f"{figures['client_p50_ms']:.2f} ms)", higher=False)
        if "cold_starts_s" in service:
            cold = service["cold_start_s"]
            check(f"cold start to /readyz 200 <= {TARGETS['cold_start_s']:g} s", cold,
                  TARGETS["cold_start_s"], f"{cold:.2f} s (median of "
                  f"{', '.join(f'{x:.2f}' for x in service['cold_starts_s'])})", higher=False)
        if "memory" in service:
            worst = max(worker["rss_mb"] for worker in service["memory"])
            check(f"RSS per worker <= {TARGETS['rss_mb']:g} MB", worst, TARGETS["rss_mb"],
                  ", ".join(f"{w['rss_mb']:.0f} MB (PSS {w['pss_mb']:.0f})"
                            for w in service["memory"]), higher=False)
    return "\n".join(lines) + "\n"


def paired_ratio(first: dict, second: dict, connections: int, figure: str) -> tuple:
    """The median over the rounds of first's figure / second's, each round's two runs loaded
    back to back: a busy moment of the shared machine falls on both of a pair, rarely on
    both servers' median runs (requests/s moved by half between rounds of one server)."""
    pairs = zip(first["rounds"][connections], second["rounds"][connections])
    ratios = [a[figure] / b[figure] for a, b in pairs]
    ratio = statistics.median(ratios)
    return ratio, f"{ratio:.2f} x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"


def write_results(text: str) -> None:
    notes = RESULTS.read_text().split(MARKER)[0] if RESULTS.exists() else "# Benchmark results\n\n"
    RESULTS.write_text(notes.rstrip("\n") + "\n\n" + MARKER + "\n\n" + text)


if __name__ == "__main__":
    sys.exit(main())
