-- wrk script for bench/scale.sh: each request sends the next key of the file
-- KEYS_FILE (one key a line) in the apikey header.
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do
  if #line > 0 then keys[#keys + 1] = line end
end
assert(#keys > 0, "KEYS_FILE holds no keys")
local i = 0

request = function()
  i = i % #keys + 1
  return wrk.format("GET", "/", { ["apikey"] = keys[i] })
end
