#!/usr/bin/env python3
"""The slow node and the steady client of bench/fairness.sh (stdlib only, 127.0.0.1 only).

  fairness.py node --port P --service-ms 20 [--jitter-ms 0] --seconds S
      A stand-in Elasticsearch node with a fixed service time: an asyncio HTTP/1.1 server with
      keep-alive that holds every request for --service-ms (± up to --jitter-ms, uniformly, when
      given), then answers 200 with a small search
      answer and `X-Elastic-Product: Elasticsearch`. It counts the requests it served per
      `X-Opaque-Id` (the clients send their account's letter) and the most it held at once;
      `GET /_bench/counts` (answered at once, not counted) returns both as JSON. It exits by
      itself after --seconds.

  fairness.py steady --port P --token T --rate R --seconds S [--tag B]
      An open-loop client: starts a request every 1/R s for S s whatever the answers do, each
      on an idle keep-alive connection of its own pool (a new one when none is idle). Latency is
      measured from the moment the request was due, so a slow answer cannot hide the requests
      that queued behind it. Prints one RESULT line: requests, statuses, errors, p50/p99/max.

  fairness.py summary --results DIR --runs "alone fifo fair rate" ...
      The Markdown table and the verdicts of fairness.sh, from the files its runs left in DIR.
"""
import argparse
import asyncio
import json
import os
import random
import re
import sys
import time

HOST = "127.0.0.1"
SEARCH_ANSWER = (
    b'{"took":20,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},'
    b'"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]}}'
)
# Bound on one request of the steady client: far above any wait the gateway allows.
REQUEST_TIMEOUT = 15.0


