/**
 * The command timeout decides after the event loop has read its sockets: a reply that has arrived
 * but not been read (the Node process was busy: decoding a big batch, a CPU-bound handler) is not a
 * timeout. On real redis-servers; outcomes counted (timeouts, breaker openings, entries and leases
 * in Redis), never timed.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, strictEqual } from "@effect/vitest/utils"
import { Duration, Effect, Fiber, Layer, Option, Redacted, Schema } from "effect"
import { Redis } from "ioredis"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

const setup = (server: RedisServer["Type"], commandTimeout?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer(
          commandTimeout === undefined
            ? { url: Redacted.make(server.url) }
            : { url: Redacted.make(server.url), commandTimeout }
        ),
        Metrics.layer
      )
    )
    const snapshot = (namespace: string) =>
      Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace)).pipe(Effect.provide(context))
    return { context, snapshot }
  })

/** Every value in the database: how many are leases (NUL-prefixed) and how many entries. */
const census = (redis: Redis, fulls: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    let leases = 0
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) {
        for (const value of await redis.mgetBuffer(...keys)) if (value !== null && value[0] === 0) leases++
      }
    } while (cursor !== "0")
    let entries = 0
    for (let i = 0; i < fulls.length; i += 1000) {
      for (const value of await redis.mgetBuffer(...fulls.slice(i, i + 1000))) {
        if (value !== null && value.length > 0 && value[0] !== 0) entries++
      }
    }
    return { leases, entries }
  })

/**
 * The commands clients send from now on, by name (a script's own calls left out), over `MONITOR`;
 * `until(marker)` sends `ECHO marker` and answers once the monitor has seen it.
 */
const watchCommands = (server: RedisServer["Type"]) =>
  Effect.gen(function*() {
    const redis = yield* plainClient(server)
    const monitor = yield* Effect.acquireRelease(
      Effect.promise(() => redis.monitor()),
      (monitor) => Effect.sync(() => monitor.disconnect())
    )
    const counts = new Map<string, number>()
    const markers = new Set<string>()
    monitor.on("monitor", (_time: string, args: Array<string>, source: string) => {
      if (source === "lua") return
      const name = args[0]!.toLowerCase()
      if (name === "echo") markers.add(args[1]!)
      else counts.set(name, (counts.get(name) ?? 0) + 1)
    })
    const until = (marker: string) =>
      Effect.gen(function*() {
        yield* Effect.promise(() => redis.echo(marker))
        while (!markers.has(marker)) yield* Effect.sleep("10 millis")
        return counts
      }).pipe(Effect.timeout("10 seconds"), Effect.orDie)
    return { until }
  })

/** Keeps the event loop busy (no timer, no I/O) for `millis`. */
const busy = (millis: number) => {
  const until = performance.now() + millis
  let spins = 0
  while (performance.now() < until) spins++
  return spins
}

