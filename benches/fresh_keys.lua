-- wrk script: every request is GET $REQUEST_PATH (default /) with an `x-api-key` no request had
-- before (KEY_PREFIX, the thread and a counter; padded with "x" to KEY_BYTES bytes when that is
-- set). Counts the answers and prints one line at the end:
--   fresh_keys requests=.. seconds=.. sent=.. ok=.. limited=.. other=.. socket_errors=..
--   timeouts=.. p99_us=..
-- (ok: 200, limited: 429, other: any other status). Used by benches/flood.sh and
-- benches/redis_http.sh; against examples/policies.rs, `/` is keyed by the header and
-- `/health` is not, so the two paths show what keying a long header costs over parsing it:
--   KEY_BYTES=30000 wrk -t1 -c4 -d3s -s benches/fresh_keys.lua http://127.0.0.1:3004/
--   KEY_BYTES=30000 REQUEST_PATH=/health wrk -t1 -c4 -d3s -s benches/fresh_keys.lua \
--       http://127.0.0.1:3004/health
local key_prefix = os.getenv("KEY_PREFIX") or "k"
local key_bytes = tonumber(os.getenv("KEY_BYTES") or "0")
local pad = string.rep("x", key_bytes)
local path = os.getenv("REQUEST_PATH") or "/"
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function init(args)
    sent, ok, limited, other = 0, 0, 0, 0
    prefix = key_prefix .. "t" .. id .. "-"
end

function request()
    sent = sent + 1
    local key = prefix .. sent
    if #key < key_bytes then
        key = key .. pad:sub(1, key_bytes - #key)
    end
    return wrk.format("GET", path, { ["x-api-key"] = key })
end

function response(status, headers, body)
    if status == 200 then
        ok = ok + 1
    elseif status == 429 then
        limited = limited + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local sent_all, ok_all, limited_all, other_all = 0, 0, 0, 0
    for _, thread in ipairs(threads) do
        sent_all = sent_all + thread:get("sent")
        ok_all = ok_all + thread:get("ok")
        limited_all = limited_all + thread:get("limited")
        other_all = other_all + thread:get("other")
    end
    local e = summary.errors
    io.write(string.format(
        "fresh_keys requests=%d seconds=%.3f sent=%d ok=%d limited=%d other=%d "
            .. "socket_errors=%d timeouts=%d p99_us=%d\n",
        summary.requests, summary.duration / 1e6, sent_all, ok_all, limited_all, other_all,
        e.connect + e.read + e.write, e.timeout, latency:percentile(99)))
end
