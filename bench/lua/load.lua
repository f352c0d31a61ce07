-- load.lua: the one wrk load script for both servers, so both get exactly the same request mix.
--
-- STYLE=keyhold  read : GET  /v1/vaults/<VAULT_ID>/secrets/<key>            Authorization: Bearer <TOKEN>
--                write: PUT  /v1/vaults/<VAULT_ID>/secrets/<key>  {"value":"<64 chars>"}
-- STYLE=bao      read : GET  /v1/<MOUNT>/data/<key>                         X-Vault-Token: <TOKEN>
-- STYLE=health   every request GET /v1/health (Keyhold's ceiling: the same server and connections, no work)
--                write: POST /v1/<MOUNT>/data/<key>  {"data":{"value":"<64 chars>"}}   (KV v2 create/update)
-- <key> = <PREFIX><i> with i uniform in [0, KEYS), zero-padded to PAD digits when PAD > 0.
--
-- Env: STYLE, TOKEN (required); VAULT_ID (keyhold); MOUNT (secret); KEYS (1000); PREFIX (bench/k); PAD (0);
--      WRITE_PCT: share of writes in percent (0 = read, 100 = write, 10 = mixed);
--      PREFORMAT (1): format every read request once in init() (only when KEYS <= 100000), else per request;
--      STATUS_DETAIL (1): count every status code in response() (exact non-2xx); 0 = use wrk's own count (>399).
-- Writes carry a fresh 64-character value: an 8-character thread/sequence tag + 56 characters from a per-thread
-- pool of random strings built in init(), so the client spends little CPU on it.
-- done() prints one line: RESULT {json}.
local style     = os.getenv("STYLE") or error("set STYLE=keyhold|bao|health")
local token     = os.getenv("TOKEN") or (style == "health" and "") or error("set TOKEN")
local nkeys     = tonumber(os.getenv("KEYS") or "1000")
local prefix    = os.getenv("PREFIX") or "bench/k"
local pad       = tonumber(os.getenv("PAD") or "0")
local write_pct = tonumber(os.getenv("WRITE_PCT") or "0")
local preformat = (os.getenv("PREFORMAT") or "1") ~= "0" and nkeys <= 100000
local detail    = (os.getenv("STATUS_DETAIL") or "1") ~= "0"

local base, rheaders, wheaders, wmethod, body_open, body_close
if style == "keyhold" then
  local vault = os.getenv("VAULT_ID") or error("set VAULT_ID")
  base = "/v1/vaults/" .. vault .. "/secrets/"
  rheaders = { ["Authorization"] = "Bearer " .. token }
  wheaders = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  wmethod, body_open, body_close = "PUT", '{"value":"', '"}'
elseif style == "bao" then
  base = "/v1/" .. (os.getenv("MOUNT") or "secret") .. "/data/"
  rheaders = { ["X-Vault-Token"] = token }
  wheaders = { ["X-Vault-Token"] = token, ["Content-Type"] = "application/json" }
  wmethod, body_open, body_close = "POST", '{"data":{"value":"', '"}}'
elseif style == "health" then
  base, rheaders, write_pct = "/v1/health", {}, 0
else
  error("STYLE must be keyhold, bao or health")
end

local fmt = pad > 0 and ("%0" .. pad .. "d") or "%d"
local function key(i)
  if style == "health" then return "" end
  return prefix .. string.format(fmt, i)
end

local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local function randstr(n)
  local t = {}
  for k = 1, n do local r = math.random(1, #charset); t[k] = charset:sub(r, r) end
  return table.concat(t)
end

local POOL = 1024
local pool = {}
local reads = {}
local seq = 0
codes = {}

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  for k = 1, POOL do pool[k] = randstr(56) end
  if preformat then
    for i = 0, nkeys - 1 do reads[i + 1] = wrk.format("GET", base .. key(i), rheaders) end
  end
end

local function write(i)
  seq = seq + 1
  local value = string.format("%02d%06d", (id or 0) % 100, seq % 1000000) .. pool[math.random(1, POOL)]
  return wrk.format(wmethod, base .. key(i), wheaders, body_open .. value .. body_close)
end

function request()
  local i = math.random(0, nkeys - 1)
  if write_pct > 0 and (write_pct >= 100 or math.random() * 100 < write_pct) then
    return write(i)
  end
  if preformat then return reads[i + 1] end
  return wrk.format("GET", base .. key(i), rheaders)
end

if detail then
  function response(status, headers, body)
    codes[status] = (codes[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local all, non2xx, parts = {}, 0, {}
  if detail then
    for _, t in ipairs(threads) do
      local c = t:get("codes")
      if c then for s, n in pairs(c) do all[s] = (all[s] or 0) + n end end
    end
    for s, n in pairs(all) do
      if s < 200 or s > 299 then non2xx = non2xx + n end
      table.insert(parts, string.format('"%d":%d', s, n))
    end
  else
    non2xx = e.status
  end
  io.write(string.format(
    'RESULT {"requests":%d,"bytes":%d,"duration_s":%.3f,"rps":%.1f,"mean_ms":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,"non2xx":%d,"wrk_status_errors":%d,"socket_errors":{"connect":%d,' ..
    '"read":%d,"write":%d,"timeout":%d},"codes":{%s}}\n',
    summary.requests, summary.bytes, secs, summary.requests / secs, latency.mean / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000, non2xx, e.status,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
