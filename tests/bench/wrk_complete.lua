-- wrk script for bench_http.py: task completions, each task completed exactly once.
--
--   wrk -t2 -c50 -d10s -s wrk_complete.lua http://127.0.0.1:PORT -- TASKS_FILE NTHREADS BODY_FILE
--
-- TASKS_FILE has one "PATH TOKEN" line per task (e.g. "/api/v1/tasks/<uuid>/complete <bearer token>").
-- Thread t of NTHREADS takes lines t, t+NTHREADS, …, so no two threads share a task; each request takes
-- the thread's next line. A thread that runs out stops (and done() reports it), so no task is posted twice.
-- BODY_FILE holds the JSON body sent with every request.
-- done() prints one line "BENCHJSON {...}" with the counts and the latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads, body_file = args[1], tonumber(args[2]), args[3]
  items = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == tid then
      local path, token = line:match("^(%S+)%s+(%S+)$")
      items[#items + 1] = { path, token }
    end
    n = n + 1
  end
  local f = assert(io.open(body_file, "r"))
  body = f:read("*a")
  f:close()
  idx = 0
  exhausted = 0
end

function request()
  idx = idx + 1
  local item = items[idx]
  if item == nil then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/__exhausted__")
  end
  return wrk.format("POST", item[1], {
    ["Authorization"] = "Bearer " .. item[2],
    ["Content-Type"] = "application/json",
  }, body)
end

function done(summary, latency, requests)
  local exhausted_threads, issued = 0, 0
  for _, t in ipairs(threads) do
    exhausted_threads = exhausted_threads + (t:get("exhausted") or 0)
    issued = issued + (t:get("idx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "non2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "exhausted_threads": %d, "issued": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout,
    exhausted_threads, issued))
end
