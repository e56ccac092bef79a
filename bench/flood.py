#!/usr/bin/env python3
"""Connection-flood helpers for bench/conn-flood.sh (standard library only, 127.0.0.0/8 only).

  flood.py hold --port P --count N --sources 127.0.0.1[,127.0.0.3,...] --mode keepalive|silent
                --seconds S --ready FILE
      Opens N connections round-robin over the source addresses (at most 512 being opened at
      once). keepalive: each sends one GET / without credentials (the gateway answers 401 and
      keeps the connection) and then idles; silent: each sends nothing. Touches FILE once every
      connection has been tried, holds them until SIGTERM or S seconds, then prints a RESULT
      line: established, refused (a 429 or a close before any answer), answered (the 401),
      closed later by the gateway (evicted or timed out; with the median seconds from connect to
      close), still open at the end, connect failures.

  flood.py probe --port P --source IP --token T --seconds S [--max N] [--rate R]
      A well-behaved client: sequential GET / with a Bearer token, each on a fresh connection
      bound to IP, closed by the client after the answer, R per second (default 200) for S
      seconds or N requests. Prints a RESULT line with
      the count, the statuses, errors (timeouts at 5 s, resets) and p50/p99/max latency in ms.
"""
import argparse
import asyncio
import collections
import ipaddress
import signal
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"
CONNECTING_AT_ONCE = 512
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 10.0


def loopback(text):
    if not ipaddress.ip_address(text).is_loopback:
        raise argparse.ArgumentTypeError(f"{text} is not a loopback address")
    return text


async def read_answer(reader):
    """Status of one HTTP/1.1 answer with a content-length body; None on a close before it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = await reader.read(4096)
        if not chunk:
            break
        body += chunk
    return status


async def hold(a):
    sources = a.sources.split(",")
    for source in sources:
        loopback(source)
    stats = collections.Counter()
    close_ages = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    request = b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n"
    tried = 0

    def mark_tried(state):
        nonlocal tried
        if not state["tried"]:
            state["tried"] = True
            tried += 1
            if tried == a.count:
                open(a.ready, "w").close()

    async def one(i):
        source = sources[i % len(sources)]
        state = {"tried": False, "phase": "waiting"}
        writer = None
        try:
            async with gate:
                state["phase"] = "connecting"
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(HOST, a.port, local_addr=(source, 0)),
                        CONNECT_TIMEOUT,
                    )
                except (OSError, asyncio.TimeoutError):
                    stats["connect_failed"] += 1
                    return
                connected = time.monotonic()
                stats["established"] += 1
                if a.mode == "keepalive":
                    writer.write(request)
                    try:
                        status = await asyncio.wait_for(read_answer(reader), ANSWER_TIMEOUT)
                    except asyncio.TimeoutError:
                        status = "none"
                    except OSError:
                        status = None
                    if status is None or status == 429:
                        stats["refused"] += 1
                        return
                    stats[f"answered_{status}"] += 1
            mark_tried(state)
            state["phase"] = "idle"
            # Idle until the gateway closes the connection (eviction, deadline) or the end.
            try:
                while True:
                    data = await reader.read(4096)
                    if not data:
                        break
                    if data.startswith(b"HTTP/1.1 429"):
                        stats["refused"] += 1
                        return
            except OSError:
                pass
            stats["closed_later"] += 1
            close_ages.append(time.monotonic() - connected)
        except asyncio.CancelledError:
            stats["open_at_end" if state["phase"] == "idle" else "unfinished"] += 1
            raise
        finally:
            mark_tried(state)
            if writer is not None:
                writer.close()

    tasks = [asyncio.ensure_future(one(i)) for i in range(a.count)]
    try:
        await asyncio.wait_for(stop.wait(), a.seconds)
    except asyncio.TimeoutError:
        pass
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    median_age = f"{statistics.median(close_ages):.1f}" if close_ages else "-"
    keys = [
        "established", "refused", "answered_401", "closed_later", "open_at_end",
        "connect_failed", "unfinished",
    ]
    fields = " ".join(f"{k}={stats.get(k, 0)}" for k in keys)
    print(f"RESULT tried={a.count} {fields} median_close_age_s={median_age}", flush=True)


def read_answer_blocking(sock):
    """Status of one HTTP/1.1 answer with a content-length body; None on a close before it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return int(lines[0].split(" ")[1])


def probe(a):
    # The client closes first, after reading the whole answer: its TIME_WAIT then keeps the
    # next bind from reusing a port whose previous connection the server still remembers,
    # which on loopback costs a SYN retransmission (a second) that is no gateway's doing.
    request = (
        f"GET / HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {a.token}\r\n\r\n"
    ).encode()
    latencies = []
    connects = []
    statuses = collections.Counter()
    errors = collections.Counter()
    start = time.monotonic()
    end = start + a.seconds
    sent = 0
    while time.monotonic() < end and sent < a.max:
        # Paced, so the probe spans the whole phase instead of racing through its cap.
        pause = start + sent / a.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        t0 = time.perf_counter()
        try:
            sock.bind((a.source, 0))
            sock.connect((HOST, a.port))
            connects.append((time.perf_counter() - t0) * 1000)
            sock.sendall(request)
            status = read_answer_blocking(sock)
            if status is None:
                errors["closed_without_answer"] += 1
                continue
            statuses[status] += 1
            latencies.append((time.perf_counter() - t0) * 1000)
        except socket.timeout:
            errors["timeout"] += 1
        except OSError as e:
            errors[type(e).__name__] += 1
        finally:
            sock.close()
    latencies.sort()

    def pct(q):
        if not latencies:
            return "-"
        return f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))]:.2f}"

    status_text = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items())) or "-"
    error_text = ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "0"
    print(
        f"RESULT requests={len(latencies) + sum(errors.values())} statuses={status_text} "
        f"errors={error_text} p50_ms={pct(0.50)} p99_ms={pct(0.99)} "
        f"max_ms={(f'{latencies[-1]:.2f}' if latencies else '-')} "
        f"max_connect_ms={(f'{max(connects):.2f}' if connects else '-')}",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--count", type=int, required=True)
    h.add_argument("--sources", default=HOST)
    h.add_argument("--mode", choices=["keepalive", "silent"], default="keepalive")
    h.add_argument("--seconds", type=float, required=True)
    h.add_argument("--ready", required=True)
    r = sub.add_parser("probe")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--source", type=loopback, required=True)
    r.add_argument("--token", required=True)
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--max", type=int, default=5000)
    r.add_argument("--rate", type=float, default=200.0)
    a = p.parse_args()
    if a.cmd == "hold":
        if not 1 <= a.count <= 30000 or not 0 < a.seconds <= 600:
            sys.exit("hold: count 1..30000, seconds 0..600")
        asyncio.run(hold(a))
    else:
        probe(a)


if __name__ == "__main__":
    main()
