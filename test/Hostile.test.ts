/**
 * Hostile entries and keys on a real redis-server (issue 9's table): each entry is written with a
 * plain ioredis client, as another program, an older release or an attacker with write access
 * would, and the outcome is counted: the process survives, memory stays under a stated bound
 * (measured after a forced GC), the get answers from the lookup, the entry is evicted (the hostile
 * bytes are gone from Redis) and `getMany` answers the good keys. Key tests run on both stores.
 *
 * Who makes each pass: the 100 MB entry is the Redis store's (removed on the server by the read
 * script, no timeout, no breaker); the gzip bombs, deep nesting and `__proto__` are the codec's;
 * the dead entry (expiry 0), lone surrogates and prefix overlap are the read path's.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import { CacheStore } from "@cache-aside/core/CacheStore"
import * as MemoryCacheStore from "@cache-aside/core/MemoryCacheStore"
import { RedisCacheStore, RedisClient } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome } from "@effect/vitest/utils"
import { Cause, Context, Duration, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as Zlib from "node:zlib"
import { RedisServer } from "./utils/RedisServer.js"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

/** Heap and external memory after a full GC, in MiB. */
const memoryMiB = Effect.sync(() => {
  gc()
  gc()
  const usage = process.memoryUsage()
  return (usage.heapUsed + usage.external) / 2 ** 20
})

/**
 * How much memory the hostile reads may leave behind: without bounds, 12 entries inflating to
 * 256 MB each kept 3 GB in the decode memo and killed the process; with them, nothing large is
 * kept. 128 MiB is generous against noise and far below one hostile entry's inflated size.
 */
const memoryGrowthBound = 128

/** Against hangs only: a get that answers from the lookup takes milliseconds. */
const getBound = Duration.seconds(10)

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

const user = (id: number) => new User({ id, name: `user ${id}` })

/** A far-future logical expiry (epoch ms) for hand-written entries. */
const future = 4_102_444_800_000

/** Streams `parts` through gzip (level 9) without holding the inflated text in memory. */
const gzip = (parts: () => Iterable<Buffer>): Effect.Effect<Buffer> =>
  Effect.async<Buffer>((resume) => {
    const stream = Zlib.createGzip({ level: 9 })
    const out: Array<Buffer> = []
    stream.on("data", (chunk: Buffer) => out.push(chunk))
    stream.on("end", () => resume(Effect.succeed(Buffer.concat(out))))
    for (const part of parts()) stream.write(part)
    stream.end()
  })

interface Harness {
  readonly users: CacheAside.CacheAside<number, User, never>
  readonly source: DataSource.Memory<number, User>
  readonly snapshot: Effect.Effect<Metrics.Snapshot>
  readonly raw: Redis
  /** The Redis key of an id, found in Redis after a fill (so the test does not depend on the key layout). */
  readonly keyOf: (id: number) => Effect.Effect<string>
}

const ids = Array.from({ length: 20 }, (_, i) => i + 1)

/** A Redis store, a cache over users 1..20 (all warmed), and a plain client for writing hostile bytes. */
const harness = (
  namespace: string,
  options: { readonly lock?: boolean; readonly commandTimeout?: Duration.DurationInput } = {}
) =>
  Effect.gen(function*() {
    const server = yield* RedisServer.make
    const context = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer({
          url: Redacted.make(server.url),
          // these tests count lookups: a read timed out by a loaded machine would add one
          commandTimeout: options.commandTimeout ?? "2 seconds"
        }),
        Metrics.layer
      )
    )
    const source = yield* DataSource.memory<number, User>(ids.map((id) => [id, user(id)] as const))
    const users = yield* CacheAside.make({
      namespace,
      key: (id: number) => String(id),
      schema: User,
      lookup: source,
      ttl: "10 minutes",
      ...(options.lock === undefined ? {} : { lock: options.lock })
    }).pipe(Effect.provide(context))
    const raw = new Redis(server.url)
    yield* Effect.addFinalizer(() => Effect.sync(() => raw.disconnect()))
    yield* users.getMany(ids) // warm: every id cached
    const keyOf = (id: number) =>
      Effect.promise(async () => {
        const keys = await raw.keys(`*${namespace}*`)
        const key = keys.find((k) => k.endsWith(`:${id}`))
        if (key === undefined) throw new Error(`no key for ${id} among ${keys.length}`)
        return key
      })
    const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace)).pipe(Effect.provide(context))
    const harness: Harness = { users, source, snapshot, raw, keyOf }
    return harness
  })

