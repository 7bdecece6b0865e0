-- Requests from a file (REQUESTS_FILE), cycled, one per call; bench/limit.py writes it.
-- Lines: "TOKENS<TAB>t1<TAB>t2..." (bearer tokens taken in turn when a request names none),
-- "PATIENTS<TAB>id1<TAB>id2..." (picked at random for {{PID}}), and request lines
-- "METHOD<TAB>PATH<TAB>TOKEN<TAB>BODY". In PATH and BODY, {{N}} is a 12-digit counter,
-- {{N64}} its base64 (16 characters), {{PID}} a patient id.
local lines, tokens, patients = {}, {}, {}
-- The counter starts from the clock: a warm-up run and the measured run just after it (or two
-- runs of one scenario) never send the same {{N}} (a second create of one INS is a 409).
local counter = (os.time() % 100000) * 1000000
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      out[#out + 1] = alphabet:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

local function split(rest)
  local parts = {}
  for item in rest:gmatch("[^\t]+") do parts[#parts + 1] = item end
  return parts
end

for line in io.lines(os.getenv("REQUESTS_FILE")) do
  local kind, rest = line:match("^(%u+)\t(.*)$")
  if kind == "TOKENS" then
    tokens = split(rest)
  elseif kind == "PATIENTS" then
    patients = split(rest)
  elseif kind then
    local path, token, body = rest:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    lines[#lines + 1] = {kind, path, token, body}
  end
end
math.randomseed(os.time())

request = function()
  counter = counter + 1
  local l = lines[(counter - 1) % #lines + 1]
  local n = string.format("%012d", counter)
  local pid = #patients > 0 and patients[math.random(#patients)] or ""
  local function fill(s)
    return (s:gsub("{{N}}", n):gsub("{{N64}}", b64(n)):gsub("{{PID}}", pid))
  end
  local token = l[3] ~= "" and l[3] or tokens[(counter - 1) % #tokens + 1]
  local headers = {["Authorization"] = "Bearer " .. token}
  local body = nil
  if l[4] ~= "" then
    headers["Content-Type"] = "application/fhir+json"
    body = fill(l[4])
  end
  return wrk.format(l[1], fill(l[2]), headers, body)
end

dofile("bench/wrk/report.lua")
