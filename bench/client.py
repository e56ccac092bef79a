#!/usr/bin/env python3
"""Small HTTP helpers for bench/run.sh (standard library only, 127.0.0.1 only).

  client.py create-tokens --port P --password PW --count N --out FILE [--threads 16]
      Creates N service tokens through the gateway's API as `elastic`
      (POST /_security/service/elastic/fleet-server/credential/token/<name>),
      with keep-alive connections from parallel threads, and writes one token
      value per line to FILE. Prints "created N tokens in S s (R/s)".

  client.py invalid-tokens --src FILE --out FILE
      Same names as the valid tokens, secrets altered: looked up by name, then
      rejected by the hash comparison (the full 401 path).

  client.py latency --gw-port P --direct-port U --tokens FILE [--requests 1000]
      Sequential GET / over one keep-alive connection each way (gateway vs
      upstream directly), alternating one request each, after a warm-up.
      Prints a RESULT line with the median/p90/p99 of each and the added
      latency (median via gateway - median direct).
"""
import argparse
import base64
import http.client
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"
ACCOUNT = "elastic/fleet-server"


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def create_tokens(a):
    import json

    auth = basic("elastic", a.password)
    values = [None] * a.count
    errors = []
    lock = threading.Lock()
    next_index = [0]

    def worker():
        conn = http.client.HTTPConnection(HOST, a.port, timeout=30)
        while True:
            with lock:
                i = next_index[0]
                if i >= a.count or errors:
                    break
                next_index[0] += 1
            path = f"/_security/service/{ACCOUNT}/credential/token/{a.prefix}{i}"
            try:
                conn.request("POST", path, headers={"Authorization": auth})
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors.append(f"{path}: {e}")
                break
            if r.status != 200:
                with lock:
                    errors.append(f"{path}: HTTP {r.status} {body[:200]!r}")
                break
            values[i] = json.loads(body)["token"]["value"]
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, a.threads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        sys.exit("token creation failed: " + errors[0])
    with open(a.out, "w") as f:
        f.write("\n".join(values) + "\n")
    print(f"created {a.count} tokens in {secs:.2f} s ({a.count / secs:.0f}/s, {a.threads} clients)")


def invalid_tokens(a):
    out = []
    for line in open(a.src):
        line = line.strip()
        if not line:
            continue
        raw = bytearray(base64.b64decode(line + "=" * (-len(line) % 4)))
        # Last byte of the secret: swap between two base64url characters.
        raw[-1] = ord("B") if raw[-1] != ord("B") else ord("C")
        out.append(base64.b64encode(bytes(raw)).rstrip(b"=").decode())
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


def pct(sorted_vals, q):
    i = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def latency(a):
    tokens = [t.strip() for t in open(a.tokens) if t.strip()]
    conns = {
        "gateway": http.client.HTTPConnection(HOST, a.gw_port, timeout=10),
        "direct": http.client.HTTPConnection(HOST, a.direct_port, timeout=10),
    }
    samples = {"gateway": [], "direct": []}
    total = a.warmup + a.requests
    for n in range(total):
        hdr = {"Authorization": "Bearer " + tokens[n % len(tokens)]}
        order = ("gateway", "direct") if n % 2 == 0 else ("direct", "gateway")
        for name in order:
            c = conns[name]
            t0 = time.perf_counter_ns()
            c.request("GET", "/", headers=hdr)
            r = c.getresponse()
            r.read()
            t1 = time.perf_counter_ns()
            if r.status != 200:
                sys.exit(f"latency: {name} answered HTTP {r.status}")
            if n >= a.warmup:
                samples[name].append((t1 - t0) / 1000.0)
    for c in conns.values():
        c.close()
    res = {}
    for name, vals in samples.items():
        vals.sort()
        res[name] = (statistics.median(vals), pct(vals, 90), pct(vals, 99))
    added = res["gateway"][0] - res["direct"][0]
    print(
        "RESULT requests=%d gw_p50_us=%.1f gw_p90_us=%.1f gw_p99_us=%.1f "
        "direct_p50_us=%.1f direct_p90_us=%.1f direct_p99_us=%.1f added_p50_us=%.1f"
        % (a.requests, *res["gateway"], *res["direct"], added)
    )


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create-tokens")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--password", required=True)
    c.add_argument("--count", type=int, default=1000)
    c.add_argument("--threads", type=int, default=16)
    c.add_argument("--prefix", default="bench-")
    c.add_argument("--out", required=True)
    i = sub.add_parser("invalid-tokens")
    i.add_argument("--src", required=True)
    i.add_argument("--out", required=True)
    l = sub.add_parser("latency")
    l.add_argument("--gw-port", type=int, required=True)
    l.add_argument("--direct-port", type=int, required=True)
    l.add_argument("--tokens", required=True)
    l.add_argument("--requests", type=int, default=1000)
    l.add_argument("--warmup", type=int, default=100)
    a = ap.parse_args()
    {"create-tokens": create_tokens, "invalid-tokens": invalid_tokens, "latency": latency}[a.cmd](a)


if __name__ == "__main__":
    main()
