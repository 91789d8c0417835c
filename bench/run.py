"""`make bench`: the receiver against the ceiling of its own stack, a burst with the worker running,
then pushes while the inbox holds a million events and /metrics and /admin are read, then each admin
page over an inbox of at least 500,000 events and their orders.

Everything it starts (two gunicorns, a Celery worker, wrk, an in-process sandbox provider) runs on
127.0.0.1 with its own temp dir, SQLite file and Redis namespace, and is stopped on the way out,
Ctrl-C and failures included. See docs/benchmarks.md for the method and the figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from bench import admin_pages, busy, pushes
from bench.variants import VARIANTS
from receiver.migrate import upgrade
from receiver.orders import COMPARED
from receiver.providers import xportcn as spec
from receiver.sandbox import Sandbox, free_port, wait_for
from receiver.sandbox.xportcn import XportcnProvider

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "push.lua"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
CREDS = {
    "load": pushes.Credentials("ak-bench-load", "bench-load-secret-01", "2100000000001", "cb-token-bench-load-0001"),
    "burst": pushes.Credentials("ak-bench-burst", "bench-burst-secret-02", "2100000000002", "cb-token-bench-burst-002"),
    # Sources only the busy inbox's stored events come from: a deployment has several accounts.
    "shop-east": pushes.Credentials("ak-bench-east", "bench-east-secret-03", "2100000000003", "cb-token-bench-east-0003"),
    "shop-west": pushes.Credentials("ak-bench-west", "bench-west-secret-04", "2100000000004", "cb-token-bench-west-0004"),
}
# A push's line in gunicorn's access log (deploy/gunicorn.conf.py's access_log_format).
ACCESS_LINE = re.compile(r'"POST /callbacks/[^"]*" (\d{3}) ')


class Stop(Exception):
    """SIGTERM, turned into an exception so that cleanup runs as it does for Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Stop()


