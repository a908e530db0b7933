/**
 * The cache-aside behaviour suite, run once per store (memory and Redis). Entry TTLs are a minute
 * or more and expire on the TestClock (`advance`), on both stores; real time passes only where
 * Redis itself must see it (a lease's PX) or background work must finish (`eventually`, bounded).
 */
import { CacheAside, CacheStore, DataSource, Metrics } from "@cache-aside/core"
import type { Vitest } from "@effect/vitest"
import { assert, describe } from "@effect/vitest"
import { assertLeft, assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Option,
  Schema,
  TestClock,
  TestServices
} from "effect"
import { randomUUID } from "node:crypto"

export class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

export class Address extends Schema.Class<Address>("Address")({ city: Schema.String, since: Schema.Date }) {}

export class Profile extends Schema.Class<Profile>("Profile")({
  id: Schema.Number,
  createdAt: Schema.Date,
  avatar: Schema.Uint8ArrayFromBase64,
  balance: Schema.BigInt,
  address: Address,
  tags: Schema.Array(Schema.String)
}) {}

export class DbError extends Schema.TaggedError<DbError>()("DbError", { message: Schema.String }) {}

/** Moves both clocks: the TestClock (memory store) and real time (Redis). */
export const elapse = (duration: Duration.DurationInput) =>
  Effect.zipRight(
    TestClock.adjust(duration),
    Effect.sleep(duration).pipe(TestServices.provideLive)
  )

/**
 * Moves the TestClock only. Entries expire by the clock that wrote them: the memory store drops
 * them on the TestClock, and on Redis the read path finds the entry past the expiry written in its
 * envelope (Redis's own PX, in real time, is long here). TTLs of a minute moved past this way
 * cannot expire early when a loaded machine stalls, unlike short TTLs in real time.
 */
export const advance = (duration: Duration.DurationInput) => TestClock.adjust(duration)

/** Background work (a refresh, a soft-timeout load) finishing on a loaded machine: a bound against a hang. */
export const backgroundBound = Duration.seconds(10)

/**
 * Moves the TestClock in 10 ms steps (and real time in 2 ms ones) until `effect` answers what
 * `done` accepts; dies past `backgroundBound` of real time. Synchronises on an outcome, not a sleep.
 */
export const eventually = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  Effect.gen(function*() {
    const liveNow = Clock.currentTimeMillis.pipe(TestServices.provideLive)
    const deadline = (yield* liveNow) + Duration.toMillis(backgroundBound)
    while ((yield* liveNow) < deadline) {
      const a = yield* effect
      if (done(a)) return a
      yield* TestClock.adjust("10 millis")
      yield* Effect.sleep("2 millis").pipe(TestServices.provideLive)
    }
    return yield* Effect.dieMessage(`${what}: not within ${Duration.format(backgroundBound)}`)
  })

/** Runs an effect while moving the TestClock in small steps (and real time a little) until it is done. */
export const withTimePassing = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    while (fiber.unsafePoll() === null) {
      yield* TestClock.adjust("10 millis")
      yield* Effect.sleep("2 millis").pipe(TestServices.provideLive)
    }
    return yield* fiber.await
  })

export const uniqueNamespace = () => `t${randomUUID().slice(0, 8)}`

const users = (ids: ReadonlyArray<number>) => ids.map((id) => [id, new User({ id, name: `user ${id}` })] as const)

