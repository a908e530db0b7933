/**
 * Traffic for fault tests: many gets, counted (failed gets, wrong answers), and a wait until reads
 * are hits again. Counting, not timing.
 */
import type { CacheAside, Metrics } from "@cache-aside/core"
import { assert } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"

export interface Traffic<K> {
  /** The keys to cycle through. */
  readonly keys: ReadonlyArray<K>
  /** The answer a get of `key` must give (compared by `name`). */
  readonly expected: (key: K) => string | undefined
}

/** Runs `gets` gets over `traffic.keys` with `concurrency` workers; counts failures and wrong answers. */
export const load = <K, A extends { readonly name: string }>(
  cache: CacheAside.CacheAside<K, A, never>,
  traffic: Traffic<K>,
  gets: number,
  concurrency: number
) =>
  Effect.gen(function*() {
    let failed = 0
    let wrong = 0
    let done = 0
    yield* Effect.forEach(
      Array.from({ length: gets }, (_, i) => traffic.keys[i % traffic.keys.length]!),
      (key) =>
        Effect.exit(cache.get(key)).pipe(Effect.map((exit) => {
          done++
          if (Exit.isFailure(exit)) failed++
          else if (Option.getOrUndefined(exit.value)?.name !== traffic.expected(key)) wrong++
        })),
      { concurrency, discard: true }
    )
    return { failed, wrong, done }
  })

/**
 * Keeps reading until a whole round of reads are hits (the breaker closed and the cache refilled),
 * for at most `seconds` of real time; every read on the way must succeed with the right answer.
 */
export const hitsResume = <K, A extends { readonly name: string }>(
  cache: CacheAside.CacheAside<K, A, never>,
  traffic: Traffic<K>,
  snapshot: Effect.Effect<Metrics.Snapshot>,
  seconds = 20
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    const round = traffic.keys.length * 2
    while (Date.now() < deadline) {
      const before = (yield* snapshot).hits
      const result = yield* load(cache, traffic, round, 8)
      assert.strictEqual(result.failed, 0)
      assert.strictEqual(result.wrong, 0)
      if ((yield* snapshot).hits - before === round) return true
      yield* Effect.sleep("100 millis")
    }
    return false
  })
