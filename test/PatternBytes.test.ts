/**
 * `invalidatePattern` on real redis-servers, with non-ASCII, DLE and lone-surrogate keys:
 *
 * - Near caches: what Redis deletes, the invalidating process's near cache evicts before
 *   `invalidatePattern` returns, and another process's (another bus connection) once the message
 *   arrives; Redis matches bytes, so "??" removes "é". Counted: stale reads after the invalidation.
 * - Differential: the memory store and Redis remove the same keys for random keys and patterns, and
 *   Redis itself, sent the keys' and the pattern's bytes, is the reference for what a pattern means.
 * - Hostile patterns are refused before SCAN runs.
 */
import { CacheAside, CacheBus, type CacheStore, Glob, MemoryCacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheBus, RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertFailure, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import { Cause, Context, Effect, Exit, Layer, Option, Redacted, Schedule, Schema } from "effect"
import * as FastCheck from "effect/FastCheck"
import { Redis } from "ioredis"
import { Buffer } from "node:buffer"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

/** A string's bytes as Redis would hold it if it could: UTF-8, a lone surrogate as its three WTF-8 bytes. */
const wtf8 = (text: string): Buffer => {
  const out: Array<number> = []
  for (const char of text) {
    const point = char.codePointAt(0)!
    if (point < 0x80) out.push(point)
    else if (point < 0x800) out.push(0xc0 | (point >> 6), 0x80 | (point & 0x3f))
    else if (point < 0x10000) out.push(0xe0 | (point >> 12), 0x80 | ((point >> 6) & 0x3f), 0x80 | (point & 0x3f))
    else {
      out.push(0xf0 | (point >> 18), 0x80 | ((point >> 12) & 0x3f), 0x80 | ((point >> 6) & 0x3f), 0x80 | (point & 0x3f))
    }
  }
  return Buffer.from(out)
}

/** A key the store holds escaped: with a DLE or a lone surrogate. */
const escaped = (key: string): boolean =>
  key.includes("\u0010") || /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(key)

/** Waits (polling, at most 5 seconds of real time) until `done()`. */
const eventually = (what: string, done: () => boolean) =>
  Effect.suspend(() => done() ? Effect.void : Effect.fail(what)).pipe(
    Effect.retry(Schedule.intersect(Schedule.spaced("5 millis"), Schedule.recurs(1000))),
    Effect.orDie
  )

/** One server for the suite: its url, a plain client, and the Redis store (with metrics) on it. */
class Server extends Context.Tag("test/PatternBytes/Server")<Server, {
  readonly url: string
  readonly raw: Redis
  readonly redis: Context.Context<CacheStore.CacheStore | Metrics.Metrics>
}>() {
  static readonly layer = Layer.scoped(
    this,
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const raw = yield* plainClient(server)
      const redis = yield* Layer.build(
        RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "5 seconds" }).pipe(
          Layer.provideMerge(Metrics.layer)
        )
      )
      return { url: server.url, raw, redis }
    })
  )
}

let runs = 0

const cacheOf = (namespace: string) =>
  CacheAside.make({
    namespace,
    key: (k: string) => k,
    schema: Schema.String,
    lookup: (k: string) => Effect.succeed(Option.some(`v:${k}`)),
    ttl: "1 hour"
  })

/** Fills every key in a fresh namespace, runs the pattern, answers the keys no longer cached (or the failure). */
const deletedBy = (keys: ReadonlyArray<string>, pattern: string, namespace: string) =>
  Effect.gen(function*() {
    const cache = yield* cacheOf(namespace)
    for (const key of keys) yield* cache.get(key)
    const exit = yield* Effect.exit(cache.invalidatePattern(pattern))
    const deleted: Array<string> = []
    for (const key of keys) if (Option.isNone(yield* cache.getOption(key))) deleted.push(key)
    return { exit, deleted }
  }).pipe(Effect.scoped)

