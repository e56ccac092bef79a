#!/usr/bin/env python3
"""Client side of bench/crash.sh (standard library only, 127.0.0.1 only).

  crash_client.py create --port P --password PW --prefix r1- --out FILE [--threads 16] [--seconds 30]
      Creates tokens through the gateway's API as `elastic` from parallel
      keep-alive clients until the gateway goes away (or --seconds pass). Each
      token whose create was answered 200 with a complete body is appended to
      FILE as "name value" at once, so FILE lists exactly the acknowledged
      tokens. Prints "acknowledged N" and what ended the run.

  crash_client.py check --port P --tokens FILE [--threads 8]
      GET /_security/_authenticate with each token as Bearer. 200 naming the
      token counts as kept, 401 as lost; anything else is an error (exit 2).
      Prints "checked N lost L" (and up to 10 lost names); exit 1 when L > 0.

  crash_client.py wait --port P --password PW [--seconds 30]
      Waits until the gateway answers, then authenticates as `elastic` once so
      that the creates after a restart do not all wait for bcrypt at once
      (the gateway remembers a verified password). Exit 1 on timeout.
"""
import argparse
import base64
import http.client
import json
import sys
import threading
import time

HOST = "127.0.0.1"
ACCOUNT = "elastic/fleet-server"
# What a connection ends with when the gateway is killed under it.
GONE = (OSError, http.client.HTTPException)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def create(a):
    auth = basic("elastic", a.password)
    deadline = time.monotonic() + a.seconds
    lock = threading.Lock()
    acked = [0]
    ended = {}
    out = open(a.out, "a", buffering=1)

    def worker(n):
        conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
        i = 0
        while time.monotonic() < deadline:
            name = f"{a.prefix}{n}-{i}"
            i += 1
            path = f"/_security/service/{ACCOUNT}/credential/token/{name}"
            try:
                conn.request("POST", path, headers={"Authorization": auth})
                r = conn.getresponse()
                body = r.read()
            except GONE as e:
                with lock:
                    ended[type(e).__name__] = ended.get(type(e).__name__, 0) + 1
                break
            if r.status != 200:
                with lock:
                    key = f"HTTP {r.status}"
                    ended[key] = ended.get(key, 0) + 1
                break
            value = json.loads(body)["token"]["value"]
            with lock:
                out.write(f"{ACCOUNT}/{name} {value}\n")
                acked[0] += 1
        else:
            with lock:
                ended["deadline"] = ended.get("deadline", 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(max(1, a.threads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    how = ", ".join(f"{k} x{v}" for k, v in sorted(ended.items()))
    print(f"acknowledged {acked[0]} (clients ended by: {how})")


def check(a):
    tokens = []
    for line in open(a.tokens):
        line = line.strip()
        if line:
            name, value = line.split(" ", 1)
            tokens.append((name, value))
    lock = threading.Lock()
    next_index = [0]
    lost = []
    errors = []

    def worker():
        conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
        while True:
            with lock:
                i = next_index[0]
                if i >= len(tokens) or errors:
                    break
                next_index[0] += 1
            name, value = tokens[i]
            try:
                conn.request("GET", "/_security/_authenticate",
                             headers={"Authorization": "Bearer " + value})
                r = conn.getresponse()
                body = r.read()
            except GONE as e:
                with lock:
                    errors.append(f"{name}: {e!r}")
                break
            if r.status == 401:
                with lock:
                    lost.append(name)
                continue
            seen = None
            if r.status == 200:
                who = json.loads(body)
                seen = f"{who.get('username')}/{who.get('token', {}).get('name')}"
            if seen != name:
                with lock:
                    errors.append(f"{name}: HTTP {r.status} {body[:200]!r}")
                break
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.threads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"check failed: {errors[0]}", file=sys.stderr)
        sys.exit(2)
    print(f"checked {len(tokens)} lost {len(lost)}")
    for name in lost[:10]:
        print(f"  lost: {name}")
    sys.exit(1 if lost else 0)


def wait(a):
    deadline = time.monotonic() + a.seconds
    auth = basic("elastic", a.password)
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, a.port, timeout=a.seconds)
            conn.request("GET", "/_security/_authenticate", headers={"Authorization": auth})
            r = conn.getresponse()
            body = r.read()
            conn.close()
        except GONE:
            time.sleep(0.05)
            continue
        if r.status == 200:
            return
        sys.exit(f"authenticating as elastic: HTTP {r.status} {body[:200]!r}")
    sys.exit(f"gateway on port {a.port} did not answer within {a.seconds} s")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--password", required=True)
    c.add_argument("--prefix", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=16)
    c.add_argument("--seconds", type=float, default=30)
    k = sub.add_parser("check")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--tokens", required=True)
    k.add_argument("--threads", type=int, default=8)
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--password", required=True)
    w.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    {"create": create, "check": check, "wait": wait}[a.cmd](a)


if __name__ == "__main__":
    main()
