/**
 * How the Redis client sends its commands: scripts by SHA-1 with one EVAL when the server does not
 * know them (a fresh server, a `SCRIPT FLUSH`), keys under the client's `keyPrefix`, and the
 * commands written in one turn leaving in one write (Redis reads them as one pipeline).
 */
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import * as RedisClient from "@cache-aside/redis/RedisClient"
import { assert, describe, it, vi } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
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

/** When set, the recorded client's `sendCommand` throws (a client that throws instead of rejecting). */
let throwing = false

/** A client over the test's server whose sent commands are recorded (by name), with its store. */
const recordedStore = (url: string, maxEntryBytes: number) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      lines.push(`${logLevel.label} ${String(Array.isArray(message) ? message.join(" ") : message)}`)
    })
    const context = yield* Layer.build(Layer.merge(Metrics.layer, Logger.replace(Logger.defaultLogger, logger)))
    const client = new Redis(url)
    yield* Effect.addFinalizer(() => Effect.promise(() => client.quit()))
    const sent: Array<string> = []
    const sendCommand = client.sendCommand.bind(client)
    client.sendCommand = (command, stream) => {
      if (throwing) throw new Error("thrown by sendCommand")
      sent.push(command.name)
      return sendCommand(command, stream)
    }
    const redis = yield* RedisClient.fromClient(client, { maxEntryBytes, name: "leases" }).pipe(
      Effect.provide(context)
    )
    const store = yield* Effect.provideService(RedisCacheStore.make, RedisClient.RedisClient, redis)
    const plain = new Redis(url)
    yield* Effect.addFinalizer(() => Effect.promise(() => plain.quit()))
    return { store, sent, plain, lines, metrics: Context.get(context, Metrics.Metrics) }
  })

const lease = Uint8Array.from([0, 0xff, 0x80, 1])
const leaseText = Buffer.from(lease).toString("latin1")
const minute = Duration.minutes(1)

