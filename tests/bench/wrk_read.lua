-- wrk script for bench_http.py: inbox reads by many users.
--
--   wrk -t2 -c50 -d10s -s wrk_read.lua http://127.0.0.1:PORT -- READS_FILE NTHREADS
--
-- READS_FILE has one "PATH TOKEN" line per user (e.g. "/api/v1/tasks?scope=mine <bearer token>").
-- Thread t of NTHREADS cycles through lines t, t+NTHREADS, …, one user per request.
-- done() prints one line "BENCHJSON {...}" with the counts and the latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  items = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == tid then
      local path, token = line:match("^(%S+)%s+(%S+)$")
      items[#items + 1] = { path, token }
    end
    n = n + 1
  end
  idx = 0
end

function request()
  idx = idx % #items + 1
  local item = items[idx]
  return wrk.format("GET", item[1], { ["Authorization"] = "Bearer " .. item[2] })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "non2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "exhausted_threads": 0, "issued": 0}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
