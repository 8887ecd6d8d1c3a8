-- wrk script: POST /feedback/brevo with Brevo hard_bounce events (BENCH_BATCH per request), each naming one of the
-- BENCH_EMAILS sent emails the run loaded ('<fb-N@bench.example.com>'), a new event each
-- time (its own ts_event), so every one is recorded and applied. Prints the same
-- "BENCH_JSON {...}" line as send.lua ("accepted" counts 200 answers).

local emails = tonumber(os.getenv("BENCH_EMAILS") or "1")
-- Events per request: 1, or a list of them as Brevo's batched webhooks send.
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
-- Part of every event's id, so that the events of two passes never collide.
local pass = tonumber(os.getenv("BENCH_PASS") or "0")
local token = os.getenv("BENCH_TOKEN") or ""

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

id = 0
sequence = 0
accepted = 0
limited = 0
local headers = {}

function init(args)
   headers["Content-Type"] = "application/json"
end

local function event()
   sequence = sequence + 1
   local n = (id * 1000003 + sequence) % emails + 1
   return string.format(
      '{"event":"hard_bounce","email":"user-%d@example.com","message-id":"<fb-%d@bench.example.com>",' ..
      '"ts_event":%d%d%09d,"reason":"550 5.1.1 user unknown"}', n, n, pass + 1, id, sequence)
end

function request()
   local body
   if batch == 1 then
      body = event()
   else
      local events = {}
      for i = 1, batch do
         events[i] = event()
      end
      body = "[" .. table.concat(events, ",") .. "]"
   end
   return wrk.format("POST", "/feedback/brevo?token=" .. token, headers, body)
end

function response(status, headers, body)
   if status == 200 then
      accepted = accepted + 1
   end
end

function done(summary, latency, requests)
   local accepted_total = 0
   for _, thread in ipairs(threads) do
      accepted_total = accepted_total + (thread:get("accepted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"accepted":%d,"limited":0,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, accepted_total,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
