/**
 * The read path under random interleavings: gets, getMany, writes followed by invalidations,
 * interrupts at random points, failing lookups and store faults, all concurrent, on the memory store
 * behind `FaultInjection` (live clock, short bounds). After every run:
 *
 * - no get waited past its bound (the lock's wait, plus slack; never a speed assertion);
 * - no flight outlived its waiters, and no background fiber outlived the run;
 * - no lease outlived its holder's exit (the release itself is never faulted: a failed release
 *   legitimately leaves a lease until `leaseTtl`);
 * - no get answered a value older than the last invalidation completed before it began.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, CacheStore, FaultInjection, MemoryCacheStore, Metrics } from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"

class Down extends Schema.TaggedError<Down>()("Down", {}) {}

const Key = Schema.Int.pipe(Schema.between(0, 2))
const Op = Schema.Union(
  Schema.TaggedStruct("get", { key: Key, interruptAfter: Schema.optional(Schema.Int.pipe(Schema.between(0, 30))) }),
  Schema.TaggedStruct("getMany", {
    keys: Schema.Array(Key).pipe(Schema.minItems(1), Schema.maxItems(4)),
    interruptAfter: Schema.optional(Schema.Int.pipe(Schema.between(0, 30)))
  }),
  Schema.TaggedStruct("write", { key: Key }),
  Schema.TaggedStruct("lookupsFail", { on: Schema.Boolean }),
  Schema.TaggedStruct("lookupsTake", { millis: Schema.Int.pipe(Schema.between(0, 20)) }),
  Schema.TaggedStruct("storeFails", {
    n: Schema.Int.pipe(Schema.between(1, 4)),
    operation: Schema.Literal("get", "getMany", "setIfAbsent", "compareAndSet", "delete")
  }),
  Schema.TaggedStruct("storeHangs", { operation: Schema.Literal("get", "getMany") }),
  Schema.TaggedStruct("heal", {}),
  /** Not forked: the next operations start after it (so a write can land in the middle of a load). */
  Schema.TaggedStruct("pause", { millis: Schema.Int.pipe(Schema.between(0, 15)) })
)

/** Every get answers within this: the lock's wait and the store timeout, with generous slack against hangs. */
const bound = Duration.seconds(3)

const Services = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

