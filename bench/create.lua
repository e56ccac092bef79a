-- wrk script: creates service tokens through the gateway's API as fast as the
-- connections allow. Every request has its own name
-- (<RUN_ID>-<PHASE>-<thread>-<counter>), so names never collide.
--
-- Environment:
--   AUTH_HEADER       Authorization value of a token manager, e.g.
--                     "Basic <base64 elastic:password>" (required)
--   ACCOUNT           service account (default "elastic/fleet-server")
--   RUN_ID            name prefix (default: derived from the time)
--   PHASE             second part of the prefix (run.sh: "warmup" or "run")
--
-- Prints the same RESULT line as bearer.lua.

local counter = 0
local prefix
local base
local auth

local thread_seq = 0
function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("thread_id", thread_seq)
end

function init(args)
  auth = os.getenv("AUTH_HEADER") or error("AUTH_HEADER not set")
  local account = os.getenv("ACCOUNT") or "elastic/fleet-server"
  local run_id = os.getenv("RUN_ID") or tostring(os.time())
  local phase = os.getenv("PHASE") or "run"
  prefix = string.format("%s-%s-%d-", run_id, phase, thread_id or 0)
  base = "/_security/service/" .. account .. "/credential/token/"
end

function request()
  counter = counter + 1
  return wrk.format("POST", base .. prefix .. counter, { ["Authorization"] = auth })
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d mean_us=%.1f max_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
