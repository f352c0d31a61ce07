-- seed.lua: writes keys <PREFIX><i> (i zero-padded to PAD digits) for i in [START, START+COUNT) into a Keyhold vault,
-- each key exactly once, through the ordinary API (PUT, fsynced and audited like any write), spread over wrk's
-- threads and connections: thread t of T takes i = START + (t-1), START + (t-1) + T, ...
-- The first request of each thread is GET /v1/health (see request()). When a thread has sent its share it sends GET /v1/health (no side effect) until every write it sent has
-- answered, then writes DONE_DIR/done-<t> ("<ok> <failed>") and stops. The caller sends SIGINT to wrk once all
-- T files exist (wrk otherwise runs for its full -d).
-- Env: VAULT_ID, TOKEN, START, COUNT, THREADS (= wrk -t), DONE_DIR; PREFIX (big/k), PAD (7).
local vault   = os.getenv("VAULT_ID") or error("set VAULT_ID")
local token   = os.getenv("TOKEN") or error("set TOKEN")
local start   = tonumber(os.getenv("START") or error("set START"))
local count   = tonumber(os.getenv("COUNT") or error("set COUNT"))
local nthr    = tonumber(os.getenv("THREADS") or error("set THREADS"))
local donedir = os.getenv("DONE_DIR") or error("set DONE_DIR")
local prefix  = os.getenv("PREFIX") or "big/k"
local pad     = tonumber(os.getenv("PAD") or "7")

local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local base = "/v1/vaults/" .. vault .. "/secrets/" .. prefix
local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
local health = nil
local nexti, last, quota = 0, 0, 0
local ok, failed, finished, primed = 0, 0, false, false
codes = {}

function init(args)
  math.randomseed(os.time() * 1000 + id)
  health = wrk.format("GET", "/v1/health")
  nexti = start + id - 1
  last = start + count - 1
  quota = 0
  if nexti <= last then quota = math.floor((last - nexti) / nthr) + 1 end
end

local function value()
  local t = {}
  for k = 1, 64 do local r = math.random(1, #charset); t[k] = charset:sub(r, r) end
  return table.concat(t)
end

function request()
  -- wrk 4.1 calls request() once on the first thread to check the script, without sending it: the first call of
  -- every thread therefore returns the harmless health check, so no key is ever skipped.
  if not primed then
    primed = true
    return health
  end
  if nexti <= last then
    local i = nexti
    nexti = nexti + nthr
    return wrk.format("PUT", base .. string.format("%0" .. pad .. "d", i), headers, '{"value":"' .. value() .. '"}')
  end
  return health
end

-- Once its share is sent, a thread paces its health checks (10 ms apart per connection) so that they do not
-- compete with the writes still in flight.
function delay()
  if nexti > last then return 10 end
  return 0
end

function response(status, hdrs, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 201 then ok = ok + 1 elseif status ~= 200 then failed = failed + 1 end
  if not finished and ok + failed >= quota then
    finished = true
    local f = io.open(donedir .. "/done-" .. id, "w")
    f:write(ok, " ", failed, "\n")
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local all, parts = {}, {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    if c then for s, n in pairs(c) do all[s] = (all[s] or 0) + n end end
  end
  for s, n in pairs(all) do table.insert(parts, string.format('"%d":%d', s, n)) end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"codes":{%s}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