describe("the read path under random interleavings", () => {
  // 64: the default, the gate never full here; 1: every lookup but one waits at the gate
  // (`lookupConcurrency`), so the interrupts land on waiters and on handovers too
  for (const lookupConcurrency of [64, 1]) {
    it.scopedLive.prop(
      `bounded gets, no flight, fiber or lease left, and no value older than a completed invalidation (lookupConcurrency ${lookupConcurrency})`,
      [Schema.Array(Op).pipe(Schema.minItems(1), Schema.maxItems(30))],
      ([ops]) =>
        Effect.gen(function*() {
          const store = yield* CacheStore.CacheStore
          const faults = yield* FaultInjection.FaultInjection
          const versions = [0, 0, 0, 0]
          /** The version of each key's last invalidation that completed. */
          const invalidated = [0, 0, 0, 0]
          let failing = false
          let delay = 0
          const cache = yield* CacheAside.make({
            namespace: "prop",
            key: (k: number) => String(k),
            schema: Schema.Struct({ key: Schema.Number, version: Schema.Number }),
            lookup: (k: number) =>
              Effect.suspend(() => {
                // a snapshot read at the start of the lookup, answered after its latency
                const answer = failing
                  ? Effect.fail(new Down())
                  : Effect.succeed(Option.some({ key: k, version: versions[k]! }))
                return Effect.zipRight(Effect.sleep(delay), answer)
              }),
            ttl: "1 minute",
            leaseTtl: "2 seconds",
            lock: { wait: "200 millis", poll: "5 millis" },
            storeTimeout: "30 millis",
            lookupConcurrency
          })
          const violations: Array<string> = []
          const check = (k: number, floor: number, answer: Option.Option<{ readonly version: number }>) => {
            if (Option.isSome(answer) && answer.value.version < floor) {
              violations.push(
                `key ${k}: answered version ${answer.value.version}, invalidated at ${floor} before the get began`
              )
            }
          }
          const timed = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
            Effect.flatMap(Effect.timeoutOption(Effect.exit(effect), bound), (result) => {
              if (Option.isNone(result)) violations.push(`${what} waited past ${Duration.format(bound)}`)
              return Effect.void
            })
          const interruptAfter = (n: number | undefined, effect: Effect.Effect<void>) =>
            n === undefined ? effect : Effect.gen(function*() {
              const fiber = yield* Effect.fork(effect)
              for (let i = 0; i < n; i++) yield* Effect.yieldNow()
              yield* Fiber.interrupt(fiber)
            })
          const run = (op: typeof Op.Type): Effect.Effect<void> => {
            switch (op._tag) {
              case "get":
                return Effect.suspend(() => {
                  const floor = invalidated[op.key]!
                  return interruptAfter(
                    op.interruptAfter,
                    timed(`get(${op.key})`, Effect.tap(cache.get(op.key), (answer) => check(op.key, floor, answer)))
                  )
                })
              case "getMany":
                return Effect.suspend(() => {
                  const floors = op.keys.map((k) => invalidated[k]!)
                  return interruptAfter(
                    op.interruptAfter,
                    timed(
                      `getMany(${op.keys})`,
                      Effect.tap(cache.getMany(op.keys), (answers) =>
                        answers.forEach((answer, i) => check(op.keys[i]!, floors[i]!, answer)))
                    )
                  )
                })
              case "write":
                return Effect.suspend(() => {
                  const version = ++versions[op.key]!
                  return Effect.flatMap(Effect.exit(cache.invalidate(op.key)), (exit) =>
                    Effect.sync(() => {
                      if (Exit.isSuccess(exit)) {
                        invalidated[op.key] = Math.max(invalidated[op.key]!, version)
                      }
                    }))
                })
              case "lookupsTake":
                return Effect.sync(() =>
                  void (delay = op.millis)
                )
              case "lookupsFail":
                return Effect.sync(() => void (failing = op.on))
              case "storeFails":
                return faults.failNext(op.n, { operations: [op.operation] })
              case "storeHangs":
                return faults.hang({ operations: [op.operation] })
              case "heal":
                return faults.heal
              case "pause":
                return Effect.sleep(op.millis)
            }
          }
          const fibers: Array<Fiber.Fiber<void>> = []
          for (const op of ops) {
            if (op._tag === "pause") yield* run(op)
            else fibers.push(yield* Effect.fork(run(op)))
          }
          yield* Effect.forEach(fibers, Fiber.join, { discard: true })
          yield* faults.heal
          const impl = implOf(cache)!
          assert.strictEqual(impl.flights.size, 0, "no flight outlived its waiters")
          let background = yield* FiberSet.size(impl.fibers)
          for (let i = 0; i < 200 && background > 0; i++) {
            yield* Effect.sleep("5 millis")
            background = yield* FiberSet.size(impl.fibers)
          }
          assert.strictEqual(background, 0, "no background fiber outlived the run")
          for (let k = 0; k < 4; k++) {
            const held = yield* Effect.orDie(store.get(cache.keyOf(k)))
            assert.isFalse(Option.isSome(held) && held.value[0] === 0, `a lease of ${k} outlived its holder`)
          }
          assert.strictEqual(violations.length, 0, violations.join("; "))
        }).pipe(Effect.provide(Services)),
      {
        fastCheck: {
          numRuns: 150,
          // the classic race, always tried: a write and its invalidation land in the middle of a load
          examples: [[[
            { _tag: "lookupsTake", millis: 15 },
            { _tag: "get", key: 0 },
            { _tag: "pause", millis: 5 },
            { _tag: "write", key: 0 },
            { _tag: "pause", millis: 2 },
            { _tag: "get", key: 0 },
            { _tag: "getMany", keys: [0, 1] }
          ]]]
        },
        timeout: 120_000
      }
    )
  }
})