async def read_head(reader):
    """The request or status line and the headers (lowercase names) of one message."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def read_body(reader, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return body
    return await reader.readexactly(int(headers.get("content-length", "0")))


# ---------------------------------------------------------------- node

class Node:
    def __init__(self, service, jitter):
        self.service = service
        self.jitter = jitter
        self.counts = {}
        self.active = 0
        self.max_active = 0

    async def serve(self, reader, writer):
        try:
            while True:
                line, headers = await read_head(reader)
                await read_body(reader, headers)
                path = line.split(" ")[1] if " " in line else "/"
                if path == "/_bench/counts":
                    body = json.dumps({"counts": self.counts, "max_active": self.max_active}).encode()
                else:
                    self.active += 1
                    self.max_active = max(self.max_active, self.active)
                    try:
                        await asyncio.sleep(self.service + random.uniform(-self.jitter, self.jitter))
                    finally:
                        self.active -= 1
                    tag = headers.get("x-opaque-id", "-")
                    self.counts[tag] = self.counts.get(tag, 0) + 1
                    body = SEARCH_ANSWER
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"x-elastic-product: Elasticsearch\r\ncontent-length: %d\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


async def node(a):
    n = Node(a.service_ms / 1000, min(a.jitter_ms, a.service_ms) / 1000)
    server = await asyncio.start_server(n.serve, HOST, a.port, backlog=1024)
    async with server:
        await asyncio.sleep(a.seconds)


# ---------------------------------------------------------------- steady client

class Steady:
    def __init__(self, a):
        self.a = a
        self.idle = []
        self.request = (
            f"GET /bench/_search HTTP/1.1\r\nhost: {HOST}:{a.port}\r\n"
            f"authorization: Bearer {a.token}\r\nx-opaque-id: {a.tag}\r\n\r\n"
        ).encode()
        self.latencies = []
        self.statuses = {}
        self.errors = 0

    async def once(self, due):
        conn = self.idle.pop() if self.idle else None
        try:
            if conn is None:
                conn = await asyncio.open_connection(HOST, self.a.port)
            reader, writer = conn
            writer.write(self.request)
            line, headers = await read_head(reader)
            await read_body(reader, headers)
            status = line.split(" ")[1]
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(time.monotonic() - due)
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            self.errors += 1
            if conn is not None:
                conn[1].close()

    async def run(self):
        interval = 1 / self.a.rate
        start = time.monotonic()
        tasks = []
        for i in range(int(self.a.rate * self.a.seconds)):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.timed(due)))
        await asyncio.gather(*tasks)
        for _, writer in self.idle:
            writer.close()
        return time.monotonic() - start

    async def timed(self, due):
        try:
            await asyncio.wait_for(self.once(due), REQUEST_TIMEOUT)
        except asyncio.TimeoutError:
            self.errors += 1


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


async def steady(a):
    s = Steady(a)
    took = await s.run()
    lat = sorted(x * 1000 for x in s.latencies)
    sent = int(a.rate * a.seconds)
    statuses = ",".join(f"{k}:{v}" for k, v in sorted(s.statuses.items())) or "-"
    print(
        f"RESULT sent={sent} ok={s.statuses.get('200', 0)} statuses={statuses} errors={s.errors}"
        f" p50_ms={percentile(lat, 50):.1f} p99_ms={percentile(lat, 99):.1f}"
        f" max_ms={(lat[-1] if lat else float('nan')):.1f} seconds={took:.1f}"
    )


# ---------------------------------------------------------------- summary

def summary(a):
    """The Markdown table of fairness.sh's runs, from the files it left in --results."""
    def read(run, name):
        path = os.path.join(a.results, f"{run}.{name}")
        return open(path).read() if os.path.exists(path) else ""

    def metric(text, key):
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[1])
        return 0.0

    admitted = f'tokengate_account_requests_total{{account="{a.account}"}}'
    b_admitted = f'tokengate_account_requests_total{{account="{a.b_account}"}}'
    b_waited = f'tokengate_account_slot_wait_seconds_total{{account="{a.b_account}"}}'
    limited = f'tokengate_account_limited_total{{account="{a.account}",limit="rate"}}'
    rows = {}
    for run in a.runs.split():
        secs = float(read(run, "t1.time") or 0) - float(read(run, "t0.time") or 0)
        c0 = json.loads(read(run, "t0.counts") or "{}")
        c1 = json.loads(read(run, "t1.counts") or "{}")
        node = {t: c1.get("counts", {}).get(t, 0) - c0.get("counts", {}).get(t, 0) for t in "AB"}
        m0, m1 = read(run, "t0.metrics"), read(run, "t1.metrics")
        result = re.search(r"^RESULT (.*)$", read(run, "steady.out"), re.M)
        flood = re.search(r"^status codes: (\d+) 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", read(run, "flood.out"), re.M)
        rows[run] = dict(
            b=dict(kv.split("=", 1) for kv in result.group(1).split()) if result else {},
            secs=secs, node=node, max_active=c1.get("max_active", "-"),
            a_admitted=(metric(m1, admitted) - metric(m0, admitted)) / secs if secs > 0 else 0.0,
            a_refused=(metric(m1, limited) - metric(m0, limited)) / secs if secs > 0 else 0.0,
            b_wait_ms=1000 * (metric(m1, b_waited) - metric(m0, b_waited))
            / max(metric(m1, b_admitted) - metric(m0, b_admitted), 1),
            flood=flood.groups() if flood else None,
        )
    base = rows.get("alone", {}).get("b", {}).get("p99_ms")
    jitter = f" (± {a.jitter_ms:g} ms)" if a.jitter_ms else ""
    print(f"Node: {a.slots} slots x {a.service_ms:g} ms{jitter} = {a.slots * 1000 / a.service_ms:.0f}"
          " requests/s at most. Rates are over B's window, from just before its first request to just"
          " after its last answer; B's slot wait is its mean (tokengate_account_slot_wait_seconds_total).\n")
    print("| run | B p50 ms | B p99 ms | B p99 / alone | B slot wait ms | B 200s | B other | A admitted/s"
          " | A refused (429)/s | A limit/s | node A/s : B/s | node share A | node max in flight |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for run, r in rows.items():
        b, secs = r["b"], max(r["secs"], 1e-9)
        sent, ok = int(b.get("sent", 0)), int(b.get("ok", 0))
        other = ",".join(x for x in b.get("statuses", "-").split(",") if not x.startswith("200:")) or "-"
        if b.get("errors", "0") != "0":
            other += f" errors:{b['errors']}"
        ratio = float(b["p99_ms"]) / float(base) if base and "p99_ms" in b else float("nan")
        na, nb = r["node"]["A"], r["node"]["B"]
        share = f"{na / (na + nb):.0%}" if na + nb else "-"
        limit = f"{a.a_rate:g}" if run == "rate" else "-"
        print(f"| {run} | {b.get('p50_ms', '-')} | {b.get('p99_ms', '-')} | {ratio:.2f}"
              f" | {r['b_wait_ms']:.1f} | {ok}/{sent}"
              f" | {other} | {r['a_admitted']:.1f} | {r['a_refused']:.0f} | {limit}"
              f" | {na / secs:.0f} : {nb / secs:.0f} | {share} | {r['max_active']} |")
        refused = sent - ok
        verdicts.append(f"{run}: B refused or failed: {refused} of {sent}"
                        f" ({'met' if sent and refused == 0 else 'NOT met'})")
        if run == "fair":
            verdicts.append(f"fair: B's p99 is {ratio:.2f}x alone, target <= 1.5"
                            f" ({'met' if ratio <= 1.5 else 'NOT met'})")
        if run == "rate":
            dev = (r["a_admitted"] - a.a_rate) / a.a_rate
            verdicts.append(f"rate: A admitted {r['a_admitted']:.1f}/s against {a.a_rate:g}/s, {dev:+.1%},"
                            f" target within ±5 % ({'met' if abs(dev) <= 0.05 else 'NOT met'})")
        if r["flood"]:
            verdicts.append(f"{run}: A's flood over its whole run (h2load): {r['flood'][0]} 2xx,"
                            f" {r['flood'][1]} 4xx, {r['flood'][2]} 5xx")
    print()
    for v in verdicts:
        print(f"- {v}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("node")
    n.add_argument("--port", type=int, required=True)
    n.add_argument("--service-ms", type=float, default=20)
    n.add_argument("--jitter-ms", type=float, default=0)
    n.add_argument("--seconds", type=float, required=True)
    s = sub.add_parser("steady")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--tag", default="B")
    m = sub.add_parser("summary")
    m.add_argument("--results", required=True)
    m.add_argument("--runs", required=True)
    m.add_argument("--a-rate", type=float, required=True)
    m.add_argument("--slots", type=int, required=True)
    m.add_argument("--service-ms", type=float, required=True)
    m.add_argument("--account", required=True)
    m.add_argument("--b-account", required=True)
    m.add_argument("--jitter-ms", type=float, default=0)
    a = ap.parse_args()
    if a.cmd == "summary":
        return summary(a)
    if a.cmd == "steady" and not (0 < a.rate <= 2000 and 0 < a.seconds <= 120):
        sys.exit("steady: --rate must be in (0, 2000], --seconds in (0, 120]")
    if a.cmd == "node" and not 0 < a.seconds <= 3600:
        sys.exit("node: --seconds must be in (0, 3600]")
    asyncio.run({"node": node, "steady": steady}[a.cmd](a))


if __name__ == "__main__":
    main()