/** What Redis itself removes when sent the keys' and the pattern's bytes: the meaning of the pattern. */
const redisReference = (raw: Redis, keys: ReadonlyArray<string>, pattern: string, run: number) =>
  Effect.promise(async () => {
    const prefix = `ref${run}:`
    for (const key of keys) await raw.set(Buffer.concat([Buffer.from(prefix), wtf8(key)]), "1")
    const found = new Set<string>()
    let cursor = "0"
    do {
      // the pattern as raw bytes (ioredis would encode a string as UTF-8)
      const match = Buffer.concat([Buffer.from(Glob.escape(prefix)), wtf8(pattern)])
      const [next, batch] = (await raw.callBuffer("SCAN", cursor, "MATCH", match, "COUNT", "1000")) as [
        Buffer,
        Array<Buffer>
      ]
      cursor = String(next)
      for (const key of batch) found.add(key.subarray(prefix.length).toString("hex"))
    } while (cursor !== "0")
    return keys.filter((key) => found.has(wtf8(key).toString("hex")))
  })

const keyUnit = FastCheck.constantFrom(
  "a",
  "b",
  "é",
  "😀",
  "語",
  "\u00C3",
  "\u0010",
  "\uD800",
  "\uDC00",
  "u",
  "d",
  "8",
  "*"
)
const patternUnit = FastCheck.constantFrom("a", "é", "😀", "\u0010", "\uD800", "u", "*", "?", "[", "]", "^", "-", "\\")

