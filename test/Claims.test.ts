/**
 * The README's claims about Redis that the rest of the suite did not check, each on its own
 * `redis-server`: one read round trip for `getMany` and for concurrent gets (counted with
 * `INFO commandstats`), glob characters escaped in a real `SCAN MATCH`, stale-while-revalidate
 * refreshing once across two instances, shutdown with the resilient wrapper on and Redis paused,
 * and `LOADING` replies (a replica loading its master's dataset) leaving the breaker closed.
 * Outcomes are counted; the only times are named bounds against hangs.
 */
import { CacheAside, type CacheStore, DataSource, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import { RedisServer, type RedisServerService } from "./utils/RedisServer.js"

/** A Redis-backed "process": its own connection (store layer) and metrics. */
const connect = (url: string, options: Partial<RedisCacheStore.Options> = {}) =>
  Layer.build(Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(url), ...options }), Metrics.layer))

const make = <E>(
  context: Context.Context<CacheStore.CacheStore | Metrics.Metrics>,
  lookup: DataSource.DataSource<number, string, E, never> | ((id: number) => Effect.Effect<Option.Option<string>, E>),
  extra: Partial<CacheAside.Options<number, string, string, E, never>> = {}
) =>
  CacheAside.make({
    namespace: "claims",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup,
    ttl: "1 minute",
    jitter: 0,
    ...extra
  }).pipe(Effect.provide(context))

const snapshotOf = (context: Context.Context<Metrics.Metrics>, namespace = "claims") =>
  Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace)).pipe(Effect.provide(context))

/** Calls of the commands that read entries, since `before`. */
const readCalls = (server: RedisServerService, before: ReadonlyMap<string, number>) =>
  Effect.map(server.commandCalls, (after) => {
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0)
    // a read is one script call (EVALSHA, or EVAL after a SCRIPT FLUSH) that runs one MGET
    return { roundTrips: delta("evalsha") + delta("eval"), mget: delta("mget"), get: delta("get") }
  })

/** Real time for polling loops in tests that run under the TestClock. */
const liveSleep = (duration: Duration.DurationInput) => Effect.sleep(duration).pipe(TestServices.provideLive)

/** Polls `effect` in real time until `done`; fails past `bound` with `what` (a hang bound, not a latency claim). */
const waitUntil = <A, E, R>(
  what: string,
  bound: Duration.Duration,
  effect: Effect.Effect<A, E, R>,
  done: (a: A) => boolean
) =>
  Effect.gen(function*() {
    const liveNow = Clock.currentTimeMillis.pipe(TestServices.provideLive)
    const deadline = (yield* liveNow) + Duration.toMillis(bound)
    while ((yield* liveNow) < deadline) {
      const a = yield* effect
      if (done(a)) return a
      yield* liveSleep("20 millis")
    }
    return yield* Effect.dieMessage(`${what}: not within ${Duration.format(bound)}`)
  })

/** Background work (a refresh over a real connection) finishing on a loaded machine: a hang bound. */
const backgroundBound = Duration.seconds(10)

