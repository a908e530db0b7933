/**
 * Interrupts at any point, on a real redis-server: a property over random schedules of concurrent
 * operations on two caches of one namespace (two "processes": each its own store, connections,
 * metrics and, in the second variant, near cache on a `RedisCacheBus`), the lock on. Gets,
 * `getMany`s and `PromiseCache` gets with a signal race `set`s, invalidations and pattern
 * invalidations; lookups take 0–20 ms, some fail, some never answer; fibers are interrupted after
 * random delays, gets are given `Effect.timeout`s, signals are aborted, and in some runs a cache's
 * scope is closed mid-flight. Redis's own timing (lease-reads gathered into one script per turn,
 * batched fills, `getMany`'s one round trip) gives interleavings the memory store never produces.
 *
 * At quiescence (every operation done, or interrupted by a final sweep), counted, never timed:
 * - no lease is left in Redis under any key of the namespace (its bytes classified with `Codec.isLease`);
 * - every key answers a get of a fresh cache (a third process) and of both caches, within a generous
 *   bound, with no lock wait (`lockWaits` unchanged), and a value no older than the last write of the
 *   key that returned (and no newer than the "database");
 * - no flight and no background fiber is left in either cache (a closed cache's `FiberSet` counts
 *   none: its loads are seen through the lookups); every lookup started has ended, every lookup that
 *   never answers was interrupted, and no lookup was interrupted in a run where nothing was;
 * - every get answered its own key, no older than the last write through its own cache that returned
 *   before it began; every `PromiseCache` get settled.
 *
 * Seen failing, each with a shrunk counterexample, with the code broken on purpose: a lease release
 * that does nothing (`Lease.releaseUnlessConsumed`, or `releaseIfHeld` after a load), no release
 * forked for an interrupted lease-read (`leadRead`), a load not interrupted when its last waiter
 * leaves (`Flights.leave`), a fill that ignores the lease. It found two defects, fixed since (each
 * with a deterministic test): a lease-read interrupted after its cache closed left its lease
 * (InterruptLeaseRegression.test.ts), and a `getMany` retrying a key could no longer be interrupted
 * (GetManyRetryHang.test.ts).
 */
import { CacheAside, Codec, Metrics, PromiseCache } from "@cache-aside/core"
import { RedisCacheBus, RedisCacheStore } from "@cache-aside/redis"
import { describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import * as CacheAsideInternal from "../packages/core/src/internal/cacheAside.js"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

class Down extends Schema.TaggedError<Down>()("Down", {}) {}

const Row = Schema.Struct({ key: Schema.Number, version: Schema.Number })
type Row = typeof Row.Type

const keys = [0, 1, 2] as const

/**
 * What the core tests read with `implOf` (the cache's flights and background fibers): `@internal`,
 * so stripped from the declarations this project compiles against; the module is the same one.
 */
interface Internals {
  readonly flights: { readonly size: number }
  readonly fibers: FiberSet.FiberSet<unknown, unknown>
}
const implOf = (CacheAsideInternal as unknown as { readonly implOf: (handle: object) => Internals | undefined }).implOf

// -------------------------------------------------------------------------------------------------
// the schedule

const Which = fc.constantFrom(0, 1)
const Key = fc.constantFrom(...keys)
/** Milliseconds after which the operation is interrupted (a signal aborted, a timeout); undefined: never. */
const After = fc.option(fc.integer({ min: 0, max: 25 }), { nil: undefined, freq: 2 })
const patterns = { "*": [0, 1, 2], "[01]": [0, 1], "2": [2] } as const
type Pattern = keyof typeof patterns

const Op = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("get" as const),
      cache: Which,
      key: Key,
      interruptAfter: After,
      timeout: After
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("getMany" as const),
      cache: Which,
      keys: fc.array(Key, { minLength: 1, maxLength: 4 }),
      interruptAfter: After
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("promiseGet" as const), cache: Which, key: Key, abortAfter: After })
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("set" as const), cache: Which, key: Key, interruptAfter: After })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("invalidate" as const), cache: Which, key: Key, interruptAfter: After })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("invalidatePattern" as const),
      cache: Which,
      pattern: fc.constantFrom<Pattern>("*", "[01]", "2"),
      interruptAfter: After
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("lookups" as const),
      mode: fc.constantFrom<"answer" | "fail" | "hang">("answer", "answer", "fail", "hang"),
      millis: fc.integer({ min: 0, max: 20 })
    })
  },
  /** Not forked: the next operations start after it. */
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("pause" as const), millis: fc.integer({ min: 0, max: 15 }) }) }
)
type Op = typeof Op extends fc.Arbitrary<infer T> ? T : never

