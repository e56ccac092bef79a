"""GET / on one keep-alive connection, each request with the next token of a file, for
bench/instructions.sh's `rotate` and `rotate_deny` scenarios; every answer must have STATUS
(200 unless given). Stdlib only; 127.0.0.1 only.

    python3 bench/rotate_client.py PORT COUNT TOKENS_FILE [STATUS]
"""
import http.client
import sys


def main() -> int:
    port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    expected = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    with open(path, encoding="ascii") as lines:
        tokens = [line.strip() for line in lines if line.strip()]
    if not tokens:
        print(f"no tokens in {path}", file=sys.stderr)
        return 1
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(count):
        token = tokens[i % len(tokens)]
        connection.request("GET", "/", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        if response.status != expected:
            print(f"request {i}: status {response.status}", file=sys.stderr)
            return 1
    connection.close()
    print(f"{count} requests, {len(tokens)} tokens in turn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
