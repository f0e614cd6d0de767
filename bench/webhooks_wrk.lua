-- wrk script for bench/bench_webhooks.py: POST pre-signed call-status events, each once.
-- Arguments: the events file (one "signature<TAB>form body" per line) and the number of wrk
-- threads; thread k sends lines k, k+n, k+2n... so no event is sent twice while any is left.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local bodies, sigs = {}, {}
local i = 0
function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    if n % tonumber(args[2]) == id then
      local sig, body = line:match("([^\t]+)\t(.*)")
      table.insert(sigs, sig); table.insert(bodies, body)
    end
    n = n + 1
  end
end
function request()
  i = i + 1
  local k = ((i - 1) % #bodies) + 1
  return wrk.format("POST", "/v1/twilio/call-status",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = sigs[k]}, bodies[k])
end