def children(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += parents.get(p, [])
    return found


def peak_rss_mb(pid: int) -> tuple[float, int]:
    """The sum of the peak RSS (VmHWM) of `pid` and its descendants in MB, and how many processes."""
    total_kb, n = 0, 0
    for p in children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
                    n += 1
        except OSError:
            pass
    return total_kb / 1024, n


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds used so far by `pid` and by each of its descendants."""
    used = {}
    for p in children(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        used[p] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return used


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and its descendants."""
    return sum(cpu_by_process(pid).values())


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (everything but idle and iowait), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class Processes:
    """The subprocesses we started, each in its own session, so we stop exactly those."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `cmd` with its output in <logs>/<name>.log."""
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        """What a process wrote so far."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        """TERM the process group we started, KILL it if it lingers."""
        proc = self.started.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        """Stop everything still running, newest first."""
        for name in reversed(list(self.started)):
            self.stop(name)


@dataclass
class Load:
    """What wrk measured in one run."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    wrapped: int
    non200: int
    server_cpu: float = 0.0  # CPU seconds of the server's processes during the run
    wrk_cpu: float = 0.0
    busy_cpu: float = 0.0  # CPU seconds of the whole machine during the run
    busiest: float = 0.0  # the share of the server's CPU its busiest process used

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request: unlike req/s, barely moved by whatever else runs on the machine."""
        return self.server_cpu * 1000 / max(self.requests, 1)

    @property
    def others(self) -> float:
        """Cores used by neither the server nor wrk (Redis, and anything else on the machine)."""
        return max(0.0, self.busy_cpu - self.server_cpu - self.wrk_cpu) / self.seconds

    @classmethod
    def parse(cls, output: str) -> Load:
        line = next((ln for ln in output.splitlines() if ln.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no figures:\n{output}")
        d = json.loads(line[len("BENCH "):])
        errors = d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"]
        return cls(d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1000, d["p90_us"] / 1000, d["p99_us"] / 1000,
                   d["max_us"] / 1000, errors, d["wrapped"], max(d["non200"], d["status_errors"]))

    def line(self) -> str:
        extra = []
        if self.errors:
            extra.append(f"{self.errors} socket errors")
        if self.non200:
            extra.append(f"{self.non200} non-200")
        if self.wrapped:
            extra.append(f"{self.wrapped} replays past the end of the file")
        return (f"{self.rps:6.0f} req/s  p50 {self.p50_ms:5.1f} ms  p99 {self.p99_ms:5.1f} ms  max {self.max_ms:6.1f} ms"
                f"  cpu {self.cpu_ms:.2f} ms/req  others {self.others:.2f} cores"
                + (f"  ({', '.join(extra)})" if extra else ""))


def median_load(loads: list[Load]) -> Load:
    """The run with the median throughput (its latencies and CPU go with it)."""
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


class Bench:
    """One benchmark run: its temp dir, database, sandbox, processes and Redis namespace."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="receiver-bench-"))
        (self.tmp / "logs").mkdir()
        self.procs = Processes(self.tmp / "logs")
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.sandbox = Sandbox().start()
        self.providers = {name: self.sandbox.mount(name, XportcnProvider(c.access_key, c.access_secret, c.user_id))
                          for name, c in CREDS.items()}
        self.admin: Engine | None = None
        self.database_url = self._database(args.database_url)
        self.engine = create_engine(self.database_url)
        self.env = self._environment()
        self.rng = random.Random(args.seed)
        self.results: dict[str, Any] = {}

    # --- set-up and tear-down ---------------------------------------------------------------
    def _database(self, server: str | None) -> str:
        """A fresh, migrated database: a new one on `server` (PostgreSQL), else a SQLite file in the temp dir."""
        if not server:
            url = f"sqlite:///{self.tmp / 'bench.db'}"
        else:
            self.admin = create_engine(server, isolation_level="AUTOCOMMIT")
            self.db_name = f"receiver_bench_{uuid.uuid4().hex[:8]}"
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
            url = make_url(server).set(database=self.db_name).render_as_string(hide_password=False)
        upgrade(url)
        return url

    def _environment(self) -> dict[str, str]:
        """The RECEIVER_* environment the receiver and the worker share."""
        sources = self.tmp / "sources.toml"
        lines = []
        for name, c in CREDS.items():
            lines += [f"[sources.{name}]", 'family = "xportcn"', f'base_url = "{self.sandbox.base_url(name)}"',
                      f'callback_token = "{c.callback_token}"', f'access_key = "{c.access_key}"',
                      f'access_secret = "{c.access_secret}"', f'user_id = "{c.user_id}"',
                      # The sandbox is local: the shared rate limit (10/s by default, for real
                      # providers) would measure the limit, not the receiver.
                      "rate_limit = 1000", "rate_burst = 100", ""]
        sources.write_text("\n".join(lines))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        env.update({
            "RECEIVER_DATABASE_URL": self.database_url,
            "RECEIVER_BROKER_URL": self.args.broker_url,
            "RECEIVER_API_TOKEN": "bench-api-token-0123456789",
            "RECEIVER_SOURCES_FILE": str(sources),
            "RECEIVER_NAMESPACE": self.namespace,
            # The busy inbox stores events up to --busy-inbox-days old; nothing may be purged under it.
            "RECEIVER_RETENTION_DAYS": "3650",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def close(self) -> None:
        """Stop all we started and remove what we created."""
        self.procs.stop_all()
        self.sandbox.stop()
        self.engine.dispose()
        try:
            r = redis.Redis.from_url(self.args.broker_url)
            for key in r.scan_iter(f"{self.namespace}*", count=1000):
                r.delete(key)
            for key in r.scan_iter(f"_kombu.binding.{self.namespace}*"):
                r.delete(key)
        except redis.RedisError:
            pass
        if self.admin is not None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self.admin.dispose()
        if self.args.keep:
            print(f"\nlogs and database kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- processes --------------------------------------------------------------------------
    def gunicorn(self, name: str, app: str) -> str:
        """Start `app` under deploy/gunicorn.conf.py on a free port; return its base URL once it answers."""
        port = free_port()
        env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
        proc = self.procs.start(name, [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), app], env)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.procs.log(name)[-3000:]}")
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200

        wait_for(up, 30, name)
        return url

    def worker(self) -> subprocess.Popen[bytes]:
        """A Celery worker on our queue, configured as the Procfile's."""
        cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--loglevel", "INFO",
               "--concurrency", str(self.args.worker_concurrency), "--queues", self.namespace,
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        proc = self.procs.start("worker", cmd, self.env)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.procs.log('worker')[-3000:]}")
            return "ready." in self.procs.log("worker")

        wait_for(ready, 60, "worker", interval=0.2)
        return proc

    def wrk(self, url: str, file: Path, mode: str, duration: float, connections: int, server: str = "receiver") -> tuple[Load, float]:
        """Run wrk with bench/push.lua against `server`; in "once" mode stop as soon as every push was answered."""
        marker = self.tmp / f"done-{uuid.uuid4().hex[:6]}"
        threads = self.args.wrk_threads
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:.0f}s", "--timeout", "10s",
               "-s", str(LUA), url, "--", str(file), str(threads), mode, str(marker)]
        server_pid = self.procs.started[server].pid
        cpu0, busy0 = cpu_by_process(server_pid), machine_busy_seconds()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        wrk_cpu = 0.0
        try:
            if mode == "once":
                wait_for(lambda: proc.poll() is not None or all(Path(f"{marker}.{i}").exists() for i in range(threads)),
                         duration, "burst sender", interval=0.01)
                elapsed = time.monotonic() - started
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # wrk prints its figures on SIGINT
            while proc.poll() is None and time.monotonic() - started < duration - 0.2 and mode != "once":
                wrk_cpu = cpu_seconds(proc.pid)  # wrk is gone once it printed: sample it while it runs
                time.sleep(0.2)
            out, _ = proc.communicate(timeout=duration + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if mode != "once":
            elapsed = time.monotonic() - started
        load = Load.parse(out.decode(errors="replace"))
        used = [cpu - cpu0.get(pid, 0.0) for pid, cpu in cpu_by_process(server_pid).items()]
        load.server_cpu = sum(used)
        load.busiest = max(used) / load.server_cpu if load.server_cpu else 1.0
        load.busy_cpu = machine_busy_seconds() - busy0
        load.wrk_cpu = wrk_cpu
        return load, elapsed

    # --- 1. throughput against the ceiling --------------------------------------------------
    def load_file(self, name: str, count: int, signed: bool) -> Path:
        """A request file of `count` distinct pushes to the "load" source."""
        path = self.tmp / f"{name}.txt"
        pushes.write(path, pushes.load_pushes("load", CREDS["load"], count, signed, seed=self.rng.randrange(10**6)))
        return path

    def throughput(self) -> None:
        """The bare Flask app and the receiver under the same gunicorn and the same wrk load.

        Both stay up and their runs alternate (ceiling, receiver, ceiling, ...), so that a neighbour
        who loads the machine for a while weighs on both sides of the ratio; medians are reported.
        """
        a = self.args
        conf = runpy.run_path(str(GUNICORN_CONF))
        print(f"gunicorn: {conf['workers']} x {conf['worker_class']}"
              + (f" ({conf['threads']} threads)" if conf["worker_class"] == "gthread" else "")
              + f"; wrk: {a.wrk_threads} thread(s), {a.connections} connections;"
              + f" {a.rounds} rounds of {a.duration:.0f} s per side after {a.warmup:.0f} s of warm-up")
        if a.variant:
            print(f"receiver: variant {a.variant} (bench/variants.py), not the service as it runs")
        started = time.monotonic()
        per_run, warm = int(a.max_rate * (a.duration + 1)), int(a.max_rate * (a.warmup + 1))
        files = {name: self.load_file(name, warm, signed=True) for name in ("warm-ceiling", "warm-receiver")}
        files |= {f"signed-{i}": self.load_file(f"signed-{i}", per_run, signed=True) for i in range(a.rounds)}
        files["unsigned"] = self.load_file("unsigned", per_run, signed=False)
        print(f"  {sum(1 for f in files.values() for _ in f.open())} distinct pushes written"
              f" in {time.monotonic() - started:.1f} s")

        urls = {"ceiling": self.gunicorn("ceiling", "bench.ceiling:app"), "receiver": self.receiver()}
        for name in urls:
            self.wrk(urls[name], files[f"warm-{name}"], "loop", a.warmup, a.connections, server=name)
        runs: dict[str, list[Load]] = {"ceiling": [], "signed": []}
        for i in range(a.rounds):
            # The ceiling gets the very requests the receiver gets next: it keeps no nonces.
            for name, side in (("ceiling", "ceiling"), ("signed", "receiver")):
                label = "ceiling  (bare Flask)" if side == "ceiling" else "receiver (signed)   "
                load = self.balanced(urls[side], files[f"signed-{i}"], side, f"  round {i + 1} {label}")
                runs[name].append(load)
        unsigned = self.balanced(urls["receiver"], files["unsigned"], "receiver", "          receiver (unsigned) ")
        self.results["ceiling_rss"] = peak_rss_mb(self.procs.started["ceiling"].pid)
        self.procs.stop("ceiling")

        ceiling, signed = (median_load(runs[k]) for k in ("ceiling", "signed"))
        ratios = [r.rps / c.rps for c, r in zip(runs["ceiling"], runs["signed"], strict=True)]
        print("  medians (signed pushes: URL token + MD5 signature + nonce, each push distinct):")
        print(f"    ceiling   {ceiling.rps:6.0f} req/s   p50 {ceiling.p50_ms:5.1f} ms   p99 {ceiling.p99_ms:5.1f} ms"
              f"   cpu {ceiling.cpu_ms:.2f} ms/req")
        print(f"    receiver  {signed.rps:6.0f} req/s   p50 {signed.p50_ms:5.1f} ms   p99 {signed.p99_ms:5.1f} ms"
              f"   cpu {signed.cpu_ms:.2f} ms/req")
        ratio = statistics.median(ratios)
        print(f"    ratio receiver/ceiling {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.60);"
              f" by CPU per request {ceiling.cpu_ms / signed.cpu_ms:.2f}")
        print(f"    receiver ack p99 {signed.p99_ms:.1f} ms at that load (target < 50 ms)")
        self.results.update(ceiling=ceiling, signed=signed, unsigned=unsigned, ratio=ratio)
        # No worker ran: drop the queued tasks so that the burst's worker starts on an empty queue.
        redis.Redis.from_url(a.broker_url).delete(self.namespace)

    def balanced(self, url: str, file: Path, server: str, label: str, tries: int = 3) -> Load:
        """A throughput run in which wrk's connections reached every gunicorn process; print it.

        gunicorn's processes race to accept wrk's 16 keep-alive connections, and now and then one
        process wins them all and the run measures one core instead of two: the ceiling swung between
        1,400 and 3,700 req/s from round to round. Such a run is printed, set aside and run again, on
        fresh pushes for the receiver (it refuses replayed nonces).
        """
        processes = int(runpy.run_path(str(GUNICORN_CONF))["workers"])
        for attempt in range(tries):
            load, _ = self.wrk(url, file, "loop", self.args.duration, self.args.connections, server=server)
            print(f"{label} {load.line()}")
            if processes == 1 or load.busiest < 0.75 or attempt == tries - 1:
                break
            print(f"{' ' * len(label)}   one process took {load.busiest:.0%} of the work: run again")
            if server == "receiver":
                file = self.load_file(f"{file.stem}-again-{attempt}", int(self.args.max_rate * (self.args.duration + 1)), signed="unsigned" not in file.stem)
        return load

    def receiver(self) -> str:
        """The receiver's gunicorn, started once and kept for the burst."""
        if "receiver" not in self.procs.started:
            variant = self.args.variant
            self.receiver_url = self.gunicorn("receiver", f"bench.variants:build({variant!r})" if variant else "wsgi:app")
        return self.receiver_url

    # --- 2. the burst with the worker running -----------------------------------------------
    def burst(self) -> None:
        """10 pushes for each of 1,000 orders, as fast as wrk sends them, then wait for the truth."""
        a = self.args
        url = self.receiver()
        provider = self.providers["burst"]
        plan = pushes.burst(provider, "burst", CREDS["burst"], a.orders, a.per_order, a.duplicates, a.window, self.rng)
        file = self.tmp / "burst.txt"
        pushes.write(file, plan.pushes)
        truth = {oid: spec._alibaba_order(provider.order(oid)) for oid in plan.orders}  # the worker's own mapping
        self.worker()
        print(f"burst: {len(plan.pushes)} pushes over {len(plan.orders)} orders ({len(plan.distinct_bodies)} distinct, "
              f"{plan.duplicates} redelivered, {plan.out_of_order} out of order), {a.burst_connections} connections, "
              f"worker: Celery prefork x {a.worker_concurrency}")
        self.sandbox.calls.clear()
        started = time.monotonic()
        load, sent_in = self.wrk(url, file, "once", a.burst_timeout, a.burst_connections)
        print(f"  sent in {sent_in:.1f} s; ack p50 {load.p50_ms:.1f} ms   p99 {load.p99_ms:.1f} ms   max {load.max_ms:.1f} ms"
              f"   (target p99 < 200 ms)" + (f"; {load.non200} non-200, {load.errors} socket errors" if load.non200 or load.errors else ""))
        true_after = self.wait_for_truth(truth, started, a.burst_timeout)
        if true_after is None:
            mismatched = len(self.mismatched(truth))
            print(f"  NOT every order equals the provider's truth after {a.burst_timeout:.0f} s ({mismatched} still differ)")
        else:
            print(f"  every order equals the provider's truth {true_after:.1f} s after the first push (target < 60 s)")
        drained = self.wait_for_drain(a.drain_timeout)
        per_order = [self.sandbox.fetches(oid) for oid in plan.orders]
        print(f"  re-fetches: {sum(per_order)} ({sum(per_order) / len(per_order):.2f} per order, max {max(per_order)};"
              f" target <= 2 per order)" + ("" if drained else f"; queue not drained after {a.drain_timeout:.0f} s more"))
        lost, stored = self.lost(plan)
        print(f"  pushes lost: {lost}   (stored {stored} of {len(plan.distinct_bodies)} distinct; "
              f"{load.non200} answered other than 200)")
        self.results.update(burst=load, true_after=true_after, refetches=per_order, lost=lost)

    def ours(self) -> dict[str, tuple[Any, ...]]:
        """Our copy of every burst order, as the fields the burst compares."""
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT provider_order_id, {', '.join(COMPARED)} FROM orders WHERE source = 'burst'"))
            return {r[0]: tuple(r[1:]) for r in rows}

    def mismatched(self, truth: dict[str, Any]) -> list[str]:
        """The burst orders whose copy differs from the provider's."""
        ours = self.ours()
        return [oid for oid, snap in truth.items() if ours.get(oid) != tuple(getattr(snap, f) for f in COMPARED)]

    def wait_for_truth(self, truth: dict[str, Any], started: float, timeout: float) -> float | None:
        """Seconds from `started` until every order equals the provider's, or None after `timeout`."""
        while time.monotonic() - started < timeout:
            if not self.mismatched(truth):
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def wait_for_drain(self, timeout: float) -> bool:
        """Wait until no burst event waits for a worker, so that every re-fetch it causes is counted."""
        def drained() -> bool:
            with self.engine.connect() as conn:
                return not conn.execute(text(
                    "SELECT 1 FROM events WHERE source = 'burst' AND status IN ('received', 'queued', 'failed') LIMIT 1"
                )).first()

        try:
            wait_for(drained, timeout, "queue", interval=0.2)
        except TimeoutError:
            return False
        return True

    def lost(self, plan: pushes.Burst) -> tuple[int, int]:
        """Distinct pushes of the burst absent from the inbox (whatever their answer), and how many are there."""
        with self.engine.connect() as conn:
            stored = {hashlib.sha256(r[0]).hexdigest() for r in conn.execute(text("SELECT body FROM events WHERE source = 'burst'"))}
        return len(plan.distinct_bodies - stored), len(plan.distinct_bodies & stored)

    # --- 3. the busy inbox ------------------------------------------------------------------
    def busy_inbox(self) -> None:
        """Signed pushes at the throughput part's load while the inbox holds a million events and a
        thread loads /metrics and the admin inbox page every few seconds, timing each read."""
        a = self.args
        if "worker" in self.procs.started:
            # No worker, as in the throughput part: what is measured is the web path, now beside reads.
            self.results["worker_rss"] = peak_rss_mb(self.procs.started["worker"].pid)
            self.procs.stop("worker")
        print(f"  filling the inbox: {a.busy_inbox_events:,} events over {len(CREDS)} sources, received over the last"
              f" {a.busy_inbox_days:g} days", flush=True)
        started = time.monotonic()
        # Progress on a terminal only: a log of the run keeps the result line alone.
        progress = (lambda n: print(f"\r    {n:,} in {time.monotonic() - started:.0f} s", end="", flush=True)) if sys.stdout.isatty() else None
        busy.fill(self.engine, a.busy_inbox_events, tuple(CREDS), a.busy_inbox_days, progress)
        filled_in = time.monotonic() - started
        with self.engine.connect() as conn:
            held = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        print(f"\r  {a.busy_inbox_events:,} events filled in {filled_in:.1f} s; the inbox holds {held:,}"
              + (" (VACUUM ANALYZE and CHECKPOINT included)" if self.engine.dialect.name == "postgresql" else ""))
        fresh = "receiver" not in self.procs.started
        url = self.receiver()
        if fresh:  # as the throughput part warms its servers up
            self.wrk(url, self.load_file("warm-busy", int(a.max_rate * (a.warmup + 1)), signed=True), "loop", a.warmup, a.connections)
        print(f"  {a.busy_inbox_duration:.0f} s of signed pushes per run (wrk: {a.wrk_threads} thread(s), {a.connections} connections);"
              f" in the runs with reads, /metrics and /admin/ each read every {a.busy_inbox_interval:g} s by another thread")
        runs: list[tuple[Load, int, list[busy.Read]]] = []
        for i in range(a.busy_inbox_rounds):
            # Each round also runs without reads, just before: on a shared machine the neighbours move
            # the p99 as much as the reads do, and a run beside it tells the two apart.
            for reading in (False, True):
                load, non2xx, reads = self.busy_run(url, reading)
                label = f"  round {i + 1} " + ("with reads   " if reading else "without reads")
                print(f"{label} {load.line()}")
                print(f"{' ' * len(label)}   ack p50 / p99 / max {load.p50_ms:.1f} / {load.p99_ms:.1f} / {load.max_ms:.1f} ms;"
                      f" non-2xx {non2xx}")
                for name in ("/metrics", "/admin/") if reading else ():
                    print(f"{' ' * len(label)}   {busy.summary(reads, name)}")
                if reading:
                    runs.append((load, non2xx, reads))
        p99 = statistics.median(load.p99_ms for load, _, _ in runs)
        non2xx = sum(n for _, n, _ in runs)
        print(f"  with reads: ack p99 {p99:.1f} ms (median of {len(runs)} run(s); target < 50 ms: {'met' if p99 < 50 else 'NOT met'});"
              f" non-2xx {non2xx} (target 0: {'met' if non2xx == 0 else 'NOT met'})")
        self.results.update(busy=runs, busy_fill_s=filled_in)

    def busy_run(self, url: str, reading: bool) -> tuple[Load, int, list[busy.Read]]:
        """One run of the busy inbox's pushes, with or without the reads; the pushes answered other
        than 2xx are counted from gunicorn's access log (wrk counts only 4xx and 5xx, as errors)."""
        a = self.args
        file = self.load_file("busy", int(a.max_rate * (a.busy_inbox_duration + 1)), signed=True)
        bearer = {"Authorization": f"Bearer {self.env['RECEIVER_API_TOKEN']}"}
        pages = {"/metrics": ("/metrics", bearer), "/admin/": ("/admin/", bearer)} if reading else {}
        log_from = len(self.procs.log("receiver"))
        reader = busy.Reader(url, pages, a.busy_inbox_interval, until=a.busy_inbox_duration - 1).start()
        try:
            load, _ = self.wrk(url, file, "loop", a.busy_inbox_duration, a.connections)
        finally:
            reads = reader.stop()
        codes = [m.group(1) for m in ACCESS_LINE.finditer(self.procs.log("receiver")[log_from:])]
        non2xx = sum(not code.startswith("2") for code in codes) + load.errors
        return load, non2xx, reads

    # --- 4. the admin pages over a large inbox ----------------------------------------------
    def admin_pages(self) -> None:
        """Each admin page read while the inbox holds --admin-events events and their orders, no pushes."""
        a = self.args
        with self.engine.connect() as conn:
            held = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        started = time.monotonic()
        if held < a.admin_events:
            busy.fill(self.engine, a.admin_events - held, tuple(CREDS), a.busy_inbox_days)
            held = a.admin_events
        orders = held // 5  # as busy.py names them: an order gets about five events
        written = admin_pages.fill_orders(self.engine, orders, tuple(CREDS), a.busy_inbox_days)
        admin_pages.fill_charts(a.broker_url, self.namespace, tuple(CREDS))
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        print(f"  {held:,} events, {orders:,} orders with {orders * 2:,} lines and {written:,} changes over"
              f" {a.busy_inbox_days:g} days, and a day of chart counts, filled in {time.monotonic() - started:.0f} s")
        url = self.receiver()
        k = orders - 10  # a recent order: its page, and its order no for the search
        pid = admin_pages.order_id(k - k % 10)  # one with a price correction
        pages = {
            "front page (charts)": "/admin/",
            "orders, newest change": "/admin/orders",
            "orders, status + since": "/admin/orders?status=closed&since=7d",
            "orders, one source, p.50": "/admin/orders?source=shop-west&page=50",
            "search by order no": f"/admin/orders?q=N{k - k % 10:012d}",
            "order page": f"/admin/orders/{self.order_source(pid)}/{pid}",
            "changes, 24 h": "/admin/changes",
            "changes CSV, 24 h": "/admin/changes.csv",
            "changes, 7 d": "/admin/changes?since=7d",
            "events (inbox), dead": "/admin/events?status=dead",
        }
        timings = admin_pages.time_pages(url, self.env["RECEIVER_API_TOKEN"], pages, a.admin_reads)
        print(f"  {a.admin_reads} sequential reads of each page, after one warm-up read, with nothing else running:")
        for name, ms in timings.items():
            print(f"  {admin_pages.line(name, ms, 200)}")
        self.results["admin_pages"] = timings

    def order_source(self, pid: str) -> str:
        """The source an order was filled under."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT source FROM orders WHERE provider_order_id = :p"), {"p": pid}).scalar_one()

    # --- 5. memory --------------------------------------------------------------------------
    def memory(self) -> None:
        """Peak RSS of the web and worker processes (each process's own peak, summed)."""
        for name, label in (("receiver", "web (gunicorn master + workers)"), ("worker", "worker (Celery main + children)")):
            if name in self.procs.started or f"{name}_rss" in self.results:
                mb, n = peak_rss_mb(self.procs.started[name].pid) if name in self.procs.started else self.results[f"{name}_rss"]
                print(f"  {label:34s} {mb:6.0f} MB over {n} processes")
                self.results[f"{name}_rss"] = (mb, n)
        if "ceiling_rss" in self.results:
            mb, n = self.results["ceiling_rss"]
            print(f"  {'ceiling (bare Flask, for scale)':34s} {mb:6.0f} MB over {n} processes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5, help="seconds of each measured throughput run")
    p.add_argument("--rounds", type=int, default=3, help="alternating ceiling/receiver runs")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each server's first run")
    p.add_argument("--connections", type=int, default=16, help="wrk connections for the throughput runs")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1 leaves the 2 cores to the server)")
    p.add_argument("--max-rate", type=float, default=5000, help="pushes per second the request files are sized for")
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--per-order", type=int, default=10, help="pushes per order in the burst")
    p.add_argument("--duplicates", type=int, default=3, help="of those, redeliveries of an earlier push")
    p.add_argument("--window", type=int, default=50, help="pushes shuffled together (out of order, interleaved)")
    p.add_argument("--burst-connections", type=int, default=16)
    p.add_argument("--burst-timeout", type=float, default=60, help="seconds to wait for every order to be true (the target)")
    p.add_argument("--drain-timeout", type=float, default=30, help="further seconds to wait for the queue to drain")
    p.add_argument("--worker-concurrency", type=int, default=2, help="as the Procfile's worker")
    p.add_argument("--database-url", help="a PostgreSQL server URL to bench on (a new database is made); default SQLite")
    p.add_argument("--broker-url", default=os.environ.get("RECEIVER_BROKER_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--variant", choices=VARIANTS, help="the receiver with a part of its callback path taken out"
                   " (bench/variants.py), to price that part; throughput only")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-burst", action="store_true")
    p.add_argument("--skip-busy-inbox", action="store_true")
    p.add_argument("--busy-inbox-events", type=int, default=1_000_000, help="events stored before the busy inbox's pushes")
    p.add_argument("--busy-inbox-days", type=float, default=25, help="the stored events' received_at spread over this many days")
    p.add_argument("--busy-inbox-duration", type=float, default=30, help="seconds of pushes in the busy inbox")
    p.add_argument("--busy-inbox-interval", type=float, default=5, help="seconds between two reads of /metrics (and of /admin/)")
    p.add_argument("--busy-inbox-rounds", type=int, default=1, help="busy inbox runs with reads, each after one without")
    p.add_argument("--skip-admin-pages", action="store_true")
    p.add_argument("--admin-events", type=int, default=500_000, help="events in the inbox (at least) when the admin pages are read")
    p.add_argument("--admin-reads", type=int, default=20, help="reads of each admin page")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures; 1 when a part could not run."""
    args = parse_args(argv)
    if args.variant:
        args.skip_burst = True  # a variant drops work a push needs: the burst would never come true
        args.skip_busy_inbox = True  # and the busy inbox is about the service as it runs
        args.skip_admin_pages = True
    if not (args.skip_throughput and args.skip_burst and args.skip_busy_inbox) and shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk; `make bench` does it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}, Python {sys.version.split()[0]}")
    bench = Bench(args)
    try:
        print(f"database: {make_url(bench.database_url).get_backend_name()}, Redis namespace {bench.namespace}")
        if not args.skip_throughput:
            print("\n1. throughput: the receiver against the ceiling of its stack")
            bench.throughput()
        if not args.skip_burst:
            print(f"\n2. burst: {args.orders * args.per_order} pushes with the worker running against the loopback provider")
            bench.burst()
        if not args.skip_busy_inbox:
            print(f"\n3. busy inbox: pushes while the inbox holds {args.busy_inbox_events:,} events and /metrics and /admin are read")
            bench.busy_inbox()
        if not args.skip_admin_pages:
            print(f"\n4. admin pages: each read while the inbox holds at least {args.admin_events:,} events and their orders")
            bench.admin_pages()
        if not args.variant:  # a variant's memory is not the service's
            print("\n5. peak memory (RSS)")
            bench.memory()
    except (KeyboardInterrupt, Stop):
        print("\ninterrupted: stopping what the benchmark started", file=sys.stderr)
        return 130
    finally:
        bench.close()
    print(f"\nbenchmark took {time.monotonic() - started:.0f} s")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
