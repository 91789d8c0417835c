-- wrk script: send pre-built pushes from a file, each distinct, in the file's order.
--
--   wrk -t T -c C -d D -s bench/push.lua http://127.0.0.1:PORT -- FILE T MODE [MARKER]
--
-- FILE has one request per line: "path<TAB>name: value<TAB>...<TAB>body" (bench/pushes.py writes it).
-- Thread i of T sends lines i, i+T, i+2T, ... so the file's order holds across threads.
-- MODE "loop": send for the whole duration; past the end of the file start over and count the wrap
--   (a receiver answers a replayed nonce with 401, so a run that wraps says so in its figures).
-- MODE "once": send every line exactly once, then idle; when all answers are in, write MARKER.<i>
--   and stop the thread, so the caller can end wrk early (SIGINT) instead of waiting out -d.
-- Requests are built in init(), before the clock starts: request() is a table lookup.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local function build(line)
   local fields = {}
   for field in string.gmatch(line, "[^\t]+") do
      fields[#fields + 1] = field
   end
   local headers = {}
   for i = 2, #fields - 1 do
      local name, value = string.match(fields[i], "^([^:]+): (.*)$")
      headers[name] = value
   end
   return wrk.format("POST", fields[1], headers, fields[#fields])
end

function init(args)
   local file, nthreads, mode, marker = args[1], tonumber(args[2] or "1"), args[3] or "loop", args[4]
   requests, sent, answered, wrapped, non200 = {}, 0, 0, 0, 0
   local n = 0
   for line in io.lines(file) do
      if n % nthreads == id then
         requests[#requests + 1] = build(line)
      end
      n = n + 1
   end
   -- wrk calls request() once on thread 0 before the run, only to check the script: not a send.
   checking = (id == 0)
   if mode == "once" then
      -- Defined only in this mode: wrk pays for delay() and response() on every request when they exist.
      delay = function()
         if sent >= #requests then
            return 3600000 -- nothing left to send: park the connection until the thread stops
         end
         return 0
      end
      response = function(status, headers, body)
         answered = answered + 1
         if status ~= 200 then
            non200 = non200 + 1
         end
         if answered >= #requests then
            local f = io.open(marker .. "." .. id, "w")
            f:write(answered, "\n")
            f:close()
            wrk.thread:stop()
         end
      end
   end
end

function request()
   if checking then
      checking = false
      return requests[1]
   end
   if sent >= #requests then
      wrapped = wrapped + 1
   end
   local r = requests[sent % #requests + 1]
   sent = sent + 1
   return r
end

function done(summary, latency, requests)
   local wrapped_all, non200_all, answered_all = 0, 0, 0
   for _, t in ipairs(threads) do
      wrapped_all = wrapped_all + t:get("wrapped")
      non200_all = non200_all + t:get("non200")
      answered_all = answered_all + t:get("answered")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
         .. '"mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, '
         .. '"timeouts": %d, "wrapped": %d, "non200": %d, "answered": %d}\n',
      summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(90.0),
      latency:percentile(99.0), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout,
      wrapped_all, non200_all, answered_all))
end
