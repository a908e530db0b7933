/**
 * Resilience on real redis-server processes: Redis unreachable without losing its data (a TCP
 * proxy that refuses or blackholes connections, or SIGSTOP), Redis blocked by a long command,
 * killed (the circuit breaker), answering error replies (READONLY, OOM), and fail-safe over Redis.
 * Outcomes are counted (failed gets, fallbacks, store metrics), not timed with tight bounds.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import type { ResilientCacheStore } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import { Clock, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, type Scope, TestClock } from "effect"
import { Redis } from "ioredis"
import * as Net from "node:net"
import { DbError, User } from "./CacheAsideSuite.js"
import { freePort, rawCommand, RedisServer } from "./utils/RedisServer.js"
import { hitsResume as hitsResumeTraffic, load as loadTraffic, type Traffic } from "./utils/Traffic.js"

const NAMESPACE = "resilience"
const old = new User({ id: 1, name: "old" })
const fresh = new User({ id: 1, name: "new" })
const rows = Array.from(
  { length: 200 },
  (_, id) => [id, id === 1 ? old : new User({ id, name: `user ${id}` })] as const
)
const expected = (id: number) => id === 1 ? undefined : `user ${id}`

// -------------------------------------------------------------------------------------------------
// a TCP proxy in front of redis-server: Redis becomes unreachable while it keeps its data

type Cut = "refuse" | "blackhole"

interface Proxy {
  readonly url: string
  /**
   * `refuse`: every connection is dropped and new ones are reset at once (a closed port).
   * `blackhole`: open connections stay open but nothing is forwarded any more, and new ones are
   * accepted and never answered (a network that drops packets).
   */
  readonly cut: (how: Cut) => Effect.Effect<void>
  /** Forwards again; connections that lived through a blackhole are closed (they did not survive it). */
  readonly restore: Effect.Effect<void>
}

const makeProxy = (host: string, port: number): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    let mode: "open" | Cut = "open"
    const sockets = new Set<Net.Socket>()
    const track = (socket: Net.Socket) => {
      sockets.add(socket)
      socket.on("error", () => socket.destroy())
      socket.on("close", () => sockets.delete(socket))
    }
    const server = Net.createServer((client) => {
      if (mode === "refuse") return void client.resetAndDestroy()
      track(client)
      if (mode === "blackhole") return // accepted, never answered
      const upstream = Net.createConnection({ host, port })
      track(upstream)
      client.on("data", (chunk) => mode === "open" && upstream.write(chunk))
      upstream.on("data", (chunk) => mode === "open" && client.write(chunk))
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    })
    const listening = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const dropAll = () => {
      for (const socket of sockets) socket.destroy()
    }
    return {
      url: `redis://127.0.0.1:${listening}`,
      cut: (how) =>
        Effect.sync(() => {
          mode = how
          if (how === "refuse") dropAll()
        }),
      restore: Effect.sync(() => {
        if (mode === "blackhole") dropAll()
        mode = "open"
      })
    }
  })

// -------------------------------------------------------------------------------------------------
// helpers

const setup = (
  url: string,
  options: {
    readonly commandTimeout?: Duration.DurationInput
    readonly resilience?: ResilientCacheStore.Options
  } = {}
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer({
          url: Redacted.make(url),
          commandTimeout: options.commandTimeout ?? commandTimeout,
          resilience: options.resilience
        }),
        Metrics.layer
      )
    )
    const source = yield* DataSource.memory<number, User>(rows)
    const cache = yield* CacheAside.make({
      namespace: NAMESPACE,
      key: (id: number) => String(id),
      schema: User,
      lookup: source,
      ttl: "1 minute",
      jitter: 0
    }).pipe(Effect.provide(context))
    const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(NAMESPACE)).pipe(Effect.provide(context))
    return { cache, source, snapshot }
  })

type Cache = CacheAside.CacheAside<number, User, never>

/** A plain ioredis connection straight to the server (not through the proxy), to look at what Redis holds. */
const directClient = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(url, { maxRetriesPerRequest: 1 })),
    (redis) => Effect.sync(() => redis.disconnect())
  ).pipe(Effect.map((redis) => (key: string) => Effect.promise(() => redis.get(key))))