describe("invalidatePattern with non-ASCII keys on Redis", () => {
  it.scopedLive(
    "near caches: what Redis deletes is evicted here before return and elsewhere on the message; no stale read",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const raw = yield* plainClient(server)
        const version = new Map<string, number>()
        const process = Effect.gen(function*() {
          // two processes: each its own store and bus connections; a long heartbeat (a stall of a
          // loaded machine must not bypass the near cache, which is what is counted here)
          const context = yield* Layer.build(
            RedisCacheBus.layer({
              url: Redacted.make(server.url),
              commandTimeout: "2 seconds",
              bus: { heartbeat: "1 minute" }
            })
              .pipe(Layer.provideMerge(Metrics.layer))
          )
          const cache = yield* CacheAside.make({
            namespace: "bytes",
            key: (k: string) => k,
            schema: Schema.Number,
            lookup: (k: string) => Effect.sync(() => Option.some(version.get(k) ?? 1)),
            ttl: "1 hour",
            nearCache: { maxEntries: 100, ttl: "1 hour" }
          }).pipe(Effect.provide(context))
          const bus = yield* Effect.provide(CacheBus.CacheBus, context)
          yield* eventually("healthy", () => bus.healthy())
          return cache
        })
        const here = yield* process
        const there = yield* process
        const cases: ReadonlyArray<readonly [key: string, pattern: string]> = [
          ["é", "??"],
          ["😀", "????"],
          ["é", "[^a][^a]"],
          ["語", "???"],
          ["x語", "x[^a]??"],
          ["\u0010", "?"],
          ["\uD800", "???"],
          ["é", "[a-é]?"]
        ]
        const problems: Array<string> = []
        for (const [key, pattern] of cases) {
          const what = `${JSON.stringify(pattern)} over ${JSON.stringify(key)}`
          version.set(key, 1)
          yield* here.invalidateAll
          assertSome(yield* here.get(key), 1)
          assertSome(yield* there.get(key), 1)
          assertSome(yield* here.get(key), 1) // near hits now
          assertSome(yield* there.get(key), 1)
          version.set(key, 2) // the database changes, then the writer invalidates by pattern
          const deleted = yield* here.invalidatePattern(pattern)
          if (deleted !== 1) problems.push(`${what}: removed ${deleted} from Redis`)
          if ((yield* Effect.promise(() => raw.exists(here.keyOf(key)))) !== 0) problems.push(`${what}: still in Redis`)
          if (Option.getOrNull(yield* here.get(key)) !== 2) problems.push(`${what}: stale read in this process`)
          yield* Effect.sleep("300 millis") // the message reaches the other process
          if (Option.getOrNull(yield* there.get(key)) !== 2) problems.push(`${what}: stale read in the other process`)
        }
        deepStrictEqual(problems, [])
        // and a pattern Redis does not match leaves the near caches alone: "?" is one byte, "é" two
        version.set("é", 3)
        assert.strictEqual(yield* here.invalidatePattern("?"), 0)
        assertSome(yield* here.get("é"), 2)
      }),
    { timeout: 60_000 }
  )

  it.layer(Server.layer, { timeout: "120 seconds" })((it) => {
    it.effect.prop(
      "memory and Redis remove the same keys; every key Redis matches on its bytes, exactly those among unescaped keys",
      [
        FastCheck.uniqueArray(FastCheck.string({ unit: keyUnit, minLength: 1, maxLength: 4 }), { maxLength: 8 }),
        FastCheck.string({ unit: patternUnit, maxLength: 6 })
      ],
      ([keys, pattern]) =>
        Effect.gen(function*() {
          const { raw, redis } = yield* Server
          const run = ++runs
          const memory = yield* deletedBy(keys, pattern, `m${run}`).pipe(
            Effect.provide(Layer.merge(MemoryCacheStore.layer(), Metrics.layer))
          )
          const onRedis = yield* deletedBy(keys, pattern, `r${run}`).pipe(Effect.provide(redis))
          deepStrictEqual(memory.deleted, onRedis.deleted)
          assert.strictEqual(Exit.isSuccess(memory.exit), Exit.isSuccess(onRedis.exit))
          if (Exit.isFailure(onRedis.exit)) {
            deepStrictEqual(onRedis.deleted, []) // refused: a class naming a lone surrogate
            return
          }
          const matched = yield* redisReference(raw, keys, pattern, run)
          for (const key of keys) {
            if (matched.includes(key)) {
              assertTrue(onRedis.deleted.includes(key), `${JSON.stringify(pattern)} missed ${JSON.stringify(key)}`)
            } else if (!escaped(key)) {
              assertTrue(!onRedis.deleted.includes(key), `${JSON.stringify(pattern)} deleted ${JSON.stringify(key)}`)
            }
          }
        }),
      { fastCheck: { numRuns: 150 }, timeout: 120_000 }
    )

    it.effect.prop(
      "Glob.matcher agrees with SCAN MATCH on non-ASCII keys and patterns (?, [^a], ranges over non-ASCII)",
      [
        FastCheck.uniqueArray(
          FastCheck.string({
            unit: FastCheck.constantFrom("a", "b", "é", "ÿ", "語", "😀", "\u00C3", "\u0080", "-"),
            minLength: 1,
            maxLength: 3
          }),
          { maxLength: 10 }
        ),
        FastCheck.string({
          unit: FastCheck.constantFrom(
            "a",
            "é",
            "語",
            "😀",
            "ÿ",
            "*",
            "?",
            "[",
            "]",
            "^",
            "-",
            "\\",
            "[^a]",
            "[a-é]",
            "[é-ÿ]"
          ),
          maxLength: 5
        })
      ],
      ([keys, pattern]) =>
        Effect.gen(function*() {
          const { raw } = yield* Server
          const run = ++runs
          const prefix = `glob${run}:`
          yield* Effect.promise(() => Promise.all(keys.map((key) => raw.set(prefix + key, "1"))))
          const [, found] = yield* Effect.promise(() =>
            raw.scan("0", "MATCH", Glob.escape(prefix) + pattern, "COUNT", 100_000)
          )
          const matches = Glob.matcher(Glob.escape(prefix) + pattern)
          deepStrictEqual(
            keys.filter((key) => matches(prefix + key)).sort(),
            found.map((key) => key.slice(prefix.length)).sort()
          )
        }),
      { fastCheck: { numRuns: 300 }, timeout: 60_000 }
    )

    it.effect("a 50 KB pattern is refused before SCAN runs; the long key stays", () =>
      Effect.gen(function*() {
        const { redis } = yield* Server
        const key = "a".repeat(100_000)
        const { deleted, exit } = yield* deletedBy([key, "b"], "*" + "a".repeat(50_000) + "b*", "long").pipe(
          Effect.provide(redis)
        )
        deepStrictEqual(deleted, [])
        assertFailure(Exit.mapError(exit, (e) => e.operation), Cause.fail("invalidatePattern"))
      }))
  })
})
