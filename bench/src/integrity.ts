/**
 * The cost of entry integrity (`signingKey`): CPU per hit and per miss on the memory store, signed
 * against unsigned, in interleaved rounds (each round runs both, in alternating order; the table
 * reports the median of the per-round figures). The decode memo is off, so every hit verifies
 * its MAC (with the memo on, a hit whose bytes did not change skips decoding and verifying alike).
 *
 * A hit: `get` of a warm key (read, verify, decode). A miss: `get` of a new key (read, lease,
 * lookup, encode, sign, verify the bytes just encoded, fill).
 *
 * Run: `cd bench && npx tsx src/integrity.ts` (about 40 s on a loaded 2-core machine). Environment: `BENCH_OPS` gets per run
 * (default 20000), `BENCH_ROUNDS` (default 7), `BENCH_NAME_BYTES` size of the value's name field
 * (default 40; 4000 makes entries gzipped).
 */
import { CacheAside, MemoryCacheStore } from "@cache-aside/core"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as crypto from "node:crypto"
import { performance } from "node:perf_hooks"

const envInt = (name: string, fallback: number): number => {
  const parsed = Number.parseInt(process.env[name] ?? "", 10)
  return Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}

const OPS = envInt("BENCH_OPS", 20_000)
const KEYS_MIN = 1000
const ROUNDS = envInt("BENCH_ROUNDS", 7)
const NAME_BYTES = envInt("BENCH_NAME_BYTES", 40)
const MISS_OPS = Math.max(KEYS_MIN, Math.floor(OPS / 5))
const KEYS = 1000

class User extends Schema.Class<User>("User")({
  id: Schema.Number,
  name: Schema.String,
  email: Schema.String,
  createdAt: Schema.Date
}) {}

const user = (id: number) =>
  new User({ id, name: "n".repeat(NAME_BYTES), email: `user${id}@example.com`, createdAt: new Date(0) })

const signingKey = Redacted.make("bench-signing-key-0123456789abcdef0123")

/** Microseconds per hit and per miss for one contender, on a fresh store and cache. */
const run = (signed: boolean) =>
  Effect.gen(function*() {
    const users = yield* CacheAside.make({
      namespace: "bench",
      key: (id: number) => String(id),
      schema: User,
      lookup: (id: number) => Effect.succeed(Option.some(user(id))),
      ttl: "1 hour",
      decodeCacheSize: 0,
      lock: false,
      ...(signed ? { signingKey } : {})
    })
    const missStart = performance.now()
    for (let id = 0; id < MISS_OPS; id++) yield* users.get(id)
    const miss = ((performance.now() - missStart) * 1000) / MISS_OPS
    const hitStart = performance.now()
    for (let i = 0; i < OPS; i++) yield* users.get(i % KEYS)
    const hit = ((performance.now() - hitStart) * 1000) / OPS
    return { hit, miss }
  }).pipe(
    Effect.scoped,
    Effect.provide(MemoryCacheStore.layer({ maxEntries: OPS * 2, maxBytes: 1024 * 1024 * 1024 }))
  )

/** Microseconds per HMAC-SHA256 (as the integrity module computes it) over an entry's bytes. */
const macAlone = (bytes: number): number => {
  const key = crypto.createSecretKey(Buffer.from(Redacted.value(signingKey)))
  const payload = Buffer.alloc(bytes, 0x61)
  const length = Buffer.alloc(4)
  const name = Buffer.from("cache:bench:1:123")
  const n = OPS * 5
  const start = performance.now()
  for (let i = 0; i < n; i++) crypto.createHmac("sha256", key).update(length).update(name).update(payload).digest()
  return ((performance.now() - start) * 1000) / n
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = Effect.gen(function*() {
  yield* run(false) // warm-up (JIT)
  yield* run(true)
  const results = {
    unsigned: { hit: [] as Array<number>, miss: [] as Array<number> },
    signed: { hit: [] as Array<number>, miss: [] as Array<number> }
  }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? [false, true] : [true, false]
    for (const signed of order) {
      const r = yield* run(signed)
      const into = signed ? results.signed : results.unsigned
      into.hit.push(r.hit)
      into.miss.push(r.miss)
    }
  }
  const row = (name: string, r: { hit: Array<number>; miss: Array<number> }) =>
    `${name.padEnd(9)} hit ${median(r.hit).toFixed(2)} µs   miss ${median(r.miss).toFixed(2)} µs`
  console.log(`ops ${OPS} x ${ROUNDS} rounds, name ${NAME_BYTES} bytes, decode memo off, memory store`)
  const bytes = JSON.stringify({ v: { ...user(1), createdAt: new Date(0).toISOString() }, x: 0, d: 0 }).length
  console.log(`one HMAC-SHA256 over ${bytes} bytes: ${macAlone(bytes).toFixed(2)} µs`)
  console.log(row("unsigned", results.unsigned))
  console.log(row("signed", results.signed))
  console.log(
    `cost     hit +${(median(results.signed.hit) - median(results.unsigned.hit)).toFixed(2)} µs   miss +${
      (median(results.signed.miss) - median(results.unsigned.miss)).toFixed(2)
    } µs`
  )
})

Effect.runPromise(main)
