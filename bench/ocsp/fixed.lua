-- wrk script: GET /fixed, the bench server's trivial handler (a fixed
-- 400-byte body): what net/http on loopback allows on this machine.
local common = dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
  common.requests = { wrk.format("GET", "/fixed") }
end

request = common.request
done = common.done
