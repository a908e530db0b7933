/**
 * How the Redis client sends its commands: scripts by SHA-1 with one EVAL when the server does not
 * know them (a fresh server, a `SCRIPT FLUSH`), keys under the client's `keyPrefix`, and the
 * commands written in one turn leaving in one write (Redis reads them as one pipeline).
 */
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisClient from "@cache-aside/redis/RedisClient"
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome } from "@effect/vitest/utils"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Redis } from "ioredis"
import { createHash } from "node:crypto"
import { RedisServer } from "./utils/RedisServer.js"

const text = (value: string): Uint8Array => new TextEncoder().encode(value)
const sha1 = (value: string): string => createHash("sha1").update(value).digest("hex")

/** Waiting for a forked log line: generous, against a hang only. */
const logBound = "2 seconds"

const calls = (counts: ReadonlyMap<string, number>, name: string): number => counts.get(name) ?? 0

describe("RedisClient commands", () => {
  it.scoped("scripts run by SHA-1, with one EVAL on a fresh server and again after SCRIPT FLUSH, under the keyPrefix", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* RedisClient.make({ url: Redacted.make(server.url), keyPrefix: "p:" })
      const roundOfScripts = Effect.gen(function*() {
        yield* redis.setPx("k", text("lease"), 60_000)
        assertSome(Option.map(yield* redis.getBuffer("k"), (bytes) => new TextDecoder().decode(bytes)), "lease")
        assert.isTrue(yield* redis.compareAndSetPx("k", sha1("lease"), text("value"), 60_000))
        assert.isFalse(yield* redis.compareAndSetPx("k", sha1("lease"), text("other"), 60_000))
        assert.isTrue(yield* redis.compareAndDelete("k", sha1("value")))
      })
      yield* roundOfScripts
      const first = yield* server.commandCalls
      // each of the three scripts was unknown once: EVAL after a NOSCRIPT reply, then EVALSHA
      assert.strictEqual(calls(first, "eval"), 3)
      yield* roundOfScripts
      const second = yield* server.commandCalls
      assert.strictEqual(calls(second, "eval"), 3)
      assert.strictEqual(calls(second, "evalsha") - calls(first, "evalsha"), 4)

      yield* server.command("SCRIPT", "FLUSH")
      yield* roundOfScripts
      const third = yield* server.commandCalls
      assert.strictEqual(calls(third, "eval"), 6)

      // the keys were written under the prefix, none without it
      const plain = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.promise(() => plain.quit()))
      yield* redis.setPx("k", text("v"), 60_000)
      assert.strictEqual(yield* Effect.promise(() => plain.get("p:k")), "v")
      assert.strictEqual(yield* Effect.promise(() => plain.exists("k")), 0)
    }))

  it.scoped("the writes of one turn leave in one write: Redis reads 64 concurrent leases at once", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const redis = yield* RedisClient.make({ url: Redacted.make(server.url) })
      yield* redis.setPx("warm", text("x"), 60_000)
      const reads = Effect.map(server.info("stats"), (stats) => Number(stats.get("total_reads_processed")))
      const before = yield* reads
      const taken = yield* Effect.forEach(
        Array.from({ length: 64 }, (_, i) => `lease:${i}`),
        (key) => redis.setNxPx(key, text("lease"), 60_000),
        { concurrency: "unbounded" }
      )
      const after = yield* reads
      assert.strictEqual(taken.filter((written) => written).length, 64)
      // the INFO connections' own reads and one or two for the 64 leases; one write per lease
      // would be read in many more
      assert.isAtMost(after - before, 8)
    }))

  it.scoped("a lone get of an oversized entry or of a key of another type reads None, removes it, counts and warns", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel.label} ${String(Array.isArray(message) ? message.join(" ") : message)}`)
      })
      const context = yield* Layer.build(Layer.merge(Metrics.layer, Logger.replace(Logger.defaultLogger, logger)))
      const metrics = Context.get(context, Metrics.Metrics)
      const redis = yield* RedisClient.make({ url: Redacted.make(server.url), maxEntryBytes: 1024, name: "lone" }).pipe(
        Effect.provide(context)
      )
      const plain = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.promise(() => plain.quit()))
      yield* Effect.promise(() => plain.set("big", "x".repeat(2048)))
      yield* Effect.promise(() => plain.rpush("list", "a"))
      assertNone(yield* redis.getBuffer("big"))
      assertNone(yield* redis.getBuffer("list"))
      assert.strictEqual(yield* Effect.promise(() => plain.exists("big", "list")), 0)
      assert.strictEqual((yield* metrics.storeSnapshot("lone")).oversizedEntries, 1)
      // the warnings are logged by forked fibers: wait for two lines (bounded against a hang)
      yield* Effect.yieldNow().pipe(
        Effect.repeat({ until: () => lines.filter((line) => line.startsWith("WARN")).length >= 2 }),
        Effect.timeout(logBound)
      )
      assert.strictEqual(
        lines.filter((line) => line.startsWith("WARN") && line.includes("over maxEntryBytes")).length,
        1
      )
      assert.strictEqual(lines.filter((line) => line.startsWith("WARN") && line.includes("another type")).length, 1)
    }))
})
