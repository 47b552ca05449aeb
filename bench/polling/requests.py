#!/usr/bin/env python3
"""CPU per long-polling request, gateway binaries side by side (docs/benchmarks.md,
"Long-polling parked outside Pingora").

Usage: bench/polling/requests.py LABEL=BINARY [LABEL=BINARY ...]
  BENCH_REQUESTS  requests per run (default 3000)
  BENCH_ROUNDS    rounds; each round runs every binary once, in turn (default 3)

Each run starts the binary fresh (embedded store in a temporary directory, access log off), opens
one visitor's raw long-polling session and sends BENCH_REQUESTS requests one after the other on
one kept-alive HTTP/1.1 connection: `POST ?sid` submitting a `typing` command (answered at once,
in the POST's answer; with no conversation yet, a `bad_request` answer: nothing is stored, so the
store is out of the figure). A parked connection goes through a whole park and return on every
one of them, the case that costs the most. It prints requests per second and the
gateway's CPU time (utime + stime from /proc/PID/stat) per request, for each run and the median
per binary.
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(binary, requests):
    port, metrics = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        env = dict(
            os.environ,
            CHAT_HTTP_LISTEN=f"127.0.0.1:{port}",
            CHAT_METRICS_LISTEN=f"127.0.0.1:{metrics}",
            CHAT_DATA_DIR=data,
            CHAT_LOG="warn",
        )
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in proc.stdout:
                if line.startswith("SERVER_OK"):
                    break
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("POST", "/ws-visitor/poll?site=default", body=b"")
            opened = json.loads(conn.getresponse().read())
            sid = opened["sid"]
            typing = json.dumps({"type": "typing", "typing": True}).encode()
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            for _ in range(requests):
                conn.request("POST", f"/ws-visitor/poll?sid={sid}", body=typing,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                assert r.status == 200, r.status
            elapsed, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
            return requests / elapsed, cpu / requests * 1e6
        finally:
            proc.terminate()
            proc.wait()


def main():
    systems = [arg.split("=", 1) for arg in sys.argv[1:]]
    if not systems or any(len(s) != 2 for s in systems):
        sys.exit(__doc__)
    requests = int(os.environ.get("BENCH_REQUESTS", "3000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    results = {label: [] for label, _ in systems}
    print("| round | binary | requests/s | gateway CPU µs/request |\n|---:|---|---:|---:|")
    for r in range(1, rounds + 1):
        for label, binary in systems:
            rate, cpu = run(binary, requests)
            results[label].append((rate, cpu))
            print(f"| {r} | {label} | {rate:,.0f} | {cpu:.1f} |", flush=True)
    print("\n| binary | median requests/s | median CPU µs/request |\n|---|---:|---:|")
    for label, runs in results.items():
        print(f"| {label} | {statistics.median(x[0] for x in runs):,.0f} | "
              f"{statistics.median(x[1] for x in runs):.1f} |")
    print(f"\nloadavg at end: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