/** Overwrites the entries of `victims` with `bytes`; returns their keys. */
const plant = (h: Harness, victims: ReadonlyArray<number>, bytes: Buffer | string) =>
  Effect.forEach(
    victims,
    (id) =>
      Effect.flatMap(h.keyOf(id), (key) =>
        Effect.promise(() => h.raw.set(key, bytes, "PX", 600_000)).pipe(Effect.as(key)))
  )

/** Whether a key still holds these exact bytes (compared on the server: the test never reads a large value). */
const stillHolds = (h: Harness, key: string, bytes: Buffer | string) =>
  Effect.promise(async () => {
    const length = await h.raw.strlen(key)
    const expected = typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.length
    if (length !== expected) return false
    const head = await h.raw.getrangeBuffer(key, 0, 63)
    const want = (typeof bytes === "string" ? Buffer.from(bytes) : bytes).subarray(0, 64)
    return head.equals(want)
  })

/**
 * The common assertions: every victim answers its user from the lookup (one lookup each), the good
 * keys answer from the cache in the same `getMany`, and the hostile bytes are gone from Redis.
 */
const survives = (h: Harness, victims: ReadonlyArray<number>, bytes: Buffer | string, keys: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const good = ids.filter((id) => !victims.includes(id)).slice(0, 3)
    const loadsBefore = yield* h.source.loads
    const many = yield* h.users.getMany([...victims, ...good]).pipe(Effect.timeout(getBound))
    for (const [i, id] of [...victims, ...good].entries()) assertSome(many[i]!, user(id))
    assert.strictEqual(
      (yield* h.source.loads) - loadsBefore,
      victims.length,
      "one lookup per hostile entry, none for good keys"
    )
    for (const [i, key] of keys.entries()) {
      assert.isFalse(yield* stillHolds(h, key, bytes), `hostile entry ${victims[i]} was not evicted`)
    }
    // and single gets after that: answered (hits now), no new lookups
    for (const id of victims) assertSome(yield* h.users.get(id).pipe(Effect.timeout(getBound)), user(id))
    assert.strictEqual((yield* h.source.loads) - loadsBefore, victims.length)
  })

