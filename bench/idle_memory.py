#!/usr/bin/env python3
"""Idle keep-alive connection memory client for bench/idle-memory.sh (standard library only,
127.0.0.0/8 only).

  idle_memory.py --port P --pid PID --token T --conns N --sources 127.0.0.2,...
                 [--tls --ca FILE] [--mode allow|deny] [--warmup 200] [--settle 2]
                 [--after-close 60] [--samples FILE]
      Watches the resident memory (VmRSS in /proc/PID/status) of the server process PID:
        1. warm-up: --warmup connections, one GET / each, then closed; wait --settle s;
           the RSS then is "before";
        2. opens --conns keep-alive connections round-robin over the source addresses (bound
           before connect, at most 200 being opened at once), each sending ONE GET / with
           `Authorization: Bearer <token>` (deny: a wrong token) and reading the whole answer
           (content-length), then holding the connection idle;
        3. waits --settle s, takes the RSS "with" the connections and counts those still open;
        4. closes them all and samples the RSS every second for --after-close s.
      TLS: TLS 1.3 only, ALPN http/1.1, the server certificate checked against --ca.
      Writes the samples (phase, seconds, rss_kb) to --samples and prints one RESULT line of
      key=value pairs; progress goes to standard error.
"""
import argparse
import asyncio
import collections
import ipaddress
import os
import ssl
import sys
import time

HOST = "127.0.0.1"
OPENING_AT_ONCE = 200
CONNECT_TIMEOUT = 10.0
ANSWER_TIMEOUT = 10.0
CLOSE_TIMEOUT = 15.0


def loopback_list(text):
    sources = [s for s in text.split(",") if s]
    for s in sources:
        if not ipaddress.ip_address(s).is_loopback:
            raise argparse.ArgumentTypeError(f"{s} is not a loopback address")
    if not sources:
        raise argparse.ArgumentTypeError("no source address")
    return sources


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Gone(Exception):
    pass


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    raise Gone(f"process {pid} is gone (or has no resident memory)")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wrong_token(token):
    """The same token with its last four characters changed: a 401 on every target."""
    tail = "AAAA" if not token.endswith("AAAA") else "BBBB"
    return token[:-4] + tail