export const suite = <R>(
  it: Vitest.MethodsNonLive<R>,
  store: Layer.Layer<CacheStore.CacheStore, unknown, R | Metrics.Metrics>
) => {
  const services = Layer.provideMerge(store, Metrics.layer)

  const setup = (
    options: {
      readonly ttl?: Duration.DurationInput
      readonly negativeTtl?: Duration.DurationInput
      readonly rows?: ReadonlyArray<readonly [number, User]>
      readonly latency?: Duration.DurationInput
      readonly namespace?: string
      /** `false`: no near cache even when the suite runs with one (test/NearCacheSuite.test.ts). */
      readonly nearCache?: false
    } = {}
  ) =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>(options.rows ?? users([1, 2, 3]), {
        latency: options.latency
      })
      const namespace = options.namespace ?? uniqueNamespace()
      const cache = yield* CacheAside.make({
        namespace,
        key: (id: number) => String(id),
        schema: User,
        lookup: source,
        ttl: options.ttl ?? "1 minute",
        negativeTtl: options.negativeTtl,
        jitter: 0,
        nearCache: options.nearCache
      })
      const metrics = yield* Metrics.Metrics
      return { source, cache, namespace, snapshot: metrics.snapshot(namespace) }
    })

  describe("read path", () => {
    it.scoped("a miss loads and caches; the next get is a hit", () =>
      Effect.gen(function*() {
        const { cache, snapshot, source } = yield* setup()
        const first = yield* cache.get(1)
        const second = yield* cache.get(1)
        assertSome(first, new User({ id: 1, name: "user 1" }))
        deepStrictEqual(second, first)
        assert.instanceOf(Option.getOrThrow(second), User)
        assert.strictEqual(yield* source.loads, 1)
        const s = yield* snapshot
        assert.strictEqual(s.hits, 1)
        assert.strictEqual(s.misses, 1)
        assert.strictEqual(s.loads, 1)
        assert.strictEqual(s.hitRatio, 0.5)
      }).pipe(Effect.provide(services)))

    it.scoped("an entry expires after its TTL and is loaded again", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup({ ttl: "1 minute" })
        yield* cache.get(1)
        yield* cache.get(1)
        assert.strictEqual(yield* source.loads, 1)
        yield* advance("59999 millis")
        yield* cache.get(1)
        assert.strictEqual(yield* source.loads, 1)
        yield* advance("1 millis")
        yield* cache.get(1)
        assert.strictEqual(yield* source.loads, 2)
      }).pipe(Effect.provide(services)))

    it.scoped("a TTL computed from the value; a non-positive one is not cached", () =>
      Effect.gen(function*() {
        const source = yield* DataSource.memory<number, User>(users([1, 2]))
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: User,
          lookup: source,
          ttl: (user: User) => user.id === 1 ? "1 minute" : 0,
          jitter: 0
        })
        yield* cache.get(1)
        yield* cache.get(1)
        yield* cache.get(2)
        yield* cache.get(2)
        assert.strictEqual(yield* source.loads, 3)
      }).pipe(Effect.provide(services)))

    it.scoped("a not-found result is cached with its own TTL", () =>
      Effect.gen(function*() {
        const { cache, snapshot, source } = yield* setup({ negativeTtl: "30 seconds" })
        assertNone(yield* cache.get(404))
        assertNone(yield* cache.get(404))
        assert.strictEqual(yield* source.loads, 1)
        assert.strictEqual((yield* snapshot).hits, 1)
        yield* source.write(404, new User({ id: 404, name: "late" }))
        yield* advance("30 seconds")
        assertSome(yield* cache.get(404), new User({ id: 404, name: "late" }))
        assert.strictEqual(yield* source.loads, 2)
      }).pipe(Effect.provide(services)))

    it.scoped("negativeTtl 0 turns null caching off", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup({ negativeTtl: 0 })
        yield* cache.get(404)
        yield* cache.get(404)
        assert.strictEqual(yield* source.loads, 2)
      }).pipe(Effect.provide(services)))

    it.scoped("a lookup error is returned typed and not cached", () =>
      Effect.gen(function*() {
        let calls = 0
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: User,
          lookup: (id: number) =>
            Effect.suspend(() =>
              ++calls === 1
                ? Effect.fail(new DbError({ message: "connection reset" }))
                : Effect.succeed(Option.some(new User({ id, name: "ok" })))
            ),
          ttl: "1 minute"
        })
        assertLeft(yield* Effect.either(cache.get(1)), new DbError({ message: "connection reset" }))
        assertSome(yield* cache.get(1), new User({ id: 1, name: "ok" }))
        yield* cache.get(1)
        assert.strictEqual(calls, 2)
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot()).loadErrors, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("1,000 concurrent gets of a cold key run one lookup", () =>
      Effect.gen(function*() {
        const { cache, snapshot, source } = yield* setup({ latency: "50 millis" })
        const results = yield* withTimePassing(
          Effect.forEach(Array.from({ length: 1000 }, () => 1), (id) => cache.get(id), { concurrency: "unbounded" })
        )
        assert.isTrue(Exit.isSuccess(results))
        if (Exit.isSuccess(results)) {
          assert.strictEqual(results.value.length, 1000)
          assert.isTrue(results.value.every((u) => Option.isSome(u) && u.value.name === "user 1"))
        }
        assert.strictEqual(yield* source.loads, 1)
        assert.strictEqual((yield* snapshot).coalesced, 999)
      }).pipe(Effect.provide(services)))

    it.scoped("getMany keeps order with hits, misses, not-found and duplicates", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup()
        yield* cache.get(2)
        const many = yield* cache.getMany([3, 2, 404, 1, 3])
        // the loaded values themselves (a batch answering None for loaded keys fails here)
        const user = (id: number) => Option.some(new User({ id, name: `user ${id}` }))
        deepStrictEqual(many, [user(3), user(2), Option.none(), user(1), user(3)])
        // 2 was cached; 3, 404 and 1 were loaded, in one batch
        assert.strictEqual(yield* source.loads, 4)
        assert.strictEqual(yield* source.calls, 2)
        const again = yield* cache.getMany([1, 2, 3, 404])
        deepStrictEqual(again, [user(1), user(2), user(3), Option.none()])
        assert.strictEqual(yield* source.loads, 4)
        deepStrictEqual(yield* cache.getMany([]), [])
      }).pipe(Effect.provide(services)))

    it.scoped("values keep their types: Date, Uint8Array, bigint, nested classes", () =>
      Effect.gen(function*() {
        const profile = new Profile({
          id: 7,
          createdAt: new Date("2024-02-29T12:34:56.789Z"),
          avatar: new Uint8Array([0, 1, 2, 254, 255]),
          balance: 12345678901234567890n,
          address: new Address({ city: "Oslo", since: new Date("2020-01-01T00:00:00.000Z") }),
          tags: ["a", "b"]
        })
        const source = yield* DataSource.memory<number, Profile>([[7, profile]])
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: Profile,
          lookup: source,
          ttl: "1 minute"
        })
        yield* cache.get(7)
        const hit = Option.getOrThrow(yield* cache.get(7))
        assert.strictEqual(yield* source.loads, 1)
        assert.instanceOf(hit, Profile)
        assert.instanceOf(hit.createdAt, Date)
        assert.strictEqual(hit.createdAt.toISOString(), "2024-02-29T12:34:56.789Z")
        assert.instanceOf(hit.avatar, Uint8Array)
        deepStrictEqual(Array.from(hit.avatar), [0, 1, 2, 254, 255])
        assert.strictEqual(typeof hit.balance, "bigint")
        assert.strictEqual(hit.balance, 12345678901234567890n)
        assert.instanceOf(hit.address, Address)
        assert.instanceOf(hit.address.since, Date)
        deepStrictEqual(hit, profile)
      }).pipe(Effect.provide(services)))

    it.scoped("a hit with unchanged bytes reuses the decoded value; changed bytes decode again", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup()
        yield* cache.get(1)
        const first = Option.getOrThrow(yield* cache.get(1))
        const second = Option.getOrThrow(yield* cache.get(1))
        assert.strictEqual(first, second) // same bytes in the store: decoded once
        yield* source.write(1, new User({ id: 1, name: "changed" }))
        yield* cache.invalidate(1)
        const third = Option.getOrThrow(yield* cache.get(1))
        assert.strictEqual(third.name, "changed")
        const undecoded = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: User,
          lookup: source,
          ttl: "1 minute",
          decodeCacheSize: 0,
          nearCache: false // a near cache answers the very same instance, by design
        })
        yield* undecoded.get(1)
        const a = Option.getOrThrow(yield* undecoded.get(1))
        const b = Option.getOrThrow(yield* undecoded.get(1))
        assert.notStrictEqual(a, b)
        deepStrictEqual(a, b)
      }).pipe(Effect.provide(services)))

    it.scoped("large values are compressed and come back intact", () =>
      Effect.gen(function*() {
        const big = new User({ id: 1, name: "x".repeat(50_000) })
        const source = yield* DataSource.memory<number, User>([[1, big]])
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: User,
          lookup: source,
          ttl: "1 minute",
          compressAbove: 1024
        })
        yield* cache.get(1)
        const stored = Option.getOrThrow(yield* (yield* CacheStore.CacheStore).get(cache.keyOf(1)))
        assert.isBelow(stored.length, 5_000)
        assertSome(yield* cache.get(1), big)
        assert.strictEqual(yield* source.loads, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("a corrupt entry is a miss: evicted, counted, replaced", () =>
      Effect.gen(function*() {
        // bytes written behind the cache's back: a near cache would answer the last good value
        // (the memory store reports no writes; Redis does, through client-side caching)
        const { cache, snapshot, source } = yield* setup({ nearCache: false })
        const store = yield* CacheStore.CacheStore
        const garbage = [
          new Uint8Array([0xff, 0xfe, 0x00, 0x12]),
          new TextEncoder().encode("{\"v\":{\"id\":\"not a number\"}}"),
          new TextEncoder().encode("[1,2,3]"),
          new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0x01])
        ]
        for (const bytes of garbage) {
          yield* store.set(cache.keyOf(1), bytes, Duration.minutes(1))
          assertSome(yield* cache.get(1), new User({ id: 1, name: "user 1" }))
        }
        assert.strictEqual((yield* snapshot).decodeErrors, garbage.length)
        assert.strictEqual(yield* source.loads, garbage.length)
        yield* cache.get(1)
        assert.strictEqual(yield* source.loads, garbage.length)
      }).pipe(Effect.provide(services)))
  })

  describe("writes and invalidation", () => {
    it.scoped("invalidate after a write: the next get returns the new row", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup()
        yield* cache.get(1)
        yield* source.write(1, new User({ id: 1, name: "renamed" }))
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "user 1")
        yield* cache.invalidate(1)
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "renamed")
      }).pipe(Effect.provide(services)))

    it.scoped("set replaces the cached value", () =>
      Effect.gen(function*() {
        const { cache, source } = yield* setup()
        yield* cache.get(1)
        yield* cache.set(1, new User({ id: 1, name: "written" }))
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "written")
        assert.strictEqual(yield* source.loads, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("glob characters in ids: invalidate deletes exactly that key", () =>
      Effect.gen(function*() {
        const ids = ["1", "1*", "10", "1?", "[1]", "1\\", "a:b"]
        const source = yield* DataSource.memory<string, string>(ids.map((id) => [id, `v${id}`] as const))
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: string) => id,
          schema: Schema.String,
          lookup: source,
          ttl: "1 minute"
        })
        yield* cache.getMany(ids)
        assert.strictEqual(yield* source.loads, ids.length)
        for (const id of ["1*", "1?", "[1]", "1\\"]) yield* cache.invalidate(id)
        yield* cache.getMany(ids)
        assert.strictEqual(yield* source.loads, ids.length + 4)
        // a pattern: the user's glob applies to the id part only
        const removed = yield* cache.invalidatePattern("1*")
        assert.strictEqual(removed, 5) // 1, 1*, 10, 1?, 1\
        yield* cache.getMany(ids)
        assert.strictEqual(yield* source.loads, ids.length + 4 + 5)
      }).pipe(Effect.provide(services)))

    it.scoped("invalidateAll clears one namespace and leaves the others alone", () =>
      Effect.gen(function*() {
        const base = uniqueNamespace()
        const a = yield* setup({ namespace: `${base}*` })
        const b = yield* setup({ namespace: `${base}b` })
        const c = yield* setup({ namespace: base })
        for (const x of [a, b, c]) yield* x.cache.getMany([1, 2, 3])
        const removed = yield* a.cache.invalidateAll
        assert.strictEqual(removed, 3)
        for (const x of [a, b, c]) yield* x.cache.getMany([1, 2, 3])
        assert.strictEqual(yield* a.source.loads, 6)
        assert.strictEqual(yield* b.source.loads, 3)
        assert.strictEqual(yield* c.source.loads, 3)
      }).pipe(Effect.provide(services)))

    it.scoped("a new version misses the old entries; invalidateAll clears every version", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const source = yield* DataSource.memory<number, User>(users([1]))
        const make = (version: string) =>
          CacheAside.make({
            namespace,
            version,
            key: (id: number) => String(id),
            schema: User,
            lookup: source,
            ttl: "1 minute"
          })
        const v1 = yield* make("1")
        const v2 = yield* make("2")
        yield* v1.get(1)
        yield* v2.get(1)
        assert.strictEqual(yield* source.loads, 2)
        assert.strictEqual(yield* v2.invalidateAll, 2)
        // both versions' entries are gone from the store, and both versions load again
        const store = yield* CacheStore.CacheStore
        assertNone(yield* store.get(v1.keyOf(1)))
        assertNone(yield* store.get(v2.keyOf(1)))
        yield* v1.get(1)
        yield* v2.get(1)
        assert.strictEqual(yield* source.loads, 4)
      }).pipe(Effect.provide(services)))

    it.scoped("an invalidation during a load keeps the loaded (older) row out of the cache", () =>
      Effect.gen(function*() {
        const rows = new Map([[1, new User({ id: 1, name: "old" })]])
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        let loads = 0
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (id: number) => String(id),
          schema: User,
          lookup: (id: number) =>
            Effect.gen(function*() {
              loads++
              const row = Option.fromNullable(rows.get(id))
              if (loads === 1) {
                yield* Deferred.succeed(started, undefined)
                yield* Deferred.await(release)
              }
              return row
            }),
          ttl: "1 minute"
        })
        const reader = yield* Effect.fork(cache.get(1))
        yield* Deferred.await(started) // the reader has read the old row
        rows.set(1, new User({ id: 1, name: "new" })) // a writer updates the row ...
        yield* cache.invalidate(1) // ... and invalidates
        yield* Deferred.succeed(release, undefined) // the reader now tries to fill the cache
        assert.strictEqual(Option.getOrThrow(yield* Fiber.join(reader)).name, "old")
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "new")
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "new")
        assert.strictEqual(loads, 2)
      }).pipe(Effect.provide(services)))
  })

  describe("leases, lock, refresh before expiry, fail-safe", () => {
    /** A lookup that blocks its first call until released: a slow load in "another process". */
    const gatedSource = (rows: Map<number, User>) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        let calls = 0
        const lookup = (id: number) =>
          Effect.gen(function*() {
            calls++
            const row = Option.fromNullable(rows.get(id))
            if (calls === 1) {
              yield* Deferred.succeed(started, undefined)
              yield* Deferred.await(release)
            }
            return row
          })
        return { lookup, started, release, calls: () => calls }
      })

    const make = (
      namespace: string,
      lookup: (id: number) => Effect.Effect<Option.Option<User>>,
      extra: Partial<CacheAside.Options<number, User, typeof User.Encoded, never, never>> = {}
    ) =>
      CacheAside.make({
        namespace,
        key: (id: number) => String(id),
        schema: User,
        lookup,
        ttl: "1 minute",
        jitter: 0,
        ...extra
      })

    it.scoped("the lease: a load that raced an invalidation in another process never caches the old row", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "old" })]])
        const gate = yield* gatedSource(rows)
        const reader = yield* make(namespace, gate.lookup) // process A
        const writer = yield* make(namespace, (id) => Effect.sync(() => Option.fromNullable(rows.get(id)))) // process B
        const reading = yield* Effect.fork(reader.get(1))
        yield* Deferred.await(gate.started) // A missed, took the lease, read the old row
        rows.set(1, new User({ id: 1, name: "new" })) // B updates the row ...
        yield* writer.invalidate(1) // ... and invalidates: the lease is gone
        yield* Deferred.succeed(gate.release, undefined) // A's fill is a compare-and-set: refused
        assert.strictEqual(Option.getOrThrow(yield* Fiber.join(reading)).name, "old")
        const fresh = yield* make(namespace, (id) => Effect.sync(() => Option.fromNullable(rows.get(id)))) // process C
        assert.strictEqual(Option.getOrThrow(yield* fresh.get(1)).name, "new")
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot(namespace)).leaseRejected, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("no lock: a reader that finds another's lease loads and fills under it, unless invalidated meanwhile", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "v1" })]])
        const gate = yield* gatedSource(rows)
        const holder = yield* make(namespace, gate.lookup) // process A: holds the lease, its load hangs
        const holding = yield* Effect.fork(holder.get(1))
        yield* Deferred.await(gate.started)
        let loads = 0
        const reader = yield* make(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.fromNullable(rows.get(id)))),
          { lock: false }
        )
        assert.strictEqual(Option.getOrThrow(yield* reader.get(1)).name, "v1")
        assert.strictEqual(Option.getOrThrow(yield* reader.get(1)).name, "v1")
        assert.strictEqual(loads, 1, "the reader filled under A's lease: its second get is a hit")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(holding)
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot(namespace)).leaseRejected, 1, "A's later fill is refused")
        // the same, with an invalidation between the reader's read of the lease and its fill
        const namespace2 = uniqueNamespace()
        const gate2 = yield* gatedSource(rows)
        const holder2 = yield* make(namespace2, gate2.lookup)
        const holding2 = yield* Effect.fork(holder2.get(1))
        yield* Deferred.await(gate2.started)
        const gate3 = yield* gatedSource(rows)
        const reader2 = yield* make(namespace2, gate3.lookup, { lock: false })
        const reading = yield* Effect.fork(reader2.get(1))
        yield* Deferred.await(gate3.started) // the reader saw the lease and read v1
        rows.set(1, new User({ id: 1, name: "v2" }))
        const writer = yield* make(namespace2, (id) => Effect.sync(() => Option.fromNullable(rows.get(id))))
        yield* writer.invalidate(1) // another process's write: the lease is gone
        yield* Deferred.succeed(gate3.release, undefined)
        assert.strictEqual(Option.getOrThrow(yield* Fiber.join(reading)).name, "v1")
        yield* Deferred.succeed(gate2.release, undefined)
        yield* Fiber.join(holding2)
        assert.strictEqual(Option.getOrThrow(yield* writer.get(1)).name, "v2")
        assert.strictEqual((yield* metrics.snapshot(namespace2)).leaseRejected, 2)
      }).pipe(Effect.provide(services)))

    it.scoped("the lock: a reader in another process waits for the lease holder's fill instead of loading", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "one" })]])
        const gate = yield* gatedSource(rows)
        const holder = yield* make(namespace, gate.lookup, { lock: { poll: "10 millis" } })
        let waiterLoads = 0
        const waiter = yield* make(
          namespace,
          (id) => Effect.sync(() => (waiterLoads++, Option.fromNullable(rows.get(id)))),
          { lock: { poll: "10 millis", wait: "10 seconds" } }
        )
        const holding = yield* Effect.fork(holder.get(1))
        yield* Deferred.await(gate.started)
        const waiting = yield* Effect.fork(withTimePassing(waiter.get(1)))
        yield* elapse("50 millis")
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(holding)
        const waited = yield* Fiber.join(waiting)
        assert.isTrue(Exit.isSuccess(waited))
        if (Exit.isSuccess(waited)) assert.strictEqual(Option.getOrThrow(waited.value).name, "one")
        assert.strictEqual(gate.calls(), 1)
        assert.strictEqual(waiterLoads, 0)
        const metrics = yield* Metrics.Metrics
        assert.isAtLeast((yield* metrics.snapshot(namespace)).lockWaits, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("a lease holder that dies leaves a lease that expires; waiters then load", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "one" })]])
        const gate = yield* gatedSource(rows)
        const holder = yield* make(namespace, gate.lookup, { leaseTtl: "300 millis" })
        const holding = yield* Effect.fork(holder.get(1))
        yield* Deferred.await(gate.started)
        yield* Fiber.interrupt(holding) // the holder "dies": its lease stays until it expires
        let loads = 0
        const waiter = yield* make(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.fromNullable(rows.get(id)))),
          { lock: { poll: "20 millis", wait: "5 seconds" }, leaseTtl: "300 millis" }
        )
        const result = yield* withTimePassing(waiter.get(1))
        assert.isTrue(Exit.isSuccess(result))
        assert.strictEqual(loads, 1) // the lease expired, the waiter took a new one and loaded
        assert.strictEqual(Option.getOrThrow(yield* waiter.get(1)).name, "one")
        assert.strictEqual(loads, 1) // and filled the cache
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot(namespace)).lockTimeouts, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("a waiter that waits past its bound loads by itself, without an error", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "one" })]])
        const gate = yield* gatedSource(rows)
        const holder = yield* make(namespace, gate.lookup)
        const holding = yield* Effect.fork(holder.get(1))
        yield* Deferred.await(gate.started)
        let loads = 0
        const waiter = yield* make(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.fromNullable(rows.get(id)))),
          { lock: { poll: "20 millis", wait: "200 millis" } }
        )
        const result = yield* withTimePassing(waiter.get(1))
        assert.isTrue(Exit.isSuccess(result))
        assert.strictEqual(loads, 1)
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot(namespace)).lockTimeouts, 1)
        yield* Deferred.succeed(gate.release, undefined)
        yield* Fiber.join(holding)
      }).pipe(Effect.provide(services)))

    it.scoped("stale-while-revalidate: the stale value is served at once and refreshed once", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const rows = new Map([[1, new User({ id: 1, name: "v1" })]])
        let loads = 0
        const cache = yield* make(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.fromNullable(rows.get(id)))),
          { ttl: "1 minute", staleWhileRevalidate: "10 minutes" }
        )
        yield* cache.get(1)
        rows.set(1, new User({ id: 1, name: "v2" }))
        yield* advance("61 seconds")
        const stale = yield* Effect.forEach([1, 1, 1, 1, 1], (id) => cache.get(id), { concurrency: "unbounded" })
        assert.isTrue(stale.every((u) => Option.getOrThrow(u).name === "v1"))
        // the background refresh runs once and fills the cache
        yield* eventually("the refreshed value", cache.get(1), (u) => Option.getOrThrow(u).name === "v2")
        assert.strictEqual(loads, 2)
        const metrics = yield* Metrics.Metrics
        const s = yield* metrics.snapshot(namespace)
        assert.isAtLeast(s.staleServes, 1)
        assert.strictEqual(loads, 2)
      }).pipe(Effect.provide(services)))

    it.scoped("XFetch: reads near expiry refresh early, a bounded number of times; beta 0 never does", () =>
      Effect.gen(function*() {
        const rows = new Map([[1, new User({ id: 1, name: "v1" })]])
        const run = (beta: number) =>
          Effect.gen(function*() {
            const namespace = uniqueNamespace()
            let loads = 0
            const cache = yield* make(
              namespace,
              (id) =>
                Effect.gen(function*() {
                  loads++
                  yield* Effect.sleep("50 millis") // the lookup takes 50 ms: delta
                  return Option.fromNullable(rows.get(id))
                }),
              // a minute on the TestClock: Redis's own PX (the TTL, in real time) must not drop the
              // entry while a loaded machine stalls before the reads near expiry (they would miss)
              { ttl: "1 minute", earlyExpiration: { beta } }
            )
            yield* withTimePassing(cache.get(1))
            // 59.9 s later: 100 ms before expiry, two lookup durations
            yield* TestClock.adjust("59890 millis")
            for (let i = 0; i < 200; i++) yield* cache.get(1)
            yield* withTimePassing(Effect.sleep("60 millis"))
            const metrics = yield* Metrics.Metrics
            return { early: (yield* metrics.snapshot(namespace)).earlyRefreshes, loads }
          })
        const withXFetch = yield* run(1)
        assert.isAtLeast(withXFetch.early, 1)
        // in-process dedup: at most one refresh in flight, so the loads stay few
        assert.isAtMost(withXFetch.loads, 3)
        const without = yield* run(0)
        assert.strictEqual(without.early, 0)
        assert.strictEqual(without.loads, 1)
      }).pipe(Effect.provide(services)))

    it.scoped("fail-safe: when the lookup fails, a stale value is served and throttled", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let failing = false
        let loads = 0
        const cache = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: User,
          lookup: (id: number) =>
            Effect.suspend(() => {
              loads++
              return failing
                ? Effect.fail(new DbError({ message: "down" }))
                : Effect.succeed(Option.some(new User({ id, name: "kept" })))
            }),
          ttl: "1 minute",
          jitter: 0,
          failSafe: { maxStale: "1 hour", throttle: "5 seconds" }
        })
        yield* cache.get(1)
        failing = true
        yield* advance("61 seconds")
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "kept")
        assert.strictEqual(loads, 2)
        // throttled: the stale value is fresh again for 5 seconds, the failing lookup is not hammered
        assert.strictEqual(Option.getOrThrow(yield* cache.get(1)).name, "kept")
        assert.strictEqual(loads, 2)
        const metrics = yield* Metrics.Metrics
        assert.strictEqual((yield* metrics.snapshot(namespace)).staleServes, 1)
        // without a stale value, the error is returned
        assertLeft(yield* Effect.either(cache.get(2)), new DbError({ message: "down" }))
      }).pipe(Effect.provide(services)))

    it.scoped("lookup timeouts: soft serves stale and the load still fills; hard fails with LookupTimeout", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let version = 1
        let latency = Duration.zero
        const cache = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: User,
          lookup: (id: number) =>
            Effect.gen(function*() {
              const v = version
              yield* Effect.sleep(latency)
              return Option.some(new User({ id, name: `v${v}` }))
            }),
          ttl: "1 minute",
          jitter: 0,
          failSafe: { maxStale: "1 hour" },
          lookupTimeout: { soft: "100 millis", hard: "2 seconds" }
        })
        yield* cache.get(1)
        version = 2
        latency = Duration.millis(500)
        yield* advance("61 seconds")
        const soft = yield* withTimePassing(cache.get(1))
        assert.isTrue(Exit.isSuccess(soft))
        if (Exit.isSuccess(soft)) assert.strictEqual(Option.getOrThrow(soft.value).name, "v1")
        // the load went on in the background and filled the cache
        // (a get meanwhile may wait for its own soft timeout: the clock moves while it runs)
        yield* eventually(
          "the background load's fill",
          withTimePassing(cache.get(1)),
          (exit) => Exit.isSuccess(exit) && Option.getOrThrow(exit.value).name === "v2"
        )
        // no stale value held: a lookup slower than the hard timeout fails typed
        latency = Duration.seconds(5)
        const hard = yield* withTimePassing(cache.get(2))
        assert.isTrue(Exit.isFailure(hard))
        if (Exit.isFailure(hard)) {
          const error = Cause.failureOption(hard.cause)
          assert.isTrue(Option.isSome(error) && error.value._tag === "LookupTimeout")
        }
      }).pipe(Effect.provide(services)))
  })

  describe("properties", () => {
    const Id = Schema.Int.pipe(Schema.between(0, 4))
    const Op = Schema.Union(
      Schema.TaggedStruct("read", { id: Id }),
      Schema.TaggedStruct("readMany", { ids: Schema.Array(Id).pipe(Schema.maxItems(4)) }),
      Schema.TaggedStruct("write", { id: Id, name: Schema.String }),
      Schema.TaggedStruct("remove", { id: Id }),
      Schema.TaggedStruct("expire", {})
    )
    it.scoped.prop(
      "for any reads, writes with invalidation and expiries, get returns what the data source holds",
      [Schema.Array(Op).pipe(Schema.maxItems(25))],
      ([ops]) =>
        Effect.gen(function*() {
          const { cache, source } = yield* setup({ ttl: "1 minute", negativeTtl: "1 minute", rows: users([0, 1]) })
          const expected = (id: number) => source.peek(id).pipe(Option.map((u) => u.name))
          for (const op of ops) {
            switch (op._tag) {
              case "read": {
                const got = yield* cache.get(op.id)
                deepStrictEqual(got.pipe(Option.map((u) => u.name)), expected(op.id))
                break
              }
              case "readMany": {
                const got = yield* cache.getMany(op.ids)
                deepStrictEqual(got.map(Option.map((u) => u.name)), op.ids.map(expected))
                break
              }
              case "write": {
                yield* source.write(op.id, new User({ id: op.id, name: op.name }))
                yield* cache.invalidate(op.id)
                break
              }
              case "remove": {
                yield* source.remove(op.id)
                yield* cache.invalidate(op.id)
                break
              }
              case "expire": {
                yield* advance("61 seconds")
                break
              }
            }
          }
        }).pipe(Effect.provide(services)),
      { fastCheck: { numRuns: 40 } }
    )
  })

  describe("options", () => {
    it.scoped("invalid options are a typed error", () =>
      Effect.gen(function*() {
        const source = yield* DataSource.memory<number, User>()
        const base = { key: (id: number) => String(id), schema: User, lookup: source, ttl: "1 minute" } as const
        const attempts = [
          CacheAside.make({ ...base, namespace: "" }),
          CacheAside.make({ ...base, namespace: "a:b" }),
          CacheAside.make({ ...base, namespace: "ok", version: "x:y" }),
          CacheAside.make({ ...base, namespace: "ok", ttl: -5 }),
          CacheAside.make({ ...base, namespace: "ok", ttl: 0 }),
          CacheAside.make({ ...base, namespace: "ok", ttl: "-5 minutes" }),
          CacheAside.make({ ...base, namespace: "ok", jitter: 2 }),
          CacheAside.make({ ...base, namespace: "ok", negativeTtl: Number.NaN })
        ]
        for (const attempt of attempts) {
          const result = yield* Effect.either(attempt)
          assert.isTrue(Either.isLeft(result))
          if (Either.isLeft(result)) assert.strictEqual(result.left._tag, "InvalidOptions")
        }
      }).pipe(Effect.provide(services)))
  })
}