describe("hostile entries (Redis)", () => {
  it.scopedLive("gzip inflating to a valid entry holding a 256 MB string, under 12 keys", () =>
    Effect.gen(function*() {
      const h = yield* harness("bomb256")
      const mib = Buffer.alloc(2 ** 20, 0x61)
      const bytes = yield* gzip(function*() {
        yield Buffer.from(`{"v":{"id":1,"name":"`)
        for (let i = 0; i < 256; i++) yield mib
        yield Buffer.from(`"},"x":${future},"d":0}`)
      })
      assert.isBelow(bytes.length, 512 * 1024)
      const before = yield* memoryMiB
      const victims = ids.slice(0, 12)
      const keys = yield* plant(h, victims, bytes)
      yield* survives(h, victims, bytes, keys)
      const growth = (yield* memoryMiB) - before
      assert.isBelow(growth, memoryGrowthBound, `memory grew by ${growth.toFixed(0)} MiB`)
      assert.isAtLeast((yield* h.snapshot).decodeErrors, 12)
    }), { timeout: 60_000 })

  it.scopedLive("a 1 MB gzip bomb inflating to 1 GiB", () =>
    Effect.gen(function*() {
      const h = yield* harness("bomb1g")
      const zeros = Buffer.alloc(2 ** 20, 0)
      const bytes = yield* gzip(function*() {
        for (let i = 0; i < 1024; i++) yield zeros
      })
      const before = yield* memoryMiB
      const keys = yield* plant(h, [1], bytes)
      yield* survives(h, [1], bytes, keys)
      const growth = (yield* memoryMiB) - before
      assert.isBelow(growth, memoryGrowthBound, `memory grew by ${growth.toFixed(0)} MiB`)
    }), { timeout: 60_000 })

  it.scopedLive(
    "a 100 MB plain entry: removed on the server, never transferred; no timeout, breaker closed",
    () =>
      Effect.gen(function*() {
        // the default command timeout (250 ms): the entry must cost no timeout with the real setting
        const h = yield* harness("huge", { commandTimeout: RedisClient.defaultCommandTimeout })
        const keys = yield* Effect.suspend(() => plant(h, [1, 2], Buffer.alloc(100 * 2 ** 20, 0x7b)))
        const before = yield* memoryMiB
        const loadsBefore = yield* h.source.loads
        const many = yield* h.users.getMany([1, 2, 3, 4]).pipe(Effect.timeout(getBound))
        for (const [i, id] of [1, 2, 3, 4].entries()) assertSome(many[i]!, user(id))
        assert.strictEqual((yield* h.source.loads) - loadsBefore, 2)
        for (const key of keys) {
          const length = yield* Effect.promise(() => h.raw.strlen(key))
          assert.isBelow(length, 1024, "the 100 MB entry is still there")
        }
        const snapshot = yield* h.snapshot
        assert.strictEqual(snapshot.store.oversizedEntries, 2)
        assert.strictEqual(snapshot.store.timeouts, 0)
        assert.strictEqual(snapshot.store.failures, 0)
        assert.strictEqual(snapshot.store.breaker, "closed")
        const growth = (yield* memoryMiB) - before
        assert.isBelow(growth, memoryGrowthBound, `memory grew by ${growth.toFixed(0)} MiB`)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("JSON nested 5,000 levels: a miss, never a defect; getMany answers the good keys", () =>
    Effect.gen(function*() {
      const h = yield* harness("deep")
      const bytes = `{"v":${"[".repeat(5000)}${"]".repeat(5000)},"x":${future},"d":0}`
      const keys = yield* plant(h, [1, 2], bytes)
      const exit = yield* Effect.exit(survives(h, [1, 2], bytes, keys))
      assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? String(exit.cause) : "")
    }))

  it.scopedLive("an entry whose expiry field is 0 while Redis still holds it: taken over, not waited on", () =>
    Effect.gen(function*() {
      const h = yield* harness("dead", { lock: true })
      const bytes = `{"v":{"id":1,"name":"old"},"x":0,"d":0}`
      const keys = yield* plant(h, [1], bytes)
      yield* survives(h, [1], bytes, keys)
      const snapshot = yield* h.snapshot
      assert.strictEqual(snapshot.lockWaits, 0, "a get waited for a lease nobody holds")
    }))

  it.scopedLive("a key holding a hash instead of a string: a miss, the other keys of getMany answered", () =>
    Effect.gen(function*() {
      const h = yield* harness("wrongtype")
      const [key] = yield* h.keyOf(1).pipe(Effect.map((k) => [k]))
      yield* Effect.promise(() => h.raw.del(key!).then(() => h.raw.hset(key!, "field", "value")))
      const loadsBefore = yield* h.source.loads
      const many = yield* h.users.getMany([1, 2, 3]).pipe(Effect.timeout(getBound))
      for (const [i, id] of [1, 2, 3].entries()) assertSome(many[i]!, user(id))
      assert.strictEqual((yield* h.source.loads) - loadsBefore, 1)
      assertSome(yield* h.users.get(1), user(1))
      // the hash is gone (a lease could not be taken over it: every get would wait for a fill)
      assert.strictEqual(yield* Effect.promise(() => h.raw.type(key!)), "string")
      assert.strictEqual((yield* h.snapshot).lockWaits, 0)
    }))

  it.scopedLive("`__proto__` in a Schema.Record value: the prototype is never swapped", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const context = yield* Layer.build(
        Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(server.url) }), Metrics.layer)
      )
      const Flags = Schema.Record({ key: Schema.String, value: Schema.Unknown })
      const source = yield* DataSource.memory<string, { readonly [k: string]: unknown }>([["a", { ok: true }]])
      const flags = yield* CacheAside.make({
        namespace: "flags",
        key: (k: string) => k,
        schema: Flags,
        lookup: source,
        ttl: "1 hour"
      })
        .pipe(Effect.provide(context))
      yield* flags.get("a")
      const raw = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => raw.disconnect()))
      const [key] = yield* Effect.promise(() => raw.keys("*flags*"))
      yield* Effect.promise(() => raw.set(key!, `{"v":{"__proto__":{"isAdmin":true},"ok":true},"x":${future},"d":0}`))
      const value = yield* flags.get("a")
      assert.isTrue(Option.isSome(value))
      if (Option.isSome(value)) {
        assert.strictEqual(Object.getPrototypeOf(value.value), Object.prototype)
        assert.isUndefined((value.value as { isAdmin?: unknown }).isAdmin)
      }
      assert.isUndefined(({} as { isAdmin?: unknown }).isAdmin, "the global prototype was polluted")
    }))
})