describe("RedisCacheStore getOrLease: one script call", () => {
  it.scoped("a miss costs exactly one EVALSHA: the read, and the lease SET inside the script", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, sent, store } = yield* recordedStore(server.url, 1024)
      assertNone(yield* store.get("warm")) // loads the script (a fresh server answers NOSCRIPT once)
      const before = yield* server.commandCalls
      sent.length = 0
      assertNone(yield* store.getOrLease("miss", lease, minute))
      const after = yield* server.commandCalls
      deepStrictEqual(sent, ["evalsha"])
      const delta = new Map<string, number>()
      for (const [name, count] of after) {
        if (name !== "info" && count !== (before.get(name) ?? 0)) delta.set(name, count - (before.get(name) ?? 0))
      }
      // STRLEN (the bound), MGET, SET NX PX: inside the one call
      deepStrictEqual(Object.fromEntries(delta), { evalsha: 1, strlen: 1, mget: 1, set: 1 })
      assertSome(Option.map(yield* store.get("miss"), (bytes) => Buffer.from(bytes).toString("latin1")), leaseText)
      // lease-reads share the batch of their turn: the first read goes out alone, the others in one call
      sent.length = 0
      yield* Effect.all([
        store.get("a"),
        store.getOrLease("b", lease, minute),
        store.get("c"),
        store.getOrLease("d", lease, minute)
      ], { concurrency: "unbounded" })
      deepStrictEqual(sent, ["evalsha", "evalsha"])
      deepStrictEqual(yield* Effect.promise(() => plain.exists("a", "c")), 0)
      deepStrictEqual(yield* Effect.promise(() => plain.exists("b", "d")), 2)
    }))

  it.scoped("an entry over maxEntryBytes under a lease-read is removed, counted, and leased (alone and in a batch)", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { lines, metrics, plain, store } = yield* recordedStore(server.url, 1024)
      yield* Effect.promise(() => plain.set("big 1", "x".repeat(2048)))
      yield* Effect.promise(() => plain.set("big 2", "x".repeat(2048)))
      assertNone(yield* store.getOrLease("big 1", lease, minute))
      const batch = yield* Effect.all([
        store.get("absent"),
        store.get("big 1"),
        store.getOrLease("big 2", lease, minute)
      ], { concurrency: "unbounded" })
      assertNone(batch[0])
      assertSome(Option.map(batch[1], (bytes) => Buffer.from(bytes).toString("latin1")), leaseText)
      assertNone(batch[2])
      for (const key of ["big 1", "big 2"]) {
        assert.strictEqual(
          yield* Effect.promise(() => plain.getBuffer(key).then((b) => b?.toString("latin1"))),
          leaseText
        )
        const ttl = yield* Effect.promise(() => plain.pttl(key))
        assert.isTrue(ttl > 0 && ttl <= 60_000, `pttl ${ttl}`)
      }
      assert.strictEqual((yield* metrics.storeSnapshot("leases")).oversizedEntries, 2)
      yield* Effect.yieldNow().pipe(
        Effect.repeat({ until: () => lines.filter((line) => line.includes("over maxEntryBytes")).length >= 2 }),
        Effect.timeout(logBound)
      )
    }))

  it.scoped("a key of another type under a lease-read is removed and leased", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { lines, plain, store } = yield* recordedStore(server.url, 1024)
      yield* Effect.promise(() => plain.rpush("list 1", "a"))
      yield* Effect.promise(() => plain.sadd("set 2", "a"))
      assertNone(yield* store.getOrLease("list 1", lease, minute))
      const batch = yield* Effect.all([store.get("absent"), store.getOrLease("set 2", lease, minute)], {
        concurrency: "unbounded"
      })
      batch.forEach((answer) => assertNone(answer))
      for (const key of ["list 1", "set 2"]) {
        assert.strictEqual(yield* Effect.promise(() => plain.type(key)), "string")
        assert.strictEqual(
          yield* Effect.promise(() => plain.getBuffer(key).then((b) => b?.toString("latin1"))),
          leaseText
        )
      }
      yield* Effect.yieldNow().pipe(
        Effect.repeat({ until: () => lines.filter((line) => line.includes("another type")).length >= 2 }),
        Effect.timeout(logBound)
      )
    }))

  it.scoped("a lease Redis refuses (OOM) fails that lease-read only, as a failed lease write: the plain reads of its batch are answered", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, store } = yield* recordedStore(server.url, 1024)
      yield* Effect.promise(() => plain.set("present", "v"))
      yield* server.command("CONFIG", "SET", "maxmemory", "1")
      yield* server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
      const [first, present, leased] = yield* Effect.all([
        store.get("absent"),
        store.get("present"),
        Effect.flip(store.getOrLease("miss", lease, minute))
      ], { concurrency: "unbounded" })
      assertNone(first)
      assertSome(Option.map(present, (bytes) => new TextDecoder().decode(bytes)), "v")
      assert.strictEqual(leased.operation, "setIfAbsent", "the read worked; the lease write was refused")
      assert.isTrue(leased.replied)
      assert.match(String(leased.cause), /OOM/)
      const alone = yield* Effect.flip(store.getOrLease("miss", lease, minute))
      assert.strictEqual(alone.operation, "setIfAbsent")
      assert.isTrue(alone.replied)
      assert.strictEqual(yield* Effect.promise(() => plain.exists("miss")), 0)
    }))
})

