-- wrk script for the overload check (docs/performance.md): counts 200, 503 and other answers.
-- wrk -t1 -c256 -d8s --timeout 30s -s bench/overload.lua http://127.0.0.1:8000/api/models/iris/predict
wrk.method = "POST"
wrk.body = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) ok = 0; rejected = 0; other = 0 end
response = function(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 503 then rejected = rejected + 1 else other = other + 1 end
end
done = function(summary, latency, requests)
  local o, r, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); r = r + t:get("rejected"); x = x + t:get("other") end
  io.write(string.format("ok %d rejected %d other %d p50 %.1fms p99 %.1fms max %.1fms\n", o, r, x, latency:percentile(50)/1000, latency:percentile(99)/1000, latency.max/1000))
end
