/**
 * Faults on a real redis-server: killed, paused, full, filled with garbage. Outcomes are counted:
 * failed gets, lookups, fallbacks — not timed with tight bounds.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import { Deferred, Duration, Effect, Fiber, Layer, Logger, Redacted } from "effect"
import { Redis } from "ioredis"
import { User } from "./CacheAsideSuite.js"
import { RedisServer } from "./utils/RedisServer.js"
import {
  hitsResume as hitsResumeTraffic,
  load as loadTraffic,
  type Progress,
  resumeBound,
  type Traffic
} from "./utils/Traffic.js"

const rows = Array.from({ length: 50 }, (_, id) => [id, new User({ id, name: `user ${id}` })] as const)

const setup = (
  server: RedisServer["Type"],
  commandTimeout: Duration.DurationInput = "300 millis",
  resilience?: false
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout, resilience }),
        Metrics.layer
      )
    )
    const source = yield* DataSource.memory<number, User>(rows)
    const cache = yield* CacheAside.make({
      namespace: "fault",
      key: (id: number) => String(id),
      schema: User,
      lookup: source,
      ttl: "1 minute"
    }).pipe(Effect.provide(context))
    const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("fault")).pipe(Effect.provide(context))
    return { cache, source, snapshot }
  })

/** Gets over the 50 ids, each answering its row. */
const traffic: Traffic<number> = { keys: rows.map(([id]) => id), expected: (id) => `user ${id}` }
const load = (
  cache: CacheAside.CacheAside<number, User, never>,
  gets: number,
  concurrency: number,
  progress?: Progress
) => loadTraffic(cache, traffic, gets, concurrency, progress)
const hitsResume = (cache: CacheAside.CacheAside<number, User, never>, snapshot: Effect.Effect<Metrics.Snapshot>) =>
  hitsResumeTraffic(cache, traffic, snapshot)

describe("Redis faults", () => {
  it.scopedLive("Redis down: the store's failures say it is not connected, not which ioredis option refused the command", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      // the bare store: every failure is logged (no breaker refusing calls after five)
      const { cache } = yield* setup(server, "300 millis", false)
      yield* server.kill
      // until the client has seen the connection close (a command written before that fails
      // otherwise), bounded: every get answers from the lookup meanwhile
      for (let i = 0; i < 100 && !lines.some((line) => line.includes("Redis is not connected")); i++) {
        assertSome(
          yield* cache.get(i % 50).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))),
          rows[i % 50]![1]
        )
        yield* Effect.sleep("20 millis")
      }
      assert.isTrue(lines.some((line) => line.includes("Redis is not connected")), lines.join("\n"))
      assert.isFalse(lines.some((line) => line.includes("enableOfflineQueue")), lines.join("\n"))
    }))

  it.scopedLive("Redis killed mid-load: every get still succeeds through the lookup", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { cache, snapshot, source } = yield* setup(server)
      yield* cache.getMany(rows.map(([id]) => id)) // warm
      // killed once 500 of the 6,000 gets have answered: mid-load on any machine, however loaded
      const reached = yield* Deferred.make<void>()
      const running = yield* Effect.fork(load(cache, 6000, 32, { at: 500, reached }))
      yield* Deferred.await(reached)
      yield* server.kill
      const result = yield* Fiber.join(running)
      assert.strictEqual(result.done, 6000)
      assert.strictEqual(result.failed, 0)
      assert.strictEqual(result.wrong, 0)
      const s = yield* snapshot
      assert.isAbove(s.fallbacks, 0)
      assert.isAbove(yield* source.loads, 50)
      // Redis comes back (empty): the breaker probes, closes, and hits resume on their own
      yield* server.restart
      const resumed = yield* hitsResume(cache, snapshot)
      assert.isTrue(resumed, `hits did not resume within ${Duration.format(resumeBound)} of Redis coming back`)
    }), { timeout: 60_000 })

  it.scopedLive(
    "Redis paused (SIGSTOP): gets answer after the command timeout from the lookup, then hits resume",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { cache, snapshot } = yield* setup(server, "200 millis")
        yield* cache.getMany(rows.map(([id]) => id))
        yield* server.pause
        const started = performance.now()
        const result = yield* load(cache, 200, 50)
        const elapsed = performance.now() - started
        yield* server.resume
        assert.strictEqual(result.failed, 0)
        assert.strictEqual(result.wrong, 0)
        assert.isAbove((yield* snapshot).fallbacks, 0)
        // 200 gets in 4 waves of 50 concurrent wait at most 4 × 200 ms for the store, then the
        // breaker refuses at once; a bound against waiting on the pause itself, generous for a loaded machine
        const pausedLoadBound = Duration.seconds(10)
        assert.isBelow(elapsed, Duration.toMillis(pausedLoadBound))
        // the breaker opened during the pause: it probes after its cooldown, closes, hits resume
        assert.isAbove((yield* snapshot).store.breakerOpened, 0)
        assert.isTrue(yield* hitsResume(cache, snapshot), "hits did not resume after SIGCONT")
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "corrupt bytes written straight into Redis are a miss: evicted, counted, replaced",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { cache, snapshot, source } = yield* setup(server)
        const raw = yield* Effect.acquireRelease(
          Effect.sync(() => new Redis(server.url)),
          (redis) => Effect.promise(() => redis.quit())
        )
        const garbage: ReadonlyArray<string | Buffer> = [
          Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]),
          "not json at all",
          "{\"v\":{\"id\":\"seven\",\"name\":7}}",
          Buffer.from([0x1f, 0x8b, 0x00, 0x00])
        ]
        for (const bytes of garbage) {
          yield* Effect.promise(() => raw.set(cache.keyOf(7), bytes))
          assertSome(yield* cache.get(7), new User({ id: 7, name: "user 7" }))
        }
        assert.strictEqual((yield* snapshot).decodeErrors, garbage.length)
        assert.strictEqual(yield* source.loads, garbage.length)
        // the entry was replaced by a good one: a hit now
        yield* cache.get(7)
        assert.strictEqual(yield* source.loads, garbage.length)
        const stored = yield* Effect.promise(() => raw.get(cache.keyOf(7)))
        assert.include(stored ?? "", "user 7")
      }),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "Redis out of memory (noeviction): gets succeed, failed cache writes are counted",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { cache, snapshot, source } = yield* setup(server)
        yield* server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        yield* server.command("CONFIG", "SET", "maxmemory", "1")
        const result = yield* load(cache, 100, 10)
        assert.strictEqual(result.failed, 0)
        assert.strictEqual(result.wrong, 0)
        const s = yield* snapshot
        assert.strictEqual(yield* source.loads, 100) // nothing could be cached
        assert.strictEqual(s.writeErrors, 100)
        assert.strictEqual(s.cacheErrors, 100)
      }),
    { timeout: 30_000 }
  )
})
