#!/usr/bin/env python3
"""How a proxy and its upstream share one core: reads `perf script -F time,event,trace` output
of `sched:sched_switch` events recorded on that core (bench/sched-phases.sh) and splits each
process's time on it into short runs (a request or two, then switched out) and long runs.

When the proxy and the upstream share a core, the kernel alternates between two regimes:
ping-pong, where each request the proxy sends wakes the upstream, which preempts the proxy,
answers that one request and sleeps again (two context switches per request, short runs on
both sides); and batches, where the proxy runs for a scheduler slice, the upstream's
requests queue up, and the upstream then answers them all in one long run. Batches cost
less per request; how long ping-pong lasts is decided by the scheduler's lag accounting,
and it lasts longer while the proxy's short runs are longer than the upstream's.

Usage: sched_phases.py TRACE PROXY_PID UPSTREAM_PID [LONG_US]   (standard library only)
"""

import re
import sys

SWITCH = re.compile(r"\s*([\d.]+):\s+sched:sched_switch:.*next_comm=.* next_pid=(\d+) ")


def runs(path):
    """(pid, microseconds) for every stretch a task ran on the traced core."""
    out, current, since = [], None, None
    with open(path, encoding="utf-8", errors="replace") as trace:
        for line in trace:
            match = SWITCH.match(line)
            if not match:
                continue
            at, pid = float(match.group(1)), match.group(2)
            if since is not None:
                out.append((current, (at - since) * 1e6))
            current, since = pid, at
    return out


def mean(values):
    return sum(values) / len(values) if values else 0.0


def side(stretches, pid, long_us, total):
    mine = [us for who, us in stretches if who == pid]
    short = [us for us in mine if us <= long_us]
    long = [us for us in mine if us > long_us]
    return (
        f"{len(short):>7} {mean(short):>8.1f} {100 * sum(short) / total:>6.1f} % "
        f"{len(long):>6} {mean(long):>8.0f} {100 * sum(long) / total:>6.1f} %"
    )


def main(argv):
    if len(argv) not in (4, 5):
        sys.exit(__doc__.rsplit("Usage: ", 1)[1])
    path, proxy, upstream = argv[1], argv[2], argv[3]
    long_us = float(argv[4]) if len(argv) == 5 else 100.0
    stretches = runs(path)
    total = sum(us for _, us in stretches)
    if not stretches or total <= 0:
        sys.exit(f"{path}: no sched_switch events")
    seconds = total / 1e6
    print(f"traced {seconds:.2f} s, {len(stretches) / seconds:,.0f} switches/s; "
          f"a run over {long_us:.0f} us is long")
    print(f"{'':9} {'short':>7} {'mean us':>8} {'time':>8} {'long':>6} {'mean us':>8} {'time':>8}")
    print(f"{'proxy':9} {side(stretches, proxy, long_us, total)}")
    print(f"{'upstream':9} {side(stretches, upstream, long_us, total)}")


if __name__ == "__main__":
    main(sys.argv)