describe("Redis claims", () => {
  it.scoped(
    "getMany of cached keys is one read round trip (one MGET), and so are concurrent gets",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const context = yield* connect(server.url)
        const ids = Array.from({ length: 20 }, (_, i) => i)
        const source = yield* DataSource.memory<number, string>(ids.map((id) => [id, `v${id}`] as const))
        const cache = yield* make(context, source)
        yield* cache.getMany(ids) // loads and fills
        const expected = ids.map((id) => Option.some(`v${id}`))

        let before = yield* server.commandCalls
        deepStrictEqual(yield* cache.getMany(ids), expected)
        const many = yield* readCalls(server, before)
        deepStrictEqual(many, { roundTrips: 1, mget: 1, get: 0 })

        before = yield* server.commandCalls
        const concurrent = yield* Effect.forEach(ids, (id) => cache.get(id), { concurrency: "unbounded" })
        deepStrictEqual(concurrent, expected)
        const gets = yield* readCalls(server, before)
        // the first read of a turn goes out at once, the others gather into one call: never one per get
        assert.isAtMost(gets.roundTrips, 2, `${gets.roundTrips} read round trips for ${ids.length} concurrent gets`)
        assert.strictEqual(gets.mget, gets.roundTrips)
        assert.strictEqual(gets.get, 0)
        assert.strictEqual(yield* source.loads, ids.length)
      }),
    30_000
  )

  it.scoped(
    "invalidatePattern escapes glob characters of the prefix, namespace and version in SCAN MATCH",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const context = yield* connect(server.url)
        const source = yield* DataSource.memory<number, string>([[0, "v0"], [1, "v1"], [2, "v2"]])
        // unescaped, `p?:n*:v[12]:*` would match every key of the second cache
        const globby = yield* make(context, source, { prefix: "p?", namespace: "n*", version: "v[12]" })
        const other = yield* make(context, source, { prefix: "pX", namespace: "nY", version: "v1" })
        yield* globby.getMany([0, 1, 2])
        yield* other.getMany([0, 1, 2])
        assert.strictEqual(yield* globby.invalidatePattern("*"), 3)
        for (const id of [0, 1, 2]) {
          assert.strictEqual(yield* server.command("EXISTS", other.keyOf(id)), ":1", `${other.keyOf(id)} was deleted`)
          assert.strictEqual(yield* server.command("EXISTS", globby.keyOf(id)), ":0", `${globby.keyOf(id)} survived`)
        }
      }),
    30_000
  )

  it.scoped(
    "stale-while-revalidate: two instances on one Redis serve the stale value and refresh it once",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const data = new Map([[1, "v1"]])
        let lookups = 0
        const refreshStarted = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        // every lookup after the first (the refresh) waits to be released
        const lookup = (id: number) =>
          Effect.gen(function*() {
            lookups++
            const row = Option.fromNullable(data.get(id))
            if (lookups > 1) {
              yield* Deferred.succeed(refreshStarted, undefined)
              yield* Deferred.await(release)
            }
            return row
          })
        const options = { ttl: "1 second", staleWhileRevalidate: "1 minute" } as const
        const a = yield* make(yield* connect(server.url), lookup, options)
        const b = yield* make(yield* connect(server.url), lookup, options)
        assertSome(yield* a.get(1), "v1")
        data.set(1, "v2")
        yield* TestClock.adjust("2 seconds") // past the TTL (the clock decides staleness; Redis holds the entry)

        assertSome(yield* a.get(1), "v1") // stale, served at once; A refreshes in the background
        yield* Deferred.await(refreshStarted)
        const setsBefore = (yield* server.commandCalls).get("set") ?? 0
        for (let i = 0; i < 5; i++) assertSome(yield* b.get(1), "v1") // B serves stale too ...
        // ... and tries to refresh: its SET NX of the refresh hint reaches Redis (and is refused),
        // or, without a hint, it calls the lookup
        yield* waitUntil(
          "B's refresh attempt",
          backgroundBound,
          Effect.map(server.commandCalls, (calls) => (calls.get("set") ?? 0) > setsBefore || lookups > 2),
          (attempted) => attempted
        )
        assert.strictEqual(lookups, 2, "B refreshed too: the cross-process hint did not hold")

        yield* Deferred.succeed(release, undefined)
        yield* waitUntil("the refreshed value", backgroundBound, a.get(1), (value) => Option.getOrNull(value) === "v2")
        assertSome(yield* b.get(1), "v2")
        assert.strictEqual(lookups, 2)
      }),
    30_000
  )

  it.scopedLive(
    "shutdown never hangs with the resilient wrapper on: Redis paused (SIGSTOP) mid-command, the scope closes",
    () =>
      Effect.gen(function*() {
        // quit is bounded (1 s) by the client itself, then the socket is dropped; the wrapper's
        // background work is interrupted: 5 s bounds a hang, it is not a latency claim
        const shutdownBound = Duration.seconds(5)
        const server = yield* RedisServer.make
        const scope = yield* Scope.make()
        // a command timeout longer than the bound: nothing but shutdown's own bounds may end the wait
        const context = yield* connect(server.url, { commandTimeout: "1 minute" }).pipe(Scope.extend(scope))
        const source = yield* DataSource.memory<number, string>([[1, "v1"], [2, "v2"]])
        const cache = yield* make(context, source).pipe(Scope.extend(scope))
        assertSome(yield* cache.get(1), "v1")
        yield* server.pause
        // commands in flight when the scope closes: a read and an invalidation, both hung
        yield* Effect.forkIn(Effect.exit(cache.get(2)), scope)
        yield* Effect.forkIn(Effect.exit(cache.invalidate(1)), scope)
        yield* liveSleep("50 millis") // let both reach the socket (a real wait, not a bound)
        const closed = yield* Scope.close(scope, Exit.void).pipe(
          Effect.disconnect, // a hung close is reported at the bound, not awaited
          Effect.timeout(shutdownBound),
          Effect.exit,
          Effect.ensuring(server.resume)
        )
        assert.isTrue(Exit.isSuccess(closed), `closing the scope took longer than ${Duration.format(shutdownBound)}`)
      }),
    30_000
  )

  it.scopedLive(
    "LOADING replies (a replica loading its master's dataset) fail operations but never open the breaker",
    () =>
      Effect.gen(function*() {
        // a bound against a hang while the replica syncs and loads (20,000 keys × 250 µs: 5 s, so
        // that a stall of this process mid-test cannot outlast the loading the gets must see)
        const loadingBound = Duration.seconds(20)
        const master = yield* RedisServer.makeWith({ args: ["--repl-diskless-sync-delay", "0"] })
        assert.strictEqual(yield* master.command("DEBUG", "POPULATE", "20000", "bulk", "100"), "+OK")
        // the cache's Redis loads slowly and answers LOADING meanwhile
        const replica = yield* RedisServer.makeWith({
          args: ["--key-load-delay", "250", "--loading-process-events-interval-bytes", "1024"]
        })
        const context = yield* connect(replica.url)
        const source = yield* DataSource.memory<number, string>(
          Array.from({ length: 100 }, (_, id) => [id, `v${id}`] as const)
        )
        const cache = yield* make(context, source)
        assertSome(yield* cache.get(0), "v0")

        assert.strictEqual(yield* replica.command("REPLICAOF", master.host, String(master.port)), "+OK")
        yield* waitUntil(
          "the replica answering LOADING",
          loadingBound,
          replica.command("GET", "x"),
          (reply) => reply.startsWith("-LOADING")
        )
        const before = yield* snapshotOf(context)
        // well past the failure threshold (5): every read gets a LOADING reply and falls back
        for (let id = 1; id < 30; id++) assertSome(yield* cache.get(id), `v${id}`)
        const during = yield* snapshotOf(context)
        assert.strictEqual(
          (yield* replica.info("persistence")).get("loading"),
          "1",
          "the replica finished loading during the gets: the test did not see LOADING replies throughout"
        )
        assert.isAtLeast(during.store.failures - before.store.failures, 29, "every get's read failed with LOADING")
        assert.strictEqual(during.store.breakerOpened, 0, "LOADING replies opened the breaker")
        assert.strictEqual(during.store.breaker, "closed")
        assert.strictEqual(during.fallbacks - before.fallbacks, 29)

        yield* waitUntil(
          "the replica loaded",
          loadingBound,
          replica.info("persistence"),
          (i) => i.get("loading") === "0"
        )
        assert.strictEqual(yield* replica.command("REPLICAOF", "NO", "ONE"), "+OK")
        // the store was never skipped: the next get reaches Redis at once
        const loadsBefore = yield* source.loads
        assertSome(yield* cache.get(50), "v50")
        assertSome(yield* cache.get(50), "v50")
        assert.strictEqual((yield* source.loads) - loadsBefore, 1, "the second get is a hit")
        assert.strictEqual((yield* snapshotOf(context)).store.breakerOpened, 0)
      }),
    60_000
  )
})
