/**
 * Stampede control across processes, on a real redis-server: child Node.js processes
 * (test/fixtures/stampede-child.ts) race for one key; their lookups count themselves with `INCR`
 * in Redis. Counted, not timed.
 */
import { CacheAside, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import { Data, Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { Config, Summary } from "./fixtures/stampede-child.js"
import { marker, Row } from "./fixtures/stampede-child.js"
import { RedisServer } from "./utils/RedisServer.js"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const childScript = Path.join(root, "test", "fixtures", "stampede-child.ts")

class ChildError extends Data.TaggedError("ChildError")<{ readonly message: string }> {}

interface Event {
  readonly event: string
  readonly [field: string]: unknown
}

interface Child {
  readonly pid: number
  readonly events: ReadonlyArray<Event>
  /** Waits (real time, at most 20 s) for the first event named `name`. */
  readonly waitFor: (name: string) => Effect.Effect<Event, ChildError>
  readonly summary: Effect.Effect<Summary, ChildError>
  readonly kill: Effect.Effect<void>
  /** The exit code, `null` when killed by a signal; waits for the exit. */
  readonly exit: Effect.Effect<number | null>
}

/**
 * Spawns `node --import tsx test/fixtures/stampede-child.ts <config>` with the repository root as
 * its working directory (where the root devDependency `tsx` resolves). Killed with the scope.
 */
const spawnChild = (config: Config): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(
        process.execPath,
        ["--import", "tsx", childScript, JSON.stringify(config)],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
      )
      const events: Array<Event> = []
      const stderr: Array<string> = []
      let buffered = ""
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8")
        let end: number
        while ((end = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, end)
          buffered = buffered.slice(end + 1)
          if (line.startsWith(marker)) events.push(JSON.parse(line.slice(marker.length)) as Event)
        }
      })
      child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const alive = () => child.exitCode === null && child.signalCode === null
      const waitFor = (name: string) =>
        Effect.suspend(() => {
          const found = events.find((e) => e.event === name)
          if (found !== undefined) return Effect.succeed(found)
          return alive()
            ? Effect.fail(new ChildError({ message: "not yet" }))
            : Effect.die(new ChildError({ message: `child ${child.pid} exited before "${name}":\n${stderr.join("")}` }))
        }).pipe(
          Effect.retry(Schedule.spaced("10 millis")),
          Effect.timeoutFail({
            duration: "20 seconds",
            onTimeout: () => new ChildError({ message: `child ${child.pid}: no "${name}" event\n${stderr.join("")}` })
          })
        )
      return {
        pid: child.pid ?? -1,
        events,
        waitFor,
        summary: Effect.map(waitFor("summary"), (e) => e as unknown as Summary),
        kill: Effect.promise(() => {
          if (alive()) child.kill("SIGKILL")
          return exited
        }).pipe(Effect.asVoid),
        exit: Effect.promise(() => exited)
      } satisfies Child
    }),
    (child) => child.kill
  )

/** A plain client for the test's own bookkeeping (barrier, counter, the "database" hash). */
const client = (server: RedisServer["Type"]) =>
  Effect.acquireRelease(
    Effect.sync(() => new Redis(server.url)),
    (redis) => Effect.promise(() => redis.quit())
  )

const baseConfig = (server: RedisServer["Type"], overrides: Partial<Config>): Config => ({
  url: server.url,
  namespace: "stampede",
  key: "hot",
  gets: 250,
  lookup: { _tag: "sleep", millis: 100 },
  counterKey: "lookups",
  dbKey: "db",
  barrierKey: "go",
  lock: true,
  leaseTtlMillis: 10_000,
  ttlMillis: 60_000,
  commandTimeoutMillis: 2_000,
  ...overrides
})

/** The parent's own handle on the same namespace (same key layout as the children's). */
const parentCache = (
  server: RedisServer["Type"],
  redis: Redis,
  options: { readonly lock: boolean; readonly leaseTtlMillis: number }
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }),
        Metrics.layer
      )
    )
    const cache = yield* CacheAside.make({
      namespace: "stampede",
      key: (key: string) => key,
      schema: Row,
      // the parent's lookup reads the "database" too, but does not count itself
      lookup: (key: string) =>
        Effect.promise(() => redis.hget("db", key)).pipe(
          Effect.map((name) => name === null ? Option.none<Row>() : Option.some(new Row({ id: key, name })))
        ),
      ttl: "1 minute",
      jitter: 0,
      leaseTtl: Duration.millis(options.leaseTtlMillis),
      lock: options.lock
    }).pipe(Effect.provide(context))
    const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("stampede")).pipe(Effect.provide(context))
    return { cache, snapshot }
  })

/** Starts `n` racing children, waits until all are ready, then opens the barrier. */
const race = (server: RedisServer["Type"], redis: Redis, n: number, overrides: Partial<Config>) =>
  Effect.gen(function*() {
    yield* Effect.promise(() => redis.hset("db", "hot", "row v1"))
    const children = yield* Effect.forEach(
      Array.from({ length: n }),
      () => spawnChild(baseConfig(server, overrides)),
      { concurrency: "unbounded" }
    )
    yield* Effect.forEach(children, (c) => c.waitFor("ready"), { concurrency: "unbounded", discard: true })
    yield* Effect.promise(() => redis.set("go", "1"))
    return yield* Effect.forEach(children, (c) => c.summary, { concurrency: "unbounded" })
  })

const lookups = (redis: Redis) => Effect.promise(() => redis.get("lookups")).pipe(Effect.map((n) => Number(n ?? 0)))

const sum = (summaries: ReadonlyArray<Summary>, f: (s: Summary) => number) =>
  summaries.reduce((total, s) => total + f(s), 0)