const Run = fc.record({
  ops: fc.array(Op, { minLength: 1, maxLength: 20 }),
  /** Closes one cache's scope, `millis` after operation `afterOp` started (in about a third of the runs). */
  close: fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    {
      weight: 1,
      arbitrary: fc.record({
        cache: Which,
        afterOp: fc.integer({ min: 0, max: 19 }),
        millis: fc.integer({ min: 0, max: 20 })
      })
    }
  )
})
type Run = typeof Run extends fc.Arbitrary<infer T> ? T : never

// -------------------------------------------------------------------------------------------------
// bounds (against hangs, never speed assertions)

/** How long the schedule's operations may run before the final sweep interrupts what is left. */
const grace = Duration.millis(300)
/** A settled promise, a drained cache, a final get: each within this, or a violation. */
const bound = Duration.seconds(10)
/** A whole run (a few of the bounds above at most, when it finds something). */
const runBound = Duration.seconds(45)

// -------------------------------------------------------------------------------------------------
// one "process": its own store (connections), metrics and, with `near`, bus

const processLayer = (url: string, near: boolean) =>
  (near
    ? RedisCacheBus.layer({ url: Redacted.make(url), commandTimeout: "2 seconds" })
    : RedisCacheStore.layer({ url: Redacted.make(url), commandTimeout: "2 seconds" })).pipe(
      Layer.provideMerge(Metrics.layer)
    )

type Process = Context.Context<Layer.Layer.Success<ReturnType<typeof processLayer>>>

/** Lookups of the run's "database", counted. */
class Lookups {
  mode: "answer" | "fail" | "hang" = "answer"
  millis = 0
  started = 0
  ended = 0
  interrupted = 0
  hung = 0
  hungInterrupted = 0
  constructor(
    readonly versions: Array<number>,
    /** What a lookup that "never answers" waits for: only the final sweep's way out of a hang completes it. */
    readonly unhang: Deferred.Deferred<void>
  ) {}
  lookup = (k: number): Effect.Effect<Option.Option<Row>, Down> =>
    Effect.suspend(() => {
      const mode = this.mode
      // a snapshot read at the start of the lookup, answered after its latency
      const version = this.versions[k]!
      this.started++
      if (mode === "hang") this.hung++
      const body: Effect.Effect<Option.Option<Row>, Down> = mode === "hang"
        ? Effect.as(Deferred.await(this.unhang), Option.some({ key: k, version }))
        : Effect.zipRight(
          Effect.sleep(this.millis),
          mode === "fail" ? Effect.fail(new Down()) : Effect.succeed(Option.some({ key: k, version }))
        )
      return Effect.onExit(body, (exit) =>
        Effect.sync(() => {
          this.ended++
          if (Exit.isInterrupted(exit)) {
            this.interrupted++
            if (mode === "hang") this.hungInterrupted++
          }
        }))
    })
}

const makeCache = (namespace: string, lookups: Lookups, near: boolean) =>
  CacheAside.make({
    namespace,
    key: (k: number) => String(k),
    schema: Row,
    lookup: lookups.lookup,
    ttl: "1 minute",
    jitter: 0,
    // long enough that a leaked lease is still there when counted
    leaseTtl: "60 seconds",
    // the lock on, with a short wait (a get behind a never-answering load gives up soon)
    lock: { wait: "100 millis", poll: "5 millis" },
    nearCache: near ? { maxEntries: 100, ttl: "1 minute" } : false
  })

const lockWaits = (process: Process, namespace: string) =>
  Effect.map(Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace)), (s) => s.lockWaits).pipe(
    Effect.provide(process)
  )

