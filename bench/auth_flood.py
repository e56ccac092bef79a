#!/usr/bin/env python3
"""Failed-authentication floods and a timing probe for bench/auth-flood.sh (standard library
only; 127.0.0.0/8 only; every run bounded in time).

  flood.py flood --port P --seconds S --kind KIND --sources SPEC [--conns N] [--user U]
               [--tokens FILE]
      Closed-loop keep-alive connections sending GET / with bad credentials until S seconds
      have passed. Connection i binds source address i mod len(sources). KIND:
        wrong-password   Basic U:<fresh random password>   (existing user, real bcrypt)
        repeat-password  Basic U:<one wrong password>      (the failure cache's case)
        unknown-user     Basic <fresh random user>:x
        wrong-bearer     Bearer <token from FILE with its secret altered>, or random
      SPEC is a comma list of addresses and ranges: 127.0.0.2 or 127.0.1.1-64.
      Prints: RESULT requests=N rps=R s200=.. s401=.. s429_throttle=.. s429_pool=..
              other=.. errors=..

  flood.py timing --port P --samples N --user U --sources SPEC
      Alternates one wrong password for U and one unknown user, each from a source address
      not used before (so no throttle applies), sequentially, one connection per request.
      Prints: RESULT wrong_p50_ms=.. wrong_p90_ms=.. unknown_p50_ms=.. unknown_p90_ms=..
"""
import argparse
import asyncio
import base64
import ipaddress
import os
import statistics
import sys
import time

HOST = "127.0.0.1"


def sources(spec):
    out = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            first, last = part.split("-")
            base = ipaddress.IPv4Address(first)
            prefix = str(base).rsplit(".", 1)[0]
            for n in range(int(str(base).rsplit(".", 1)[1]), int(last) + 1):
                out.append(f"{prefix}.{n}")
        elif part:
            out.append(part)
    for a in out:
        if not ipaddress.IPv4Address(a) in ipaddress.IPv4Network("127.0.0.0/8"):
            sys.exit(f"{a}: only loopback sources are allowed")
    return out


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def random_text():
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def bearer_values(path):
    if not path:
        return ["Bearer " + base64.b64encode(os.urandom(60)).decode().rstrip("=")]
    out = []
    for line in open(path):
        line = line.strip()
        if line:
            raw = bytearray(base64.b64decode(line + "=" * (-len(line) % 4)))
            raw[-1] = ord("B") if raw[-1] != ord("B") else ord("C")
            out.append("Bearer " + base64.b64encode(bytes(raw)).rstrip(b"=").decode())
    return out


def auth_maker(a):
    if a.kind == "wrong-password":
        return lambda: basic(a.user, "wrong-" + random_text())
    if a.kind == "repeat-password":
        fixed = basic(a.user, "wrong-" + random_text())
        return lambda: fixed
    if a.kind == "unknown-user":
        return lambda: basic("nobody-" + random_text(), "x")
    if a.kind == "wrong-bearer":
        values = bearer_values(a.tokens)
        state = [0]

        def next_value():
            state[0] += 1
            return values[state[0] % len(values)]

        return next_value
    sys.exit(f"unknown kind {a.kind}")


async def exchange(reader, writer, port, authorization):
    """One request; returns (status, body, keep_alive)."""
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: {authorization}\r\n\r\n"
        ).encode()
    )
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, keep = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and "close" in value.lower():
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


async def flood_conn(a, source, deadline, counts, make_auth):
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(
                    HOST, a.port, local_addr=(source, 0)
                )
            status, body, keep = await asyncio.wait_for(
                exchange(reader, writer, a.port, make_auth()), timeout=10
            )
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
            continue
        counts["requests"] += 1
        if status == 429:
            key = "s429_pool" if b"password verifications" in body else "s429_throttle"
        elif status in (200, 401):
            key = f"s{status}"
        else:
            key = "other"
        counts[key] += 1
        if not keep:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def flood(a):
    addrs = sources(a.sources)
    make_auth = auth_maker(a)
    counts = dict.fromkeys(
        ["requests", "s200", "s401", "s429_throttle", "s429_pool", "other", "errors"], 0
    )
    start = time.monotonic()
    deadline = start + a.seconds
    await asyncio.gather(
        *(
            flood_conn(a, addrs[i % len(addrs)], deadline, counts, make_auth)
            for i in range(max(a.conns, 1))
        )
    )
    secs = time.monotonic() - start
    print(
        "RESULT rps=%.0f " % (counts["requests"] / secs)
        + " ".join(f"{k}={v}" for k, v in counts.items())
    )


async def timed(port, source, authorization):
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
    t0 = time.perf_counter()
    status, _, _ = await exchange(reader, writer, port, authorization)
    t1 = time.perf_counter()
    writer.close()
    return status, (t1 - t0) * 1000.0


async def timing(a):
    addrs = sources(a.sources)
    if len(addrs) < 2 * a.samples:
        sys.exit(f"timing needs {2 * a.samples} source addresses, got {len(addrs)}")
    wrong, unknown = [], []
    for i in range(a.samples):
        pair = [
            (wrong, basic(a.user, "wrong-" + random_text())),
            (unknown, basic("nobody-" + random_text(), "wrong-" + random_text())),
        ]
        if i % 2:
            pair.reverse()
        for j, (samples, authorization) in enumerate(pair):
            status, ms = await timed(a.port, addrs[2 * i + j], authorization)
            if status != 401:
                sys.exit(f"timing: expected 401, got {status}")
            samples.append(ms)

    def q(vals, p):
        vals = sorted(vals)
        return vals[min(len(vals) - 1, int(p / 100.0 * len(vals)))]

    print(
        "RESULT samples=%d wrong_p50_ms=%.1f wrong_p90_ms=%.1f unknown_p50_ms=%.1f unknown_p90_ms=%.1f"
        % (
            a.samples,
            statistics.median(wrong),
            q(wrong, 90),
            statistics.median(unknown),
            q(unknown, 90),
        )
    )


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--kind", required=True)
    f.add_argument("--sources", required=True)
    f.add_argument("--conns", type=int, default=16)
    f.add_argument("--user", default="elastic")
    f.add_argument("--tokens", default="")
    t = sub.add_parser("timing")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--samples", type=int, default=30)
    t.add_argument("--user", default="elastic")
    t.add_argument("--sources", required=True)
    a = ap.parse_args()
    if a.cmd == "flood" and not 0 < a.seconds <= 60:
        sys.exit("--seconds must be in (0, 60]")
    asyncio.run(flood(a) if a.cmd == "flood" else timing(a))


if __name__ == "__main__":
    main()
