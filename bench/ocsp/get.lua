-- wrk script: GET /ocsp/{base64 request}, cycling through the requests
-- that the bench server wrote (one path per line). Usage:
--   wrk ... -s bench/ocsp/get.lua http://ADDR -- bench/out/ocsp/get-paths.txt
local common = dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
  common.load(args[1] or "bench/out/ocsp/get-paths.txt", function(line)
    return wrk.format("GET", line)
  end)
end

request = common.request
done = common.done
