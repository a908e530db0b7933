/**
 * Traffic for fault tests: many gets, counted (failed gets, wrong answers), and a wait until reads
 * are hits again. Counting, not timing.
 */
import type { CacheAside, Metrics } from "@cache-aside/core"
import { assert } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Option } from "effect"

export interface Traffic<K> {
  /** The keys to cycle through. */
  readonly keys: ReadonlyArray<K>
  /** The answer a get of `key` must give (compared by `name`). */
  readonly expected: (key: K) => string | undefined
}

/** A signal when `at` gets have completed: a fault test injects its fault mid-load on it, not after a sleep. */
export interface Progress {
  readonly at: number
  readonly reached: Deferred.Deferred<void>
}

/** Runs `gets` gets over `traffic.keys` with `concurrency` workers; counts failures and wrong answers. */
export const load = <K, A extends { readonly name: string }>(
  cache: CacheAside.CacheAside<K, A, never>,
  traffic: Traffic<K>,
  gets: number,
  concurrency: number,
  progress?: Progress
) =>
  Effect.gen(function*() {
    let failed = 0
    let wrong = 0
    let done = 0
    yield* Effect.forEach(
      Array.from({ length: gets }, (_, i) => traffic.keys[i % traffic.keys.length]!),
      (key) =>
        Effect.exit(cache.get(key)).pipe(Effect.flatMap((exit) => {
          done++
          if (Exit.isFailure(exit)) failed++
          else if (Option.getOrUndefined(exit.value)?.name !== traffic.expected(key)) wrong++
          return progress !== undefined && done === progress.at
            ? Deferred.succeed(progress.reached, undefined)
            : Effect.void
        })),
      { concurrency, discard: true }
    )
    return { failed, wrong, done }
  })

/** Redis back after a fault until reads are hits again (probe, cooldown, refill) on a loaded machine: a hang bound. */
export const resumeBound = Duration.seconds(20)

/**
 * Keeps reading until a whole round of reads are hits (the breaker closed and the cache refilled),
 * for at most `bound` (live clock); every read on the way must succeed with the right answer.
 */
export const hitsResume = <K, A extends { readonly name: string }>(
  cache: CacheAside.CacheAside<K, A, never>,
  traffic: Traffic<K>,
  snapshot: Effect.Effect<Metrics.Snapshot>,
  bound: Duration.Duration = resumeBound
) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(bound)
    const round = traffic.keys.length * 2
    while ((yield* Clock.currentTimeMillis) < deadline) {
      const before = (yield* snapshot).hits
      const result = yield* load(cache, traffic, round, 8)
      assert.strictEqual(result.failed, 0)
      assert.strictEqual(result.wrong, 0)
      if ((yield* snapshot).hits - before === round) return true
      yield* Effect.sleep("100 millis")
    }
    return false
  })