/** Every key of the namespace in Redis whose bytes are a lease. */
const leasesIn = (plain: Redis, namespace: string) =>
  Effect.promise(async () => {
    const found: Array<string> = []
    let cursor = "0"
    do {
      const [next, batch] = await plain.scan(cursor, "MATCH", `*:${namespace}:*`, "COUNT", 1000)
      cursor = next
      for (const key of batch) {
        const bytes = await plain.getBuffer(key)
        if (bytes !== null && Codec.isLease(bytes)) found.push(key)
      }
    } while (cursor !== "0")
    return found
  })

/** Polls `left` (real time) until it answers 0 or `bound` passes; answers the last count. */
const drained = (left: Effect.Effect<number>) =>
  Effect.gen(function*() {
    let count = yield* left
    for (let i = 0; count > 0 && i < Duration.toMillis(bound) / 10; i++) {
      yield* Effect.sleep("10 millis")
      count = yield* left
    }
    return count
  })

const showRun = (run: Run) =>
  JSON.stringify(run.ops) + (run.close === undefined ? "" : ` close=${JSON.stringify(run.close)}`)

/**
 * One run of the schedule on two fresh caches (a fresh namespace) over the first two processes; the
 * fresh gets at the end are made by a third cache over the third. Answers the violations found.
 */
