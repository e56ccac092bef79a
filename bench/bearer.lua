-- wrk script: every request carries "Authorization: Bearer <token>", rotating
-- over the tokens of a file (one token value per line). Requests are built
-- once in init(), so per request wrk only picks the next prebuilt string.
--
-- Environment (read by every wrk thread):
--   TOKENS_FILE   token file (default "tokens.txt" in the working directory)
--   REQ_METHOD    GET (default) or POST
--   REQ_PATH      request path (default "/")
--   BODY_FILE     request body for POST, sent as application/x-ndjson
--
-- At the end it prints one machine-readable line:
--   RESULT requests=N duration_s=S rps=R p50_us=.. p90_us=.. p99_us=.. p999_us=..
--          mean_us=.. max_us=.. non2xx=N socket_errors=N

local tokens_file = os.getenv("TOKENS_FILE") or "tokens.txt"
local reqs = {}
local n = 0
local i = 0

local function slurp(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. path)
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  local method = os.getenv("REQ_METHOD") or "GET"
  local path = os.getenv("REQ_PATH") or "/"
  local body_file = os.getenv("BODY_FILE")
  local body = nil
  if body_file and body_file ~= "" then body = slurp(body_file) end
  for line in io.lines(tokens_file) do
    line = line:gsub("%s+$", "")
    if line ~= "" then
      local headers = { ["Authorization"] = "Bearer " .. line }
      if body then headers["Content-Type"] = "application/x-ndjson" end
      n = n + 1
      reqs[n] = wrk.format(method, path, headers, body)
    end
  end
  assert(n > 0, "no tokens in " .. tokens_file)
  -- Each thread starts somewhere else in the list.
  i = (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % n
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
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
