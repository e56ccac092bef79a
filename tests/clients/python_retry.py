#!/usr/bin/env python3
"""The official Elasticsearch Python client against an account over its rate limit.

    python_retry.py GATEWAY_URL TOKEN

Run by tests/it/python_client.rs against a gateway whose account allows `rate = "5/s"` with
`burst = 5`. What the client (elasticsearch 8.x on elastic-transport 8.x) does with a 429:

* The transport retries a 429 (its `retry_on_status` is 429, 502, 503, 504; `max_retries` 3),
  but at once: it sleeps between attempts only after a connection error, never after a status.
  Three retries within a few milliseconds meet the same limit, so past its burst a search
  usually ends in `ApiError` 429, which carries the gateway's `Retry-After`. An application
  (like this script) has to wait that long itself and send it again.
* `helpers.bulk` with `max_retries` > 0 retries a whole 429 answer (and 429 items) after
  `initial_backoff` seconds, doubling per attempt up to `max_backoff`: the rate's refill lets
  the retry through, with no code of the application's.

Sends SEARCHES searches and a helpers.bulk of DOCS documents in chunks of CHUNK, as fast as the
answers come, and counts from the client's own log (logger `elastic_transport.transport`) every
answer it got by status and every retry its transport made. Prints one RESULT line; exits 0
when every search and every document succeeded and 429s did happen, 1 otherwise, 2 on usage.
Deterministic: no assertion depends on timing; a retry that waited at least 1/rate always
finds the refill.
"""
import logging
import re
import sys
import time
from urllib.parse import urlsplit

from elasticsearch import ApiError, Elasticsearch, helpers

SEARCHES = 12
DOCS = 100
CHUNK = 10
# Gives up on a search after this many waits; far more than the refill ever needs.
MAX_WAITS = 10


class Tally(logging.Handler):
    """Counts the transport's log records: answers by method, path and status, and retries."""

    ANSWER = re.compile(r"^(\w+) (\S+) \[status:(\S+) ")

    def __init__(self):
        super().__init__(logging.INFO)
        self.answers = {}
        self.retries_429 = 0

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Retrying request after non-successful status 429"):
            self.retries_429 += 1
        match = self.ANSWER.match(message)
        if match:
            key = (match.group(1), urlsplit(match.group(2)).path, match.group(3))
            self.answers[key] = self.answers.get(key, 0) + 1

    def count(self, path, status):
        return sum(n for (_, p, s), n in self.answers.items() if p == path and s == status)


def search_with_waits(es, i, waits):
    """One search; after an ApiError 429 (the transport's own retries spent), waits as the
    gateway's Retry-After says and sends it again."""
    for _ in range(MAX_WAITS + 1):
        try:
            es.search(index="logs", query={"match": {"n": i}})
            return True
        except ApiError as e:
            if e.status_code != 429:
                raise
            retry_after = e.meta.headers.get("retry-after")
            if retry_after is None:
                raise SystemExit("a 429 without Retry-After")
            waits.append(int(retry_after))
            time.sleep(int(retry_after))
    return False


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, token = sys.argv[1], sys.argv[2]
    tally = Tally()
    transport_log = logging.getLogger("elastic_transport.transport")
    transport_log.setLevel(logging.INFO)
    transport_log.addHandler(tally)
    transport_log.propagate = False

    # The client's defaults: max_retries 3, retry_on_status (429, 502, 503, 504).
    es = Elasticsearch(url, bearer_auth=token, request_timeout=10)

    waits = []
    searches_ok = sum(search_with_waits(es, i, waits) for i in range(SEARCHES))

    # Whole 429 answers to a _bulk: retried by the helper after 0.3 s, 0.6 s, ... (> 1/rate).
    actions = ({"_index": "logs", "_id": f"doc-{i}", "_source": {"n": i}} for i in range(DOCS))
    bulk_ok, bulk_errors = helpers.bulk(
        es, actions, chunk_size=CHUNK, max_retries=5, initial_backoff=0.3, max_backoff=2
    )

    searched_429 = tally.count("/logs/_search", "429")
    bulk_429 = tally.count("/_bulk", "429")
    print(
        f"RESULT searches={SEARCHES} searches_ok={searches_ok} search_200={tally.count('/logs/_search', '200')}"
        f" search_429={searched_429} search_waits={len(waits)} retry_after={','.join(map(str, sorted(set(waits)))) or '-'}"
        f" docs={DOCS} bulk_ok={bulk_ok} bulk_errors={len(bulk_errors)}"
        f" bulk_200={tally.count('/_bulk', '200')} bulk_429={bulk_429}"
        f" transport_retries_429={tally.retries_429} total_429={searched_429 + bulk_429}"
    )
    failures = []
    if searches_ok != SEARCHES:
        failures.append(f"{SEARCHES - searches_ok} searches never succeeded")
    if bulk_ok != DOCS or bulk_errors:
        failures.append(f"bulk indexed {bulk_ok} of {DOCS}: {bulk_errors[:3]}")
    if searched_429 == 0 or bulk_429 == 0:
        failures.append("no 429 was seen: the limit was never met, nothing was retried")
    if tally.retries_429 == 0:
        failures.append("the transport never retried a 429")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