const runOnce = (
  run: Run,
  namespace: string,
  processes: readonly [Process, Process, Process],
  plain: Redis,
  near: boolean
) =>
  Effect.scoped(Effect.gen(function*() {
    const violations: Array<string> = []
    /** The "database": each key's version, bumped by a write before its cache write. */
    const versions = [0, 0, 0]
    /** The version of each key's last write that returned, through any cache / through each cache. */
    const completed = [0, 0, 0]
    const ownCompleted = [[0, 0, 0], [0, 0, 0]]
    /** Versions set by a `set` that did not return (interrupted): they may land in Redis at any time. */
    const unsure = [new Set<number>(), new Set<number>(), new Set<number>()]
    const unhang = yield* Deferred.make<void>()
    const lookups = new Lookups(versions, unhang)
    let hangSeen = false
    const writeLocks = yield* Effect.forEach(keys, () => Effect.makeSemaphore(1))
    const runScope = yield* Effect.scope
    const scopes = [
      yield* Scope.fork(runScope, ExecutionStrategy.sequential),
      yield* Scope.fork(runScope, ExecutionStrategy.sequential)
    ] as const
    const caches = [
      yield* makeCache(namespace, lookups, near).pipe(Effect.provide(processes[0]), Scope.extend(scopes[0])),
      yield* makeCache(namespace, lookups, near).pipe(Effect.provide(processes[1]), Scope.extend(scopes[1]))
    ] as const
    const runtimes = [
      yield* Effect.provide(Effect.runtime<never>(), processes[0]),
      yield* Effect.provide(Effect.runtime<never>(), processes[1])
    ]
    const promiseCaches = [PromiseCache.make(caches[0], runtimes[0]!), PromiseCache.make(caches[1], runtimes[1]!)]
    const closed = [false, false]
    let interruptsDelivered = 0

    const check = (what: string, c: number, k: number, floor: number, answer: Option.Option<Row>) => {
      if (Option.isNone(answer)) return violations.push(`${what}: answered None (the lookup never does)`)
      const row = answer.value
      if (row.key !== k) violations.push(`${what}: answered key ${row.key}'s value`)
      if (row.version < floor && !unsure[k]!.has(row.version)) {
        violations.push(`${what} on cache ${c}: version ${row.version}, older than write ${floor} that returned before`)
      }
    }
    /** Runs a write of `ks` under their write locks (writes of one key never overlap, as a database's row lock). */
    const write = (ks: ReadonlyArray<number>, body: Effect.Effect<void>) =>
      ks.reduceRight((inner, k) => writeLocks[k]!.withPermits(1)(inner), body)
    const recordWrite = (c: number, ks: ReadonlyArray<number>, bumped: ReadonlyArray<number>) =>
      Effect.sync(() => {
        ks.forEach((k, i) => {
          completed[k] = Math.max(completed[k]!, bumped[i]!)
          ownCompleted[c]![k] = Math.max(ownCompleted[c]![k]!, bumped[i]!)
        })
      })

    /** The operations' fibers, with the cache each one calls and what they do. */
    const fibers: Array<readonly [Fiber.RuntimeFiber<unknown, unknown>, number, Op["_tag"]]> = []
    const settled: Array<Promise<Exit.Exit<unknown, unknown>>> = []
    const controllers: Array<AbortController> = []
    const interruptLater = (fiber: Fiber.RuntimeFiber<unknown, unknown>, after: number | undefined) =>
      after === undefined ? Effect.void : Effect.asVoid(Effect.forkIn(
        Effect.delay(
          Effect.flatMap(Fiber.interrupt(fiber), (exit) =>
            Effect.sync(() => {
              if (Exit.isInterrupted(exit)) interruptsDelivered++
            })),
          Duration.millis(after)
        ),
        runScope
      ))

    const start = (op: Op): Effect.Effect<void> => {
      switch (op._tag) {
        case "get":
          return Effect.gen(function*() {
            const floor = ownCompleted[op.cache]![op.key]!
            const get = caches[op.cache].get(op.key)
            const timed = op.timeout === undefined
              ? Effect.map(get, Option.some)
              : Effect.tap(Effect.timeoutOption(get, Duration.millis(op.timeout)), (answer) =>
                Effect.sync(() => {
                  if (Option.isNone(answer)) interruptsDelivered++
                }))
            const fiber = yield* Effect.fork(Effect.tap(timed, (answer) =>
              Effect.sync(() => {
                if (Option.isSome(answer)) check(`get(${op.key})`, op.cache, op.key, floor, answer.value)
              })))
            fibers.push([fiber, op.cache, op._tag])
            yield* interruptLater(fiber, op.interruptAfter)
          })
        case "getMany":
          return Effect.gen(function*() {
            const floors = op.keys.map((k) => ownCompleted[op.cache]![k]!)
            const fiber = yield* Effect.fork(Effect.tap(caches[op.cache].getMany(op.keys), (answers) =>
              Effect.sync(() => {
                if (answers.length !== op.keys.length) violations.push(`getMany(${op.keys}): ${answers.length} answers`)
                answers.forEach((answer, i) =>
                  check(`getMany(${op.keys})[${i}]`, op.cache, op.keys[i]!, floors[i]!, answer)
                )
              })))
            fibers.push([fiber, op.cache, op._tag])
            yield* interruptLater(fiber, op.interruptAfter)
          })
        case "promiseGet":
          return Effect.sync(() => {
            const floor = ownCompleted[op.cache]![op.key]!
            const controller = new AbortController()
            controllers.push(controller)
            if (op.abortAfter !== undefined) {
              setTimeout(() =>
                controller.abort(), op.abortAfter)
            }
            settled.push(
              promiseCaches[op.cache]!.get(op.key, { signal: controller.signal }).then(
                (answer) => {
                  check(`promise get(${op.key})`, op.cache, op.key, floor, answer)
                  return Exit.succeed(answer)
                },
                (rejection: unknown) => {
                  if (controller.signal.aborted) {
                    interruptsDelivered++
                  }
                  return Exit.fail(rejection)
                }
              )
            )
          })
        case "set":
          return Effect.gen(function*() {
            let version = 0
            const fiber = yield* Effect.fork(write(
              [op.key],
              Effect.suspend(() => {
                version = ++versions[op.key]!
                unsure[op.key]!.add(version)
                return Effect.flatMap(
                  Effect.exit(caches[op.cache].set(op.key, { key: op.key, version })),
                  (exit) => {
                    if (Exit.isFailure(exit)) {
                      return Effect.void
                    }
                    unsure[op.key]!.delete(version) // it landed: it cannot land again later
                    return recordWrite(op.cache, [op.key], [version])
                  }
                )
              })
            ))
            fibers.push([fiber, op.cache, op._tag])
            yield* interruptLater(fiber, op.interruptAfter)
          })
        case "invalidate":
          return Effect.gen(function*() {
            const fiber = yield* Effect.fork(write(
              [op.key],
              Effect.suspend(() => {
                const version = ++versions[op.key]!
                return Effect.flatMap(
                  Effect.exit(caches[op.cache].invalidate(op.key)),
                  (exit) => Exit.isSuccess(exit) ? recordWrite(op.cache, [op.key], [version]) : Effect.void
                )
              })
            ))
            fibers.push([fiber, op.cache, op._tag])
            yield* interruptLater(fiber, op.interruptAfter)
          })
        case "invalidatePattern":
          return Effect.gen(function*() {
            const ks = patterns[op.pattern]
            const fiber = yield* Effect.fork(write(
              ks,
              Effect.suspend(() => {
                const bumped = ks.map((k) => ++versions[k]!)
                return Effect.flatMap(
                  Effect.exit(caches[op.cache].invalidatePattern(op.pattern)),
                  (exit) => Exit.isSuccess(exit) ? recordWrite(op.cache, ks, bumped) : Effect.void
                )
              })
            ))
            fibers.push([fiber, op.cache, op._tag])
            yield* interruptLater(fiber, op.interruptAfter)
          })
        case "lookups":
          return Effect.sync(() => {
            lookups.mode = op.mode
            lookups.millis = op.millis
          })
        case "pause":
          return Effect.sleep(Duration.millis(op.millis))
      }
    }

    // the schedule
    for (let i = 0; i < run.ops.length; i++) {
      const op = run.ops[i]!
      yield* start(op)
      if (run.close !== undefined && run.close.afterOp === i) {
        const which = run.close.cache
        yield* Effect.forkIn(
          Effect.delay(
            Effect.suspend(() => {
              closed[which] = true
              interruptsDelivered++
              return Scope.close(scopes[which], Exit.void)
            }),
            Duration.millis(run.close.millis)
          ),
          runScope
        )
      }
    }

    // the final sweep: what still runs after the grace (a lookup that never answers) is interrupted
    const all = Effect.zip(
      Effect.forEach(fibers, ([fiber]) => Fiber.await(fiber), { discard: true }),
      Effect.promise(() => Promise.all(settled))
    )
    const done = yield* Effect.timeoutOption(all, grace)
    lookups.mode = "answer"
    lookups.millis = 0
    if (Option.isNone(done)) {
      for (const [fiber, , tag] of fibers) {
        const exit = yield* Effect.timeoutOption(Fiber.interrupt(fiber), bound)
        if (Option.isNone(exit)) {
          violations.push(`the interrupt of a ${tag} did not end within ${Duration.format(bound)}`)
          hangSeen = true
          yield* Deferred.succeed(unhang, undefined) // lets it end, and the checks below run
          continue
        }
        if (Exit.isFailure(exit.value) && Cause.isInterruptedOnly(exit.value.cause)) interruptsDelivered++
      }
      for (const controller of controllers) controller.abort()
    }
    const ended = yield* Effect.timeoutOption(
      Effect.forEach(fibers, ([fiber]) => Fiber.await(fiber), { discard: true }),
      bound
    )
    if (Option.isNone(ended)) violations.push(`an operation did not end within ${Duration.format(bound)}`)
    const promises = yield* Effect.timeoutOption(Effect.promise(() => Promise.all(settled)), bound)
    if (Option.isNone(promises)) violations.push(`a promise get did not settle within ${Duration.format(bound)}`)
    // a close scheduled after the last operation has happened (or happens now: its fiber is due)
    if (run.close !== undefined && run.close.afterOp >= run.ops.length) {
      closed[run.close.cache] = true
      interruptsDelivered++
      yield* Scope.close(scopes[run.close.cache], Exit.void)
    }

    // quiescence: no flight, no background fiber, no lookup running
    for (const c of [0, 1] as const) {
      const impl = implOf(caches[c])!
      const left = yield* drained(Effect.map(FiberSet.size(impl.fibers), (n) => n + impl.flights.size))
      if (left > 0) violations.push(`cache ${c}: ${left} flights or background fibers left`)
    }
    const running = yield* drained(Effect.sync(() => lookups.started - lookups.ended))
    if (running > 0) violations.push(`${running} lookups still running`)
    if (!hangSeen && lookups.hungInterrupted !== lookups.hung) {
      violations.push(`${lookups.hung} lookups never answered, ${lookups.hungInterrupted} of them were interrupted`)
    }
    if (interruptsDelivered === 0 && lookups.interrupted > 0) {
      violations.push(`${lookups.interrupted} lookups interrupted, though nothing was`)
    }

    // no lease left under any key of the namespace
    const leases = yield* leasesIn(plain, namespace)
    if (leases.length > 0) {
      violations.push(`leases left in Redis: ${leases.map((key) => JSON.stringify(key)).join(", ")}`)
    }

    // every key answers a fresh get (a third process) and a get of each open cache: no lock wait,
    // within the bound, no older than the last write that returned (through that cache, for the
    // two caches: another process's near cache hears of a write when the bus delivers it)
    const fresh = yield* makeCache(namespace, lookups, false).pipe(Effect.provide(processes[2]))
    const finalGet = (what: string, c: number, cache: CacheAside.CacheAside<number, Row, Down>, process: Process) =>
      Effect.gen(function*() {
        const waitsBefore = yield* lockWaits(process, namespace)
        for (const k of keys) {
          const floor = c === 2 ? completed[k]! : ownCompleted[c]![k]!
          const answer = yield* Effect.timeoutOption(Effect.exit(cache.get(k)), bound)
          if (Option.isNone(answer)) {
            violations.push(`${what}: get(${k}) hung past ${Duration.format(bound)}`)
          } else if (Exit.isFailure(answer.value)) {
            violations.push(`${what}: get(${k}) failed: ${Cause.pretty(answer.value.cause)}`)
          } else {
            check(`${what} get(${k})`, c, k, floor, answer.value.value)
            const version = Option.getOrUndefined(answer.value.value)?.version ?? 0
            if (version > versions[k]!) violations.push(`${what} get(${k}): version ${version} newer than the database`)
          }
        }
        const waits = (yield* lockWaits(process, namespace)) - waitsBefore
        if (waits > 0) violations.push(`${what}: ${waits} lock waits at quiescence`)
      })
    yield* finalGet("fresh cache", 2, fresh, processes[2])
    for (const c of [0, 1] as const) {
      if (!closed[c]) yield* finalGet(`cache ${c}`, c, caches[c], processes[c])
    }
    return violations
  }))