describe("command deadlines", () => {
  it.scopedLive(
    "a cold getMany of 5,000 keys with loadMany (default options): no timeout, the breaker stays closed, every key cached, no lease left",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { context, snapshot } = yield* setup(server)
        let loadManyCalls = 0
        const batch = yield* CacheAside.make({
          namespace: "cold",
          key: (k: string) => k,
          schema: Schema.String,
          ttl: "1 hour",
          lookup: DataSource.make(
            (k: string) => Effect.succeed(Option.some(`v ${k}`)),
            (ks) =>
              Effect.sync(() => {
                loadManyCalls++
                return ks.map((k) => [k, Option.some(`v ${k}`)] as const)
              })
          )
        }).pipe(Effect.provide(context))
        const keys = Array.from({ length: 5000 }, (_, i) => `k${i}`)
        const redis = yield* plainClient(server)
        const monitor = yield* watchCommands(server)
        const values = yield* batch.getMany(keys)
        const sent = yield* monitor.until("done")
        // the leases are taken by lease-reads gathered into script calls (chunks of 1,000 keys),
        // not one SET NX per key; what remains is the fills (a script call per 16 keys: the
        // batch's fill concurrency) and the read
        strictEqual(sent.get("set") ?? 0, 0, JSON.stringify([...sent]))
        assert.isBelow([...sent.values()].reduce((a, b) => a + b, 0), 1000, JSON.stringify([...sent]))
        strictEqual(values.filter((v, i) => Option.isSome(v) && v.value === `v ${keys[i]}`).length, keys.length)
        const metrics = yield* snapshot("cold")
        strictEqual(metrics.store.timeouts, 0)
        strictEqual(metrics.store.breakerOpened, 0)
        strictEqual(metrics.writeErrors, 0)
        strictEqual(loadManyCalls, 1)
        const { entries, leases } = yield* census(redis, keys.map((k) => batch.keyOf(k)))
        strictEqual(entries, keys.length)
        strictEqual(leases, 0)
      }),
    { timeout: 120_000 }
  )

  it.scopedLive(
    "the event loop blocked for twice the command timeout right after sending: the replies that arrived meanwhile are read, 0 timeouts",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const timeoutMillis = 200
        const { context, snapshot } = yield* setup(server, Duration.millis(timeoutMillis))
        let lookups = 0
        const cache = yield* CacheAside.make({
          namespace: "stall",
          key: (k: number) => String(k),
          schema: Schema.String,
          ttl: "1 hour",
          lookup: (k: number) => Effect.sync(() => (lookups++, Option.some(`v ${k}`)))
        }).pipe(Effect.provide(context))
        const keys = Array.from({ length: 200 }, (_, i) => i)
        yield* cache.getMany(keys)
        strictEqual(lookups, keys.length)
        // the commands are written while the server is stopped (so they are surely sent, not yet
        // answered); SIGCONT, and the loop is blocked before it can read the answers Redis sends
        // at once: they arrive during the block, long before its end passes their deadlines
        yield* server.pause
        const gets = yield* Effect.forEach(keys, (k) => Effect.fork(cache.get(k)))
        yield* Effect.sleep("30 millis")
        // blocked in a `setImmediate` (as in an I/O callback: decoding a reply), after which Node
        // (libuv >= 1.45) runs the due timers before its next poll for I/O
        const pid = yield* server.pid
        yield* Effect.async<void>((resume) => {
          setImmediate(() => {
            process.kill(pid, "SIGCONT")
            busy(2 * timeoutMillis)
            resume(Effect.void)
          })
        })
        const answers = yield* Fiber.joinAll(gets)
        answers.forEach((answer, i) => assertSome(answer, `v ${keys[i]}`))
        const metrics = yield* snapshot("stall")
        strictEqual(metrics.store.timeouts, 0)
        strictEqual(metrics.store.breakerOpened, 0)
        strictEqual(metrics.fallbacks, 0)
        strictEqual(lookups, keys.length)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "a hung Redis (SIGSTOP) still times commands out: each get falls back, counted as a timeout",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { context, snapshot } = yield* setup(server, "100 millis")
        let lookups = 0
        const cache = yield* CacheAside.make({
          namespace: "hung",
          key: (k: number) => String(k),
          schema: Schema.String,
          ttl: "1 hour",
          lookup: (k: number) => Effect.sync(() => (lookups++, Option.some(`v ${k}`)))
        }).pipe(Effect.provide(context))
        yield* cache.get(1)
        yield* server.pause
        for (let k = 1; k <= 3; k++) assertSome(yield* cache.get(k), `v ${k}`)
        yield* server.resume
        const metrics = yield* snapshot("hung")
        // the 3 gets, and the releases (compare-and-delete) of the leases their lease-reads may have
        // written, sent in the background: those that were due before the resume timed out too
        assert.isAtLeast(metrics.store.timeouts, 3)
        assert.isAtMost(metrics.store.timeouts, 6)
        strictEqual(lookups, 4)
        assert.isAtLeast(metrics.fallbacks, 3)
      }),
    { timeout: 60_000 }
  )
})