describe("RedisCacheStore compareAndSet: the fills of one turn in one script call", () => {
  const lease = (name: string) => text(`lease ${name}`)

  it.scoped("the fills of one phase of the event loop go out in one call (chunked), each answered for its key", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, sent, store } = yield* recordedStore(server.url, 1024)
      const names = Array.from({ length: 300 }, (_, i) => `k${i}`)
      for (const name of names) yield* store.set(name, lease(name), minute)
      sent.length = 0
      // every third fill expects another lease: not written
      const written = yield* Effect.forEach(
        names,
        (name, i) => store.compareAndSet(name, i % 3 === 2 ? lease("other") : lease(name), text(`v ${name}`), minute),
        { concurrency: "unbounded" }
      )
      // 300 fills in chunks of 256: one EVALSHA each (the batch script was new: one NOSCRIPT reply
      // and its EVAL per chunk)
      deepStrictEqual(sent.filter((name) => name === "evalsha").length, 2)
      deepStrictEqual(written, names.map((_, i) => i % 3 !== 2))
      const values = yield* Effect.promise(() => plain.mget(...names))
      deepStrictEqual(values, names.map((name, i) => i % 3 === 2 ? `lease ${name}` : `v ${name}`))
      const ttl = yield* Effect.promise(() => plain.pttl("k299"))
      assert.isTrue(ttl > 0 && ttl <= 60_000, `pttl ${ttl}`)

      // loads that end in different callbacks of one phase (timers set together, each its own
      // turn) still share a call: a fill per turn would be a socket write per miss
      const eight = names.slice(0, 8)
      for (const name of eight) yield* store.set(name, lease(name), minute)
      sent.length = 0
      const timers = eight.map(() => new Promise((resolve) => setTimeout(resolve, 5)))
      const written2 = yield* Effect.forEach(
        eight,
        (name, i) =>
          Effect.zipRight(
            Effect.promise(() => timers[i]!),
            store.compareAndSet(name, lease(name), text("later"), minute)
          ),
        { concurrency: "unbounded" }
      )
      deepStrictEqual(written2, eight.map(() => true))
      // one call; two when Effect's scheduler yields to a timer of its own in between (it does after
      // 2,048 steps in a row), never one per fill
      const evals = sent.filter((name) => name === "evalsha").length
      assert.isTrue(evals >= 1 && evals <= 2, `${evals} calls for 8 fills`)
    }))

  it.scoped("large values are cut into calls of about 1 MiB (a larger value goes alone)", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, sent, store } = yield* recordedStore(server.url, 1024)
      const sizes = [400_000, 400_000, 400_000, 400_000, 400_000, 1_500_000, 10]
      const names = sizes.map((_, i) => `big${i}`)
      for (const name of names) yield* store.set(name, lease(name), minute)
      yield* store.compareAndSet("warm", lease("warm"), text("x"), minute) // the single-key script is known
      sent.length = 0
      const written = yield* Effect.forEach(
        names,
        (name, i) => store.compareAndSet(name, lease(name), new Uint8Array(sizes[i]!).fill(0x61), minute),
        { concurrency: "unbounded" }
      )
      deepStrictEqual(written, names.map(() => true))
      // [400k 400k] [400k 400k] [400k] [1.5M] [10]: five calls (EVALSHA; the batch script, new to this
      // server, is sent again as EVAL)
      deepStrictEqual(sent.filter((name) => name === "evalsha").length, 5)
      const lengths = yield* Effect.forEach(names, (name) => Effect.promise(() => plain.strlen(name)))
      deepStrictEqual(lengths, sizes)
    }))

  it.scoped("a key of another type fails its own fill only; the fills sharing its call are written", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, store } = yield* recordedStore(server.url, 1024)
      yield* store.set("a", lease("a"), minute)
      yield* store.set("c", lease("c"), minute)
      yield* Effect.promise(() => plain.rpush("list", "x"))
      const [a, list, c] = yield* Effect.all([
        store.compareAndSet("a", lease("a"), text("A"), minute),
        Effect.flip(store.compareAndSet("list", lease("list"), text("L"), minute)),
        store.compareAndSet("c", lease("c"), text("C"), minute)
      ], { concurrency: "unbounded" })
      assert.isTrue(a)
      assert.isTrue(c)
      assert.strictEqual(list.operation, "compareAndSet")
      assert.isTrue(list.replied)
      assert.match(String(list.cause), /WRONGTYPE/)
      deepStrictEqual(yield* Effect.promise(() => plain.mget("a", "c")), ["A", "C"])
      assert.strictEqual(yield* Effect.promise(() => plain.type("list")), "list")
    }))

  it.scoped("writes Redis refuses (OOM) fail each fill of the call with the reply, none written", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, store } = yield* recordedStore(server.url, 1024)
      for (const name of ["a", "b", "c"]) yield* store.set(name, lease(name), minute)
      yield* server.command("CONFIG", "SET", "maxmemory", "1")
      yield* server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
      const failures = yield* Effect.forEach(
        ["a", "b", "c"],
        (name) => Effect.flip(store.compareAndSet(name, lease(name), text("new"), minute)),
        { concurrency: "unbounded" }
      )
      for (const failure of failures) {
        assert.strictEqual(failure.operation, "compareAndSet")
        assert.isTrue(failure.replied)
        assert.match(String(failure.cause), /OOM/)
      }
      deepStrictEqual(yield* Effect.promise(() => plain.mget("a", "b", "c")), ["lease a", "lease b", "lease c"])
    }))
})

describe("RedisCacheStore batches: a client that throws", () => {
  it.scoped("a sendCommand that throws instead of rejecting fails the batched reads and fills, never the process", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { store } = yield* recordedStore(server.url, 1024)
      throwing = true
      yield* Effect.addFinalizer(() => Effect.sync(() => throwing = false))
      const reads = yield* Effect.forEach(["a", "b", "c"], (key) => Effect.flip(store.get(key)), {
        concurrency: "unbounded"
      })
      const fills = yield* Effect.forEach(
        ["a", "b", "c"],
        (key) => Effect.flip(store.compareAndSet(key, text("lease"), text("v"), minute)),
        { concurrency: "unbounded" }
      )
      throwing = false
      for (const error of [...reads, ...fills]) assert.match(String(error.cause), /thrown by sendCommand/)
      deepStrictEqual(reads.map((error) => error.operation), ["get", "get", "get"])
      deepStrictEqual(fills.map((error) => error.operation), ["compareAndSet", "compareAndSet", "compareAndSet"])
      // and the client works again
      assertNone(yield* store.get("absent"))
    }))
})

