-- wrk script: every request is GET $REQUEST_PATH (default /) with an `x-api-key` of KEY_BYTES
-- bytes (default 2000) that no request had before: a counter, padded with "x". Against
-- examples/policies.rs, `/` is keyed by that header and `/health` is not, so the two paths
-- show what keying a long header costs over parsing it:
--   KEY_BYTES=30000 wrk -t1 -c4 -d3s -s benches/long_keys.lua http://127.0.0.1:3004/
--   KEY_BYTES=30000 REQUEST_PATH=/health wrk -t1 -c4 -d3s -s benches/long_keys.lua \
--       http://127.0.0.1:3004/health
local key_bytes = tonumber(os.getenv("KEY_BYTES") or "2000")
local path = os.getenv("REQUEST_PATH") or "/"
local pad = string.rep("x", key_bytes)
local counter = 0

function request()
    counter = counter + 1
    local key = counter .. pad
    return wrk.format("GET", path, { ["x-api-key"] = key:sub(1, key_bytes) })
end