/** Both stores: the key tests must give identical answers on each. */
const stores: ReadonlyArray<readonly [string, Effect.Effect<Layer.Layer<CacheStore>, never, Scope.Scope>]> = [
  ["memory", Effect.succeed(Layer.orDie(MemoryCacheStore.layer()))],
  [
    "redis",
    Effect.map(
      Effect.orDie(RedisServer.make),
      (server) =>
        Layer.orDie(
          // these tests count lookups: a read timed out by a loaded machine would add one
          Layer.provide(
            RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }),
            Metrics.layer
          )
        )
    )
  ]
]

describe("hostile keys (both stores)", () => {
  for (const [name, makeStore] of stores) {
    it.scopedLive(`${name}: lone surrogates are distinct keys`, () =>
      Effect.gen(function*() {
        const context = yield* Effect.flatMap(makeStore, Layer.build)
        const keys = ["id\uD800", "id\uDBFF", "id\uDFFF", "id\uFFFD", "id"]
        const source = yield* DataSource.memory<string, string>(keys.map((k) => [k, JSON.stringify(k)] as const))
        const cache = yield* CacheAside.make({
          namespace: "s",
          key: (k: string) => k,
          schema: Schema.String,
          lookup: source,
          ttl: "1 hour"
        })
          .pipe(Effect.provide(context))
        for (const key of keys) assertSome(yield* cache.get(key), JSON.stringify(key))
        // again: now from the cache, each its own entry
        for (const key of keys) assertSome(yield* cache.get(key), JSON.stringify(key))
        const many = yield* cache.getMany(keys)
        for (const [i, key] of keys.entries()) assertSome(many[i]!, JSON.stringify(key))
        assert.strictEqual(yield* source.loads, keys.length)
        yield* cache.invalidate("id\uD800")
        assertSome(yield* cache.get("id\uDBFF"), JSON.stringify("id\uDBFF"))
        assert.strictEqual(yield* source.loads, keys.length, "invalidating one surrogate key dropped another")
      }))

    it.scopedLive(`${name}: a prefix cannot overlap another cache's namespace`, () =>
      Effect.gen(function*() {
        const context = yield* Effect.flatMap(makeStore, Layer.build)
        const a = yield* DataSource.memory<string, string>([["1:k", "A's value"]])
        const b = yield* DataSource.memory<string, string>([["k", "B's value"]])
        const first = yield* Effect.exit(
          CacheAside.make({
            prefix: "app",
            namespace: "user",
            key: (k: string) => k,
            schema: Schema.String,
            lookup: a,
            ttl: "1 hour"
          })
            .pipe(Effect.provide(context))
        )
        const second = yield* Effect.exit(
          CacheAside.make({
            prefix: "app:user",
            namespace: "1",
            key: (k: string) => k,
            schema: Schema.String,
            lookup: b,
            ttl: "1 hour"
          })
            .pipe(Effect.provide(context))
        )
        assert.isTrue(Exit.isSuccess(first))
        if (Exit.isFailure(second)) {
          // refused: a typed error of make, not a defect
          assert.isFalse(Cause.isDie(second.cause), Cause.pretty(second.cause))
          assertSome(Option.map(Cause.failureOption(second.cause), (e) => e._tag), "InvalidOptions")
          return
        }
        if (Exit.isFailure(first)) return
        // accepted: then the two key spaces must not meet
        assertSome(yield* second.value.get("k"), "B's value")
        assertSome(yield* first.value.get("1:k"), "A's value")
        yield* first.value.invalidateAll
        assertSome(yield* second.value.get("k"), "B's value")
        assert.strictEqual(yield* b.loads, 1, "A's invalidateAll deleted B's entry")
      }))
  }
})