/** Gets over ids 2..49 (1 is the key the tests update), each answering its row. */
const traffic: Traffic<number> = { keys: Array.from({ length: 48 }, (_, i) => i + 2), expected }
const load = (cache: Cache, gets: number, concurrency: number) =>
  Effect.map(loadTraffic(cache, traffic, gets, concurrency), ({ failed, wrong }) => ({ failed, wrong }))
const hitsResume = (cache: Cache, snapshot: Effect.Effect<Metrics.Snapshot>) =>
  hitsResumeTraffic(cache, traffic, snapshot, recoveryBound)

/** Redis reachable again until reads reach it (breaker probe, cooldown) on a loaded machine: a hang bound. */
const recoveryBound = Duration.seconds(15)

/** The store's command timeout in these tests. */
const commandTimeout = Duration.millis(250)

/**
 * Reads key 1 until a read reaches Redis (it is not a fallback to the lookup), for at most
 * `recoveryBound` (live clock); returns that read. Every fallback on the way must have answered the new value.
 */
const firstReadThroughRedis = (cache: Cache, snapshot: Effect.Effect<Metrics.Snapshot>) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(recoveryBound)
    let fallbacks = 0
    while ((yield* Clock.currentTimeMillis) < deadline) {
      const before = yield* snapshot
      const value = yield* cache.get(1)
      const after = yield* snapshot
      if (after.fallbacks === before.fallbacks) return { value, fallbacks, hit: after.hits > before.hits }
      fallbacks++
      deepStrictEqual(value, Option.some(fresh), "a fallback read answered from the data source")
      yield* Effect.sleep("50 millis")
    }
    return assert.fail(`no read reached Redis within ${Duration.format(recoveryBound)} of recovery`)
  })

const waitFor = <A>(what: string, effect: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(recoveryBound)
    while ((yield* Clock.currentTimeMillis) < deadline) {
      const a = yield* effect
      if (done(a)) return a
      yield* Effect.sleep("50 millis")
    }
    return assert.fail(`timed out waiting for ${what}`)
  })

// -------------------------------------------------------------------------------------------------

