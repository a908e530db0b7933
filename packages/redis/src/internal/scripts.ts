/**
 * The Lua scripts of the Redis store, run by `internal/commands.ts` with EVALSHA on a SHA-1 computed
 * once (EVAL when the server does not know the script: a new server, a `SCRIPT FLUSH`), not through
 * ioredis' `defineCommand`, whose per-call wrapper (an argument copy, a second promise, and the
 * auto-pipelining it enables) cost more CPU than the command itself. Every read goes through `read`, so that an entry larger than
 * `maxEntryBytes` is never transferred: its length is checked on the server in the same round trip
 * and it is removed there. A lease-read (read, and lease an absent key, in one round trip) is `read`
 * with more ARGV, not a second script.
 *
 * @internal
 */

/**
 * `KEYS`: the keys to read. `ARGV[1]`: the largest entry, in bytes, that may be returned.
 * Returns one element per key: the value, `false` (nil: absent), or an integer when the key was
 * removed with `UNLINK` instead of read: its length when it was over the limit, `-1` when it held
 * another type than a string (no cache entry can be one, and a lease could never be taken over it,
 * so every get would wait for a fill). Any other error (`NOPERM`) fails the call: the size guard is
 * never skipped silently. `STRLEN` is O(1); when every key holds a string that fits (the common
 * case) the answer is one `MGET`.
 *
 * Lease-reads (`CacheStore.getOrLease`) come last in `KEYS`: `m = (#ARGV - 1) / 2` of them, and
 * `ARGV[2j]`, `ARGV[2j + 1]` (`j` = 1..m) are the lease value and its `PX` millis for
 * `KEYS[#KEYS - m + j]`. A batch of plain reads sends `ARGV[1]` only, as before. A lease-read key
 * that is absent, or was removed here, gets `SET key lease PX millis NX` in the same script and is
 * answered as the plain read would (nil, or the removed key's integer): the caller holds the lease.
 * When the `SET NX` loses (the same key leased earlier in this batch) the answer is the key's value
 * (that lease). A refused `SET` (`OOM`, `NOPERM`) is that key's element, an error reply: only
 * that lease-read fails, the plain reads sharing the call are answered. Removals all happen before
 * any read or lease, so a key asked twice is never removed after it was leased.
 *
 * @internal
 */
export const read = `
local max = tonumber(ARGV[1])
local removed = nil
for i = 1, #KEYS do
  local len = redis.pcall("STRLEN", KEYS[i])
  if type(len) == "table" then
    -- any error but WRONGTYPE (NOPERM, ...) is the reply: the guard is never skipped
    if string.sub(len.err, 1, 9) ~= "WRONGTYPE" then return len end
    removed = removed or {}
    removed[i] = -1
  elseif len > max then
    removed = removed or {}
    removed[i] = len
  end
end
local out
if removed then
  for i = 1, #KEYS do
    if removed[i] then redis.call("UNLINK", KEYS[i]) end
  end
  out = {}
  for i = 1, #KEYS do
    out[i] = removed[i] or redis.call("GET", KEYS[i]) or false
  end
elseif #ARGV == 1 then
  return redis.call("MGET", unpack(KEYS))
else
  out = redis.call("MGET", unpack(KEYS))
end
local first = #KEYS - (#ARGV - 1) / 2
for j = 1, (#ARGV - 1) / 2 do
  local i = first + j
  if not out[i] or type(out[i]) == "number" then
    local set = redis.pcall("SET", KEYS[i], ARGV[2 * j], "PX", ARGV[2 * j + 1], "NX")
    if type(set) == "table" and set.err then
      out[i] = set
    elseif not set then
      out[i] = redis.call("GET", KEYS[i]) or false
    end
  end
end
return out
`

/**
 * Most keys per `read` call: Lua's `unpack` is bounded by the C stack (about 8,000 values).
 *
 * @internal
 */
export const readBatchLimit = 1000

/**
 * `KEYS[1]`; `ARGV`: expected SHA-1 (hex), new value, PX millis. 1 when written. The `STRLEN` after
 * the write keeps the key tracked for a connection with client-side caching on (its own write ended
 * the tracking; see `tracking.ts`). @internal
 */
export const compareAndSet = `
local current = redis.call("GET", KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
  redis.call("STRLEN", KEYS[1])
  return 1
end
return 0
`

/**
 * `compareAndSet` over many keys in one call (the fills of one phase of the event loop): `KEYS` the keys, and for
 * `KEYS[i]` `ARGV[3i - 2]`, `ARGV[3i - 1]`, `ARGV[3i]` its expected SHA-1 (hex), new value and PX
 * millis. Returns one element per key: 1 written, 0 not (the key holds other bytes or is absent),
 * or that key's error reply (`OOM`, `WRONGTYPE`, `NOPERM`): every key is tried, in order (a key
 * given twice is compared against what the first write left), and one refused write fails its
 * own fill only. @internal
 */
export const compareAndSetMany = `
local out = {}
for i = 1, #KEYS do
  local current = redis.pcall("GET", KEYS[i])
  if type(current) == "table" and current.err then
    out[i] = current
  elseif current and redis.sha1hex(current) == ARGV[3 * i - 2] then
    local set = redis.pcall("SET", KEYS[i], ARGV[3 * i - 1], "PX", ARGV[3 * i])
    if type(set) == "table" and set.err then
      out[i] = set
    else
      -- as in compareAndSet: keeps the key tracked for a connection with client-side caching on
      redis.call("STRLEN", KEYS[i])
      out[i] = 1
    end
  else
    out[i] = 0
  end
end
return out
`

/**
 * Most keys per `compareAndSetMany` call, so that one call stays a short stop of the server.
 *
 * @internal
 */
export const fillBatchLimit = 256

/**
 * About the most bytes of values per `compareAndSetMany` call (a larger value goes alone): a
 * batch of large entries is never one huge command.
 *
 * @internal
 */
export const fillBatchBytes = 1024 * 1024

/** `KEYS[1]`; `ARGV[1]`: expected SHA-1 (hex). 1 when deleted. @internal */
export const compareAndDelete = `
local current = redis.call("GET", KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`
