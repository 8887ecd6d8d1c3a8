-- wrk script: POST /send with a JSON email, a different recipient on every request.
--
-- Environment (read when wrk loads the script, in the main state and in each thread):
--   BENCH_TOTAL     0: send for wrk's -d duration (ingest). N > 0: send exactly N emails in
--                   all, split between the threads, then go idle (end-to-end runs).
--   BENCH_THREADS   wrk's -t, to split BENCH_TOTAL.
--   BENCH_DONE_DIR  where each thread writes a file once all its emails are answered: wrk
--                   itself runs for the whole -d, so the harness interrupts it when every
--                   thread has reported.
-- The Authorization header comes from wrk's -H. done() prints one line "BENCH_JSON {...}".

local total = tonumber(os.getenv("BENCH_TOTAL") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local done_dir = os.getenv("BENCH_DONE_DIR") or ""

-- main state: hand each thread its number
local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- thread state
id = 0
local quota = 0
issued = 0  -- requests sent (counted runs only)
sequence = 0  -- numbers the recipients
answered = 0
accepted = 0
limited = 0  -- 429 answers (the key's rate limit)
local finished = false
local headers = {}

local function report_done()
   finished = true
   local f = assert(io.open(done_dir .. "/thread-" .. id, "w"))
   f:write(string.format("%d %d\n", answered, accepted))
   f:close()
end

function init(args)
   -- wrk.format() uses the table it is given instead of wrk.headers (from -H): merge them.
   for name, value in pairs(wrk.headers) do
      headers[name] = value
   end
   headers["Content-Type"] = "application/json"
   if total > 0 then
      quota = math.floor(total / nthreads)
      if id < total % nthreads then
         quota = quota + 1
      end
      if quota == 0 then
         report_done()
      end
   end
end

if total > 0 then
   -- Called before every request: once this thread's share is out, its connections idle
   -- (an hour's delay) instead of sending more.
   -- Counting here, not in request(): wrk calls request() once more than it sends (a dry
   -- run in the first thread at start-up), but delay() exactly once per request sent.
   function delay()
      if issued >= quota then
         return 3600000
      end
      issued = issued + 1
      return 0
   end
end

function request()
   sequence = sequence + 1
   local body = string.format(
      '{"to":"user-%d-%d@example.com","subject":"bench","text":"hello"}', id, sequence)
   return wrk.format("POST", "/send", headers, body)
end

function response(status, headers, body)
   answered = answered + 1
   if status == 202 then
      accepted = accepted + 1
   elseif status == 429 then
      limited = limited + 1
   end
   if total > 0 and answered >= quota and not finished then
      report_done()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local accepted_total = 0
   local limited_total = 0
   for _, thread in ipairs(threads) do
      accepted_total = accepted_total + (thread:get("accepted") or 0)
      limited_total = limited_total + (thread:get("limited") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"accepted":%d,"limited":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, accepted_total, limited_total,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