describe("Resilience on real Redis processes", () => {
  it.scopedLive(
    "unreachable behind a proxy (refused): invalidate is queued, and the first read after recovery returns the new value",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const proxy = yield* makeProxy(server.host, server.port)
        const stored = yield* directClient(server.url)
        // no background replay: only the read path can replay the queue, so it is the read gate that is tested
        const { cache, snapshot, source } = yield* setup(proxy.url, { resilience: { replayInterval: "1 hour" } })
        const key = cache.keyOf(1)
        assertSome(yield* cache.get(1), old)
        assert.include(yield* stored(key), "old")

        yield* proxy.cut("refuse")
        yield* source.write(1, fresh)
        const invalidated = yield* Effect.exit(cache.invalidate(1))
        assert.isTrue(Exit.isSuccess(invalidated), "invalidate failed the caller")
        let s = yield* snapshot
        assert.strictEqual(s.store.invalidationsQueued, 1)
        assert.strictEqual(s.store.queueSize, 1)
        // reads during the outage answer from the data source
        for (let i = 0; i < 3; i++) assertSome(yield* cache.get(1), fresh)
        assert.isAtLeast((yield* snapshot).fallbacks, 3)

        yield* proxy.restore
        assert.include(yield* stored(key), "old", "the old value is still in Redis when it comes back")
        const first = yield* firstReadThroughRedis(cache, snapshot)
        assertSome(first.value, fresh)
        assert.isFalse(first.hit, "the first read through Redis must be a miss: the queued delete ran first")
        s = yield* snapshot
        assert.strictEqual(s.store.invalidationsReplayed, 1)
        assert.strictEqual(s.store.queueSize, 0)
        assert.include(yield* stored(key), "new")
        const before = s.hits
        assertSome(yield* cache.get(1), fresh)
        assert.strictEqual((yield* snapshot).hits, before + 1)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "unreachable behind a proxy (blackholed): the delete times out, is queued, and the background replay applies it",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const proxy = yield* makeProxy(server.host, server.port)
        const stored = yield* directClient(server.url)
        const { cache, snapshot, source } = yield* setup(proxy.url)
        const key = cache.keyOf(1)
        assertSome(yield* cache.get(1), old)

        yield* proxy.cut("blackhole")
        yield* source.write(1, fresh)
        const invalidated = yield* Effect.exit(cache.invalidate(1))
        assert.isTrue(Exit.isSuccess(invalidated), "invalidate failed the caller")
        let s = yield* snapshot
        // the UNLINK went into the blackhole: it timed out (in ioredis or in the store, whichever fired first)
        assert.isAtLeast(s.store.failures, 1)
        assert.strictEqual(s.store.invalidationsQueued, 1)
        assert.include(yield* stored(key), "old", "the delete never reached Redis")

        yield* proxy.restore
        // no reads: the background fiber replays the queue once Redis answers
        s = yield* waitFor("the background replay", snapshot, (s) => s.store.queueSize === 0)
        assert.strictEqual(s.store.invalidationsReplayed, 1)
        assert.isNull(yield* stored(key))
        const first = yield* firstReadThroughRedis(cache, snapshot)
        assertSome(first.value, fresh)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "paused (SIGSTOP): the open breaker rejects the delete, it is queued and replayed before the first read after SIGCONT",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const stored = yield* directClient(server.url)
        const { cache, snapshot, source } = yield* setup(server.url, { resilience: { replayInterval: "1 hour" } })
        const key = cache.keyOf(1)
        assertSome(yield* cache.get(1), old)
        assert.include(yield* stored(key), "old")

        yield* server.pause
        // a burst of reads times out and opens the breaker
        const burst = yield* load(cache, 16, 16)
        deepStrictEqual(burst, { failed: 0, wrong: 0 })
        let s = yield* snapshot
        assert.strictEqual(s.store.breaker, "open")
        // the delete never reaches the paused server (an in-flight UNLINK would run on SIGCONT anyway)
        yield* source.write(1, fresh)
        const rejectedBefore = s.store.rejected
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(cache.invalidate(1))), "invalidate failed the caller")
        s = yield* snapshot
        assert.isAbove(s.store.rejected, rejectedBefore)
        assert.strictEqual(s.store.invalidationsQueued, 1)

        yield* server.resume
        assert.include(yield* stored(key), "old", "the old value is still in Redis after SIGCONT")
        const first = yield* firstReadThroughRedis(cache, snapshot)
        assertSome(first.value, fresh)
        assert.isFalse(first.hit)
        s = yield* snapshot
        assert.strictEqual(s.store.invalidationsReplayed, 1)
        assert.isAtLeast(s.store.breakerClosed, 1)
        assert.include(yield* stored(key), "new")
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "DEBUG SLEEP 2 during the calls: every get answers within the command timeout (plus a named slack), none fails",
    () =>
      Effect.gen(function*() {
        // what a loaded 2-core machine may add to one get (event-loop stalls, GC): generous, named
        const schedulingSlack = Duration.millis(750)
        const getBound = Duration.sum(commandTimeout, schedulingSlack)
        const server = yield* RedisServer.make
        const { cache, snapshot } = yield* setup(server.url)
        yield* load(cache, 48, 8) // warm
        const blocker = yield* Effect.fork(
          rawCommand(server.host, server.port, ["DEBUG", "SLEEP", "2"], 10_000)
        )
        // the server is blocked once a PING gets no answer (an event, not a sleep)
        yield* waitFor(
          "the server to block",
          Effect.either(rawCommand(server.host, server.port, ["PING"], 100)),
          (reply) => reply._tag === "Left"
        )
        let gets = 0
        let slow = 0
        let failed = 0
        let wrong = 0
        let worst = 0
        // gets run until DEBUG SLEEP answers: for the whole block
        const worker = (w: number) =>
          Effect.whileLoop({
            while: () => blocker.unsafePoll() === null,
            body: () => {
              const id = 2 + ((gets + w) % 48)
              const started = performance.now()
              return Effect.map(Effect.exit(cache.get(id)), (exit) => {
                const took = performance.now() - started
                gets++
                worst = Math.max(worst, took)
                if (took > Duration.toMillis(getBound)) slow++
                if (Exit.isFailure(exit)) failed++
                else if (Option.getOrUndefined(exit.value)?.name !== expected(id)) wrong++
              }).pipe(Effect.zipLeft(Effect.sleep("1 millis"))) // a turn of the event loop: the blocker's reply can land
            },
            step: () => {}
          })
        yield* Effect.forEach(Array.from({ length: 16 }, (_, w) => w), worker, { concurrency: 16, discard: true })
        assert.strictEqual(yield* Fiber.join(blocker), "+OK", "DEBUG SLEEP ran")
        const s = yield* snapshot
        assert.isAbove(gets, 16)
        assert.strictEqual(failed, 0)
        assert.strictEqual(wrong, 0)
        assert.strictEqual(slow, 0, `gets slower than ${Duration.format(getBound)} (worst ${Math.round(worst)} ms)`)
        assert.isAtLeast(s.store.failures, 1, "the blocked server made gets time out")
        assert.isAbove(s.fallbacks, 0)
        assert.isTrue(yield* hitsResume(cache, snapshot), "hits did not resume after the block")
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "Redis killed: the breaker opens after a few failures, later gets skip Redis; restarted: it closes and hits resume",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { cache, snapshot } = yield* setup(server.url)
        yield* load(cache, 48, 8) // warm
        yield* server.kill
        // rounds of gets until the breaker has been open for ten of them (counted, not timed)
        let gets = 0
        let openRounds = 0
        const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(recoveryBound)
        while (openRounds < 10) {
          assert.isBelow(yield* Clock.currentTimeMillis, deadline, "the breaker did not stay open for ten rounds")
          const round = yield* load(cache, 100, 16)
          deepStrictEqual(round, { failed: 0, wrong: 0 })
          gets += 100
          if ((yield* snapshot).store.breaker === "open") openRounds++
          yield* Effect.sleep("50 millis")
        }
        const s = yield* snapshot
        assert.strictEqual(s.store.breaker, "open")
        assert.isAtLeast(s.store.breakerOpened, 1)
        // store calls that went out to the dead server: the run before the breaker opened, plus probes
        assert.isBelow(s.store.failures, 50, `${s.store.failures} store calls failed out of ${gets} gets`)
        assert.isAbove(s.store.rejected, gets * 0.9)
        assert.isAtLeast(s.fallbacks + s.coalesced, gets)

        yield* server.restart
        assert.isTrue(yield* hitsResume(cache, snapshot), "hits did not resume after the restart")
        const after = yield* snapshot
        assert.strictEqual(after.store.breaker, "closed")
        assert.isAtLeast(after.store.breakerClosed, 1)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "error replies (READONLY replica, then OOM): reads hit, fills are dropped and counted, the breaker stays closed",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const stored = yield* directClient(server.url)
        const { cache, snapshot, source } = yield* setup(server.url)
        yield* load(cache, 48, 8) // warm ids 2..49
        assertSome(yield* cache.get(1), old)
        const noMaster = yield* freePort
        assert.strictEqual(yield* server.command("REPLICAOF", "127.0.0.1", String(noMaster)), "+OK")

        // READONLY: cached keys are hits, new keys are loaded and not cached
        let before = yield* snapshot
        deepStrictEqual(yield* load(cache, 48, 8), { failed: 0, wrong: 0 })
        let s = yield* snapshot
        assert.strictEqual(s.hits - before.hits, 48, "reads still hit on a read-only replica")
        const loadsBefore = yield* source.loads
        for (let id = 100; id < 120; id++) {
          assertSome(yield* cache.get(id), new User({ id, name: `user ${id}` }))
        }
        s = yield* snapshot
        assert.strictEqual((yield* source.loads) - loadsBefore, 20)
        assert.strictEqual(s.writeErrors - before.writeErrors, 20, "every dropped fill is counted")
        assert.isAbove(s.store.failures, 0)
        assert.strictEqual(s.store.breakerOpened, 0)
        assert.strictEqual(s.store.breaker, "closed")

        // an invalidation refused with READONLY is queued; reads fall back (the new value) until it is replayed
        yield* source.write(1, fresh)
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(cache.invalidate(1))))
        assert.strictEqual((yield* snapshot).store.invalidationsQueued, 1)
        before = yield* snapshot
        for (let i = 0; i < 5; i++) assertSome(yield* cache.get(1), fresh)
        s = yield* snapshot
        assert.strictEqual(s.fallbacks - before.fallbacks, 5)
        assert.strictEqual(s.store.breaker, "closed")
        assert.include(yield* stored(cache.keyOf(1)), "old")

        assert.strictEqual(yield* server.command("REPLICAOF", "NO", "ONE"), "+OK")
        const first = yield* firstReadThroughRedis(cache, snapshot)
        assertSome(first.value, fresh)
        assert.strictEqual((yield* snapshot).store.invalidationsReplayed, 1)

        // OOM (noeviction): fills are refused, invalidations still work (UNLINK is allowed when out of memory)
        yield* server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        yield* server.command("CONFIG", "SET", "maxmemory", "1")
        before = yield* snapshot
        for (let id = 120; id < 140; id++) {
          assertSome(yield* cache.get(id), new User({ id, name: `user ${id}` }))
        }
        yield* cache.invalidate(2)
        s = yield* snapshot
        assert.strictEqual(s.writeErrors - before.writeErrors, 20)
        assert.strictEqual(s.store.invalidationsQueued, 1, "UNLINK works under OOM: nothing more queued")
        assert.isNull(yield* stored(cache.keyOf(2)))
        assert.strictEqual(s.store.breakerOpened, 0)
        assert.strictEqual(s.store.breaker, "closed")
      }),
    { timeout: 30_000 }
  )

  it.scoped(
    "fail-safe over Redis: after the TTL, a failing lookup is answered with the stale value kept in Redis",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const stored = yield* directClient(server.url)
        const context = yield* Layer.build(
          Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(server.url) }), Metrics.layer)
        )
        let failing = false
        let version = 1
        let lookups = 0
        const cache = yield* CacheAside.make({
          namespace: NAMESPACE,
          key: (id: number) => String(id),
          schema: User,
          lookup: (id: number) =>
            Effect.suspend(() => {
              lookups++
              return failing
                ? Effect.fail(new DbError({ message: "database down" }))
                : Effect.succeed(Option.some(new User({ id, name: `v${version}` })))
            }),
          // a minute, expired on the TestClock: the entry's envelope decides, Redis holds it (PX is real time)
          ttl: "1 minute",
          jitter: 0,
          failSafe: { maxStale: "10 minutes", throttle: "1 minute" }
        }).pipe(Effect.provide(context))
        const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(NAMESPACE)).pipe(Effect.provide(context))

        assertSome(yield* cache.get(1), new User({ id: 1, name: "v1" }))
        yield* TestClock.adjust("61 seconds") // past the TTL
        failing = true
        version = 2
        assert.include(yield* stored(cache.keyOf(1)), "v1", "the expired entry is still held in Redis")
        assertSome(yield* cache.get(1), new User({ id: 1, name: "v1" }))
        let s = yield* snapshot
        assert.strictEqual(s.staleServes, 1)
        assert.strictEqual(s.loadErrors, 1)
        assert.strictEqual(lookups, 2)
        // throttled: within the throttle period the stale value is a plain hit, the failing lookup is left alone
        assertSome(yield* cache.get(1), new User({ id: 1, name: "v1" }))
        assert.strictEqual(lookups, 2)

        failing = false
        yield* TestClock.adjust("61 seconds") // past the throttle
        assertSome(yield* cache.get(1), new User({ id: 1, name: "v2" }))
        s = yield* snapshot
        assert.strictEqual(lookups, 3)
        assert.strictEqual(s.store.failures, 0)
        assert.include(yield* stored(cache.keyOf(1)), "v2")
      }),
    { timeout: 30_000 }
  )
})
