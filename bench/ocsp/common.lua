-- Shared by the OCSP wrk scripts: requests formatted once per thread (so
-- that Lua does not become the bottleneck), replayed in a cycle, and one
-- machine-readable result line at the end for run.sh.
local M = { requests = {}, i = 0 }

-- load reads file and turns each non-empty line into a request with fmt.
function M.load(file, fmt)
  for line in io.lines(file) do
    if line ~= "" then
      M.requests[#M.requests + 1] = fmt(line)
    end
  end
  if #M.requests == 0 then
    error("no requests in " .. file)
  end
  -- Threads start at different places in the cycle.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  M.i = math.random(#M.requests) - 1
end

function M.request()
  M.i = M.i % #M.requests + 1
  return M.requests[M.i]
end

-- done prints: RESULT <requests/s> <p50 ms> <p99 ms> <max ms> <errors> <non-2xx/3xx>
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.3f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end

return M