describe("stampede across processes (Redis)", { timeout: 60_000 }, () => {
  it.scopedLive("lock on: 4 processes × 250 gets of one cold key → one lookup for the fleet", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* client(server)
      const summaries = yield* race(server, redis, 4, { lock: true })
      assert.strictEqual(yield* lookups(redis), 1)
      for (const s of summaries) {
        assert.strictEqual(s.failures, 0)
        deepStrictEqual(s.values, { "row v1": 250 })
        assert.strictEqual(s.metrics.lockTimeouts, 0)
        assert.strictEqual(s.metrics.cacheErrors, 0)
        // in-process coalescing: one cache read (and at most one lookup) per process
        assert.strictEqual(s.metrics.coalesced, 249)
      }
      assert.strictEqual(sum(summaries, (s) => s.metrics.loads), 1)
      // the 3 processes that did not load waited for the fill, unless they came after it
      assert.strictEqual(sum(summaries, (s) => s.metrics.lockWaits + s.metrics.hits), 3)
    }))

  it.scopedLive("lock off: 4 processes × 250 gets → at most one lookup per process, every get answered", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* client(server)
      const summaries = yield* race(server, redis, 4, { lock: false })
      const count = yield* lookups(redis)
      assert.isAtLeast(count, 1)
      assert.isAtMost(count, 4)
      assert.strictEqual(sum(summaries, (s) => s.metrics.loads), count)
      for (const s of summaries) {
        assert.strictEqual(s.failures, 0)
        deepStrictEqual(s.values, { "row v1": 250 })
        assert.strictEqual(s.metrics.lockWaits, 0)
        assert.isAtMost(s.metrics.loads, 1)
      }
    }))

  it.scopedLive("a lock holder killed while loading: the others proceed once its lease expires", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* client(server)
      yield* Effect.promise(() => redis.hset("db", "hot", "row v1"))
      const leaseTtlMillis = 1_000
      // the parent's handle: the lease's key, and later a read of the fill
      const parent = yield* parentCache(server, redis, { lock: true, leaseTtlMillis })
      const waiters = yield* Effect.forEach(
        [1, 2],
        () => spawnChild(baseConfig(server, { leaseTtlMillis, lockWaitMillis: 10_000 })),
        { concurrency: "unbounded" }
      )
      yield* Effect.forEach(waiters, (c) => c.waitFor("ready"), { concurrency: "unbounded", discard: true })
      // the holder's lease lives the default 10 s while the waiters get to it: a lease of 1 s ran out
      // on a loaded machine before a slow waiter read it (it then never waited); it is cut to 1 s
      // once both wait, below
      const holder = yield* spawnChild(
        baseConfig(server, { gets: 1, lookup: { _tag: "forever" }, barrierKey: null })
      )
      yield* holder.waitFor("loading") // it holds the lease now, and never fills
      yield* Effect.promise(() => redis.set("go", "1"))
      // both found the lease and wait for its fill (an event, not a sleep)
      yield* Effect.forEach(waiters, (c) => c.waitFor("waiting"), { concurrency: "unbounded", discard: true })
      yield* holder.kill
      assert.isNull(yield* holder.exit)
      // the dead holder's lease now expires in 1 s, as a 1 s lease taken by a holder dying now would
      assert.strictEqual(yield* Effect.promise(() => redis.pexpire(parent.cache.keyOf("hot"), leaseTtlMillis)), 1)
      const summaries = yield* Effect.forEach(waiters, (c) => c.summary, { concurrency: "unbounded" })
      // the dead holder's lookup, and one more after its lease expired
      assert.strictEqual(yield* lookups(redis), 2)
      for (const s of summaries) {
        assert.strictEqual(s.failures, 0)
        deepStrictEqual(s.values, { "row v1": 250 })
        assert.strictEqual(s.metrics.lockTimeouts, 0)
        assert.isAtLeast(s.metrics.lockWaits, 1)
      }
      // the parent, with the lock on, reads the fill
      const value = yield* parent.cache.get("hot")
      assert.strictEqual(Option.getOrUndefined(value)?.name, "row v1")
      assert.strictEqual((yield* parent.snapshot).hits, 1)
      assert.strictEqual(yield* lookups(redis), 2)
    }))

  it.scopedLive("invalidation race: a fill that raced an update and an invalidation is refused", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* client(server)
      yield* Effect.promise(() => redis.hset("db", "hot", "old row"))
      const reader = yield* spawnChild(
        baseConfig(server, { gets: 1, barrierKey: null, lookup: { _tag: "release", key: "release" } })
      )
      // the reader missed, took the lease, read the old row, and is blocked before its fill
      yield* reader.waitFor("loading")
      const parent = yield* parentCache(server, redis, { lock: false, leaseTtlMillis: 10_000 })
      // the writer: update the row, then invalidate
      yield* Effect.promise(() => redis.hset("db", "hot", "new row"))
      yield* parent.cache.invalidate("hot")
      yield* Effect.promise(() => redis.set("release", "1"))
      const summary = yield* reader.summary
      assert.strictEqual(summary.failures, 0)
      deepStrictEqual(summary.values, { "old row": 1 }) // the reader answers what it loaded
      assert.strictEqual(summary.metrics.leaseRejected, 1) // but does not cache it
      assert.strictEqual(yield* reader.exit, 0)
      const after = yield* parent.cache.get("hot")
      assert.strictEqual(Option.getOrUndefined(after)?.name, "new row")
      const again = yield* parent.cache.get("hot")
      assert.strictEqual(Option.getOrUndefined(again)?.name, "new row")
      const metrics = yield* parent.snapshot
      assert.strictEqual(metrics.loads, 1)
      assert.strictEqual(metrics.hits, 1)
      assert.strictEqual(yield* lookups(redis), 1)
    }))
})