describe("RedisCacheStore batches: faked timers", () => {
  it.scoped(
    "fills and reads complete while a test fakes the timers (vi.useFakeTimers fakes setImmediate)",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const { plain, store } = yield* recordedStore(server.url, 1024)
        yield* store.set("k", text("lease"), minute)
        vi.useFakeTimers()
        yield* Effect.addFinalizer(() => Effect.sync(() => vi.useRealTimers()))
        // nobody advances the fake clock: a fill flushed by the faked setImmediate would wait forever
        // (the test's own timeout, on real timers, would fail it)
        const [written, read] = yield* Effect.all([
          store.compareAndSet("k", text("lease"), text("value"), minute),
          store.get("k")
        ], { concurrency: "unbounded" })
        vi.useRealTimers()
        assert.isTrue(written)
        assert.isTrue(Option.isSome(read))
        assert.strictEqual(yield* Effect.promise(() => plain.get("k")), "value")
      }),
    10_000
  )
})

describe("RedisCacheStore compareAndSet: batched fills under random interrupts", () => {
  const Fill = fc.record({
    key: fc.constantFrom("a", "b", "c"),
    // expects the key's starting bytes, or bytes a fill before it may have written, or anything else
    expects: fc.constantFrom("start", "v0", "v1", "v2", "other"),
    // interrupted after this many yields of the test fiber (undefined: never)
    interruptAfter: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
    // starts after this many yields (fills of several turns share a phase)
    delay: fc.integer({ min: 0, max: 2 })
  })

  it.scoped("every fill that was sent is applied in order; every caller not interrupted gets its own answer; nothing waits", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { plain, store } = yield* recordedStore(server.url, 1024)
      let run = 0
      const property = fc.asyncProperty(
        fc.array(Fill, { minLength: 1, maxLength: 12 }),
        (fills) =>
          Effect.runPromise(Effect.gen(function*() {
            const p = `run${run++}:`
            for (const key of ["a", "b", "c"]) yield* store.set(p + key, text("start"), minute)
            // the order fills reach the batcher: recorded in the step that hands them over (no other
            // fiber runs between the record and the hand-over)
            const issued: Array<number> = []
            const fibers = yield* Effect.forEach(fills, (fill, i) =>
              Effect.fork(Effect.gen(function*() {
                for (let y = 0; y < fill.delay; y++) yield* Effect.yieldNow()
                return yield* Effect.suspend(() => {
                  issued.push(i)
                  return store.compareAndSet(p + fill.key, text(fill.expects), text(`v${i % 3}`), minute)
                })
              })))
            for (let step = 0; step <= 3; step++) {
              fills.forEach((fill, i) => {
                if (fill.interruptAfter === step) fibers[i]!.unsafeInterruptAsFork(FiberId.none)
              })
              yield* Effect.yieldNow()
            }
            const exits = yield* Effect.forEach(fibers, Fiber.await).pipe(Effect.timeout("5 seconds"))
            // a sequential fill after all of them: every batch before it has been applied
            yield* store.compareAndSet(`${p}none`, text("x"), text("y"), minute)
            // the model: the sent fills, applied one after another in the order they were handed over
            const state = new Map([["a", "start"], ["b", "start"], ["c", "start"]])
            const expected = new Map<number, boolean>()
            for (const i of issued) {
              const fill = fills[i]!
              const written = state.get(fill.key) === fill.expects
              if (written) state.set(fill.key, `v${i % 3}`)
              expected.set(i, written)
            }
            exits.forEach((exit, i) => {
              if (exit._tag === "Success") {
                assert.isTrue(expected.has(i), `fill ${i} answered without being sent`)
                assert.strictEqual(exit.value, expected.get(i), `fill ${i}'s answer`)
              } else {
                assert.isDefined(fills[i]!.interruptAfter, `fill ${i} failed without an interrupt`)
              }
            })
            const values = yield* Effect.promise(() => plain.mget(p + "a", p + "b", p + "c"))
            deepStrictEqual(values, [state.get("a")!, state.get("b")!, state.get("c")!])
          }))
      )
      yield* Effect.promise(() => fc.assert(property, { numRuns: 150 }))
    }))
})