async def read_answer(reader):
    """(status, body, keep_alive) of one HTTP/1.1 answer with a content-length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length, keep_alive = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            keep_alive = False
    while len(body) < length:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return status, body, keep_alive


class Client:
    def __init__(self, a):
        self.a = a
        token = a.token if a.mode == "allow" else wrong_token(a.token)
        self.request = (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{a.port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        self.expect = 200 if a.mode == "allow" else 401
        self.ctx = None
        if a.tls:
            self.ctx = ssl.create_default_context(cafile=a.ca)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            self.ctx.set_alpn_protocols(["http/1.1"])
        self.tls_info = "-"

    async def open_one(self, source, sem, outcomes):
        """One connection, one request; the (reader, writer) pair to hold, or None."""
        async with sem:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        HOST, self.a.port, local_addr=(source, 0), ssl=self.ctx,
                        server_hostname=HOST if self.ctx else None,
                    ),
                    CONNECT_TIMEOUT,
                )
                if self.ctx and self.tls_info == "-":
                    obj = writer.get_extra_info("ssl_object")
                    self.tls_info = f"{obj.version()}/{obj.selected_alpn_protocol()}"
                writer.write(self.request)
                status, body, keep_alive = await asyncio.wait_for(
                    read_answer(reader), ANSWER_TIMEOUT
                )
            except (OSError, ConnectionError, asyncio.TimeoutError, ssl.SSLError) as e:
                outcomes[type(e).__name__] += 1
                if writer is not None:
                    writer.transport.abort()
                return None
            if status != self.expect:
                outcomes[f"status_{status}"] += 1
            elif self.expect == 200 and b"bench-node-1" not in body:
                outcomes["not_upstream_body"] += 1
            else:
                outcomes["ok"] += 1
            if not keep_alive:
                outcomes["connection_close"] += 1
            return reader, writer

    async def open_many(self, count):
        sem = asyncio.Semaphore(OPENING_AT_ONCE)
        outcomes = collections.Counter()
        sources = self.a.sources
        tasks = [
            asyncio.create_task(self.open_one(sources[i % len(sources)], sem, outcomes))
            for i in range(count)
        ]
        held = [c for c in await asyncio.gather(*tasks) if c is not None]
        return held, outcomes

    @staticmethod
    async def close_all(held):
        for _, writer in held:
            writer.close()
        waits = [asyncio.create_task(w.wait_closed()) for _, w in held]
        if waits:
            done, pending = await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
            for t in done:
                t.exception()  # a reset on close is no concern here
            for t in pending:
                t.cancel()
        for _, writer in held:
            if not writer.transport.is_closing():
                writer.transport.abort()
        return len(waits)


def still_open(held):
    return sum(1 for r, w in held if not r.at_eof() and not w.transport.is_closing())


async def run(a):
    c = Client(a)
    pid = a.pid
    samples = []

    def sample(phase, t):
        v = rss_kb(pid)
        samples.append((phase, t, v))
        return v

    start_kb = sample("start", 0)
    if a.warmup:
        held, outcomes = await c.open_many(a.warmup)
        log(f"warm-up: {a.warmup} connections {dict(outcomes)}")
        await c.close_all(held)
    await asyncio.sleep(a.settle)
    before_kb = sample("before", 0)
    fds_before = fd_count(pid)

    t0 = time.monotonic()
    held, outcomes = await c.open_many(a.conns)
    open_s = time.monotonic() - t0
    log(f"opened {len(held)}/{a.conns} in {open_s:.1f} s {dict(outcomes)} tls={c.tls_info}")
    await asyncio.sleep(a.settle)
    with_kb = sample("with", 0)
    fds_with = fd_count(pid)
    open_at_measure = still_open(held)
    log(f"with connections: rss {with_kb} kB, {open_at_measure} open, server fds {fds_with}")

    await c.close_all(held)
    held = None
    t_close = time.monotonic()
    end_kb = sample("after_close", 0)
    for i in range(1, a.after_close + 1):
        await asyncio.sleep(max(0.0, t_close + i - time.monotonic()))
        end_kb = sample("after_close", i)
    fds_end = fd_count(pid)

    if a.samples:
        with open(a.samples, "w") as f:
            f.write("phase\tseconds\trss_kb\n")
            for phase, t, v in samples:
                f.write(f"{phase}\t{t}\t{v}\n")
    per_conn = (with_kb - before_kb) * 1024 / a.conns
    fields = {
        "conns": a.conns,
        "ok": outcomes["ok"],
        "failed": a.conns - outcomes["ok"],
        "outcomes": ",".join(f"{k}:{v}" for k, v in sorted(outcomes.items())) or "-",
        "open_at_measure": open_at_measure,
        "open_s": f"{open_s:.1f}",
        "start_kb": start_kb,
        "before_kb": before_kb,
        "with_kb": with_kb,
        "end_kb": end_kb,
        "after_close_s": a.after_close,
        "per_conn_bytes": f"{per_conn:.0f}",
        "end_pct_of_before": f"{100.0 * end_kb / before_kb:.1f}",
        "fds_before": fds_before,
        "fds_with": fds_with,
        "fds_end": fds_end,
        "tls": c.tls_info,
    }
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="process whose VmRSS is sampled")
    p.add_argument("--token", required=True)
    p.add_argument("--conns", type=int, default=4000)
    p.add_argument("--sources", type=loopback_list, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--mode", choices=["allow", "deny"], default="allow")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--after-close", type=int, default=60)
    p.add_argument("--samples")
    a = p.parse_args()
    if not 1 <= a.conns <= 20000:
        p.error("--conns must be 1..20000")
    if not 0 <= a.warmup <= 1000:
        p.error("--warmup must be 0..1000")
    if not 0 <= a.after_close <= 300:
        p.error("--after-close must be 0..300")
    if a.tls and not a.ca:
        p.error("--tls needs --ca")
    try:
        rss_kb(a.pid)  # the process is there and readable
        asyncio.run(run(a))
    except Gone as e:
        sys.exit(f"ERROR: {e}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