const property = (near: boolean) =>
  Effect.gen(function*() {
    const server = yield* RedisServer.make
    const plain = yield* plainClient(server)
    const processes = [
      yield* Layer.build(processLayer(server.url, near)),
      yield* Layer.build(processLayer(server.url, near)),
      yield* Layer.build(processLayer(server.url, near))
    ] as const
    let runs = 0
    const checked = fc.asyncProperty(Run, async (run) => {
      const namespace = `ip${near ? "n" : "s"}${runs++}`
      // every step of a run that can wait is bounded; this bounds the rest (closing scopes, scans)
      const bounded = Effect.timeoutOption(runOnce(run, namespace, processes, plain, near), runBound)
      const violations = await Effect.runPromiseExit(bounded).then((exit) =>
        Exit.isFailure(exit)
          ? [`the run failed: ${Cause.pretty(exit.cause)}`]
          : Option.getOrElse(exit.value, () => [`the run did not end within ${Duration.format(runBound)}`])
      )
      // a readable counterexample: the schedule with what it broke
      deepStrictEqual({ run: showRun(run), violations }, { run: showRun(run), violations: [] })
    })
    // the time limit keeps a failing run's shrinking (each candidate takes up to a second) within
    // the test's timeout: the smallest counterexample found by then is reported
    yield* Effect.promise(() => fc.assert(checked, { numRuns: 75, interruptAfterTimeLimit: 60_000 }))
  })

describe("interrupts at any point, on Redis", () => {
  it.scopedLive(
    "no lease, flight, fiber or lookup left; every key answers a fresh get at once, no older than the last returned write (RedisCacheStore)",
    () => property(false),
    120_000
  )
  it.scopedLive(
    "no lease, flight, fiber or lookup left; every key answers a fresh get at once, no older than the last returned write (RedisCacheBus, near cache on)",
    () => property(true),
    120_000
  )
})