describe("Redis store edges", () => {
  it.scopedLive("getMany of 2,500 keys (past the read script's 1,000-key batches) stays aligned", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const context = yield* Layer.build(
        Layer.provideMerge(
          // this test is about alignment, not time: a generous timeout for a loaded, shared machine
          RedisCacheStore.layer({ url: Redacted.make(server.url), resilience: false, commandTimeout: "10 seconds" }),
          Metrics.layer
        )
      )
      const store = Context.get(context, CacheStore)
      const keys = Array.from({ length: 2500 }, (_, i) => `k${i}`)
      yield* Effect.forEach(
        keys,
        (key, i) => i % 3 === 0 ? Effect.void : store.set(key, new TextEncoder().encode(key), Duration.minutes(5)),
        {
          concurrency: 64,
          discard: true
        }
      )
      const values = yield* store.getMany(keys)
      assert.strictEqual(values.length, keys.length)
      for (const [i, key] of keys.entries()) {
        if (i % 3 === 0) assertNone(values[i]!)
        else assertSome(Option.map(values[i]!, (bytes) => new TextDecoder().decode(bytes)), key)
      }
    }))

  it.scopedLive("a pattern delete answered READONLY keeps `replied`: it never opens the breaker", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const url = Redacted.make(server.url)
      const build = (layer: Layer.Layer<CacheStore, unknown, Metrics.Metrics>) =>
        Effect.map(Layer.build(Layer.provideMerge(layer, Metrics.layer)), (context) => ({
          store: Context.get(context, CacheStore),
          storeSnapshot: Context.get(context, Metrics.Metrics).storeSnapshot("replica")
        }))
      const bare = yield* build(RedisCacheStore.layer({ url, resilience: false }))
      const resilient = yield* build(RedisCacheStore.layer({ url, resilience: { name: "replica" } }))
      for (let i = 0; i < 5; i++) yield* bare.store.set(`p:${i}`, new Uint8Array([1]), Duration.minutes(5))
      // a replica of a master that does not exist: SCAN answers, UNLINK gets READONLY
      assert.strictEqual(yield* Effect.orDie(server.command("REPLICAOF", "127.0.0.1", "1")), "+OK")
      const error = yield* Effect.flip(bare.store.deletePattern("p:*"))
      assert.strictEqual(error.operation, "deletePattern")
      assert.strictEqual(error.replied, true)
      for (let i = 0; i < 10; i++) yield* Effect.ignore(resilient.store.deletePattern("p:*"))
      const snapshot = yield* resilient.storeSnapshot
      assert.isAtLeast(snapshot.failures, 10)
      assert.strictEqual(snapshot.breakerOpened, 0)
      assert.strictEqual(snapshot.breaker, "closed")
    }))
})
