-- Prints wrk's summary as one JSON line prefixed by "BENCH_JSON " for the harness.
-- With WRK_DELAY_MS set, every connection waits that long after each response
-- before its next request: a paced (moderate, fixed) load instead of saturation.
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")

if pause then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
