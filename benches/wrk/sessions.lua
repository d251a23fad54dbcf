-- wrk script for the review service benchmark (tests/it/web_bench.rs,
-- BENCHMARKS.md): every request is signed in as one of the seeded advisors
-- and asks for that advisor's own page or recording.
--
--   wrk -c200 -t2 -d15s --latency -s benches/wrk/sessions.lua http://127.0.0.1:PORT \
--       -- SESSIONS_FILE MODE THREADS
--
-- SESSIONS_FILE: one advisor per line, tab-separated: the session cookie
--   (`opptak_session=...`), the path, and the byte size of the WAV at that
--   path (0 for pages).
-- MODE: `page`  - GET the path; any status other than 200 is counted as
--                 unexpected (wrk itself counts only statuses above 399, and
--                 a lost session would be a 303 to /login);
--       `range` - GET the path with a 64 KiB `Range`: half of the requests
--                 from the start (what a player asks first), half from a
--                 random offset (a seek). Statuses above 399 are counted by
--                 wrk; bodies are not buffered in Lua.
-- THREADS: the -t value, so each thread takes its share of the advisors.
--
-- wrk has no per-connection hook, so each thread cycles through its
-- advisors in turn: with as many connections as advisors, the requests in
-- flight at any moment belong to (nearly) as many different advisors.

local threads = {}
local count = 0

function setup(thread)
   thread:set("id", count)
   table.insert(threads, thread)
   count = count + 1
end

function init(args)
   local file, mode, nthreads = args[1], args[2], tonumber(args[3])
   if file == nil or (mode ~= "page" and mode ~= "range") or nthreads == nil then
      error("usage: -- SESSIONS_FILE page|range THREADS")
   end
   sessions = {}
   local i = 0
   for line in io.lines(file) do
      local cookie, path, bytes = line:match("^([^\t]+)\t([^\t]+)\t(%d+)$")
      if cookie == nil then
         error("bad line in " .. file .. ": " .. line)
      end
      if i % nthreads == id then
         table.insert(sessions, { cookie = cookie, path = path, bytes = tonumber(bytes) })
      end
      i = i + 1
   end
   if #sessions == 0 then
      error("no sessions for thread " .. id .. " in " .. file)
   end
   ranged = mode == "range"
   if ranged then
      -- wrk buffers headers and bodies for Lua only when `response` exists.
      response = nil
   end
   nxt = 0
   unexpected = 0
   -- The same sequence of offsets every run, so rounds compare like with like.
   math.randomseed(1000 + id)
end

function request()
   nxt = nxt % #sessions + 1
   local s = sessions[nxt]
   local headers = { Cookie = s.cookie }
   if ranged then
      local start = 0
      if math.random() < 0.5 and s.bytes > 65536 then
         start = math.random(0, s.bytes - 65536)
      end
      headers["Range"] = string.format("bytes=%d-%d", start, start + 65535)
   end
   return wrk.format("GET", s.path, headers)
end

function response(status, headers, body)
   if status ~= 200 then
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("unexpected") or 0)
   end
   io.write(string.format(
      "opptak-wrk: requests=%d unexpected_status=%d p50_us=%d p99_us=%d max_us=%d\n",
      summary.requests, bad, latency:percentile(50), latency:percentile(99), latency.max))
end
