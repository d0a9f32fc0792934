-- wrk script: POST /ocsp with a DER request, cycling through the requests
-- that the bench server wrote (hex, one per line). Usage:
--   wrk ... -s bench/ocsp/post.lua http://ADDR -- bench/out/ocsp/post-bodies.hex
local common = dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
  common.load(args[1] or "bench/out/ocsp/post-bodies.hex", function(line)
    local body = line:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    return wrk.format("POST", "/ocsp", { ["Content-Type"] = "application/ocsp-request" }, body)
  end)
end

request = common.request
done = common.done
