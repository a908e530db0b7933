/**
 * `getMany`: one store round trip for every key; the keys another get already has in flight are
 * joined; the others are led by one batch fiber in the cache's `FiberSet` (registered together with
 * their flights in one uninterruptible step). Misses are leased (absent keys by lease-reads, which
 * a store gathers into one call per turn) and loaded with one `loadMany`
 * (with the lookup's hard timeout, span and metrics), answers matched by key; a key the batch does
 * not answer loads on its own. Keys another process holds the lease of wait for its fill (the lock)
 * *while* this batch loads its own keys, so overlapping batches never wait on each other. Without
 * `loadMany`, misses load one by one with bounded concurrency.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { CacheUnavailable } from "../CacheStore.js"
import type { CacheAsideImpl } from "./cacheAside.js"
import { unavailable } from "./entry.js"
import type { Read } from "./entry.js"
import type { Flight, Outcome } from "./flight.js"
import { type ReentrantGet, Retry } from "./flight.js"
import * as Lease from "./lease.js"

interface Led<K, A, E> {
  readonly key: K
  readonly userKey: string
  readonly full: string
  readonly flight: Flight<A, E>
}

/** @internal */
export const getMany = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  input: Iterable<K>
): Effect.Effect<Array<Option.Option<A>>, E> =>
  Effect.suspend(() => {
    const keys = Array.from(input)
    // one argument: `map` would pass (key, index, array) to a key function with optional parameters
    const userKeys = keys.map((key) => impl.config.key(key))
    const fulls = userKeys.map((userKey) => impl.keys.full(userKey))
    return Effect.uninterruptibleMask((restore) => {
      const flights = new Map<string, Flight<A, E>>()
      /** Keys the near cache answered. */
      const near = new Map<string, Option.Option<A>>()
      const led: Array<Led<K, A, E>> = []
      let reentrant: ReentrantGet | undefined
      fulls.forEach((full, i) => {
        if (flights.has(full) || near.has(full)) return
        const held = impl.nearGet(full)
        if (held !== undefined) return near.set(full, held)
        const existing = impl.flights.get<A, E>(full)
        if (existing !== undefined && impl.flights.waitsForItself(existing)) {
          reentrant ??= impl.reentrant(existing.userKey)
        } else if (existing !== undefined) {
          impl.recorder.increment("coalesced")
          flights.set(full, existing)
        } else {
          const flight = impl.flights.register<A, E>(full, userKeys[i]!)
          led.push({ key: keys[i]!, userKey: userKeys[i]!, full, flight })
          flights.set(full, flight)
        }
      })
      if (reentrant !== undefined) {
        // nothing registered yet is left without its leader: the flights led here are ended
        for (const l of led) impl.flights.settle(l.flight, Exit.die(reentrant))
        return Effect.die(reentrant)
      }
      const distinct = Array.from(flights.values())
      const spawn = led.length === 0
        ? Effect.void
        : impl.flights.spawn(led.map((l) => l.flight), lead(impl, led))
      return Effect.flatMap(Effect.zipRight(spawn, impl.flights.await(distinct, restore)), (outcomes) => {
        const byFull = new Map<string, readonly [Flight<A, E>, Outcome<A, E>]>()
        distinct.forEach((flight, i) => byFull.set(flight.full, [flight, outcomes[i]!]))
        return Effect.forEach(keys, (key, i): Effect.Effect<Option.Option<A>, E> => {
          const held = near.get(fulls[i]!)
          if (held !== undefined) return Effect.succeed(held)
          const [flight, outcome] = byFull.get(fulls[i]!)!
          // a get again (its leader was interrupted) may wait for a load: interruptible, as `get`'s retry
          return outcome === Retry ? restore(impl.retry(key, flight)) : outcome
        })
      })
    })
  })

/** Settles a led flight with the exit of `work`. */
const settleWith = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  l: Led<K, A, E>,
  work: Effect.Effect<Option.Option<A>, E>
): Effect.Effect<void> => Effect.map(Effect.exit(work), (exit) => impl.flights.settle(l.flight, exit))

/** The batch leader: one read for every led key, then hits answered, misses loaded. */
const lead = <K, A, E, R>(impl: CacheAsideImpl<K, A, E, R>, led: ReadonlyArray<Led<K, A, E>>): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (const l of led) impl.near?.cache.begin(l.full)
    const stored = yield* Effect.either(impl.store.getMany(led.map((l) => l.full)))
    const failed = Either.isLeft(stored) ? stored.left : undefined
    const reads: Array<Read<A>> = Either.isLeft(stored)
      ? led.map(() => unavailable(stored.left))
      : led.map((l, i) => impl.entries.classify(l.full, stored.right[i]!))
    const batchable: Array<readonly [Led<K, A, E>, Read<A>]> = []
    const single: Array<readonly [Led<K, A, E>, Read<A>]> = []
    /** Keys another process is loading, with the lock: polls, not loads, so not bounded by the load concurrency. */
    const waits: Array<readonly [Led<K, A, E>, Read<A>]> = []
    const now: Array<Effect.Effect<void>> = []
    led.forEach((l, i) => {
      const read = reads[i]!
      const answer = impl.answerNow(l.key, l.userKey, l.full, read)
      if (answer !== undefined) now.push(settleWith(impl, l, answer))
      else if (read._tag === "Leased" && impl.config.lock !== undefined) waits.push([l, read])
      else if (impl.config.loadMany !== undefined && isBatchable(read)) batchable.push([l, read])
      else single.push([l, read])
    })
    yield* Effect.all(now, { discard: true })
    if (batchable.length === 1) single.push(batchable.pop()!)
    // one failed store read is one cache error, however many keys load alone after it (as in
    // `loadBatch`); each of them is a fallback
    const failedRead = single.find(([, read]) => read._tag === "Unavailable")?.[1]
    if (failedRead?._tag === "Unavailable") yield* impl.cacheError(failedRead.error, undefined)
    const resolve = ([l, read]: readonly [Led<K, A, E>, Read<A>]) => {
      if (read._tag !== "Unavailable") {
        return settleWith(impl, l, impl.resolve(l.key, l.userKey, l.full, l.flight, read))
      }
      impl.recorder.increment("misses")
      impl.recorder.increment("fallbacks")
      return settleWith(impl, l, impl.loadOnly(l.key, l.userKey, l.full))
    }
    yield* Effect.all([
      Effect.forEach(waits, resolve, { concurrency: "unbounded", discard: true }),
      Effect.forEach(single, resolve, { concurrency: impl.config.batchConcurrency, discard: true }),
      batchable.length === 0 ? Effect.void : loadBatch(impl, batchable, failed)
    ], { concurrency: "unbounded", discard: true })
  })

/** The bytes a lease takes over: a dead or corrupt entry's. */
const overOf = (read: Read<unknown>): Uint8Array | undefined =>
  read._tag === "Dead" || read._tag === "Corrupt" ? read.bytes : undefined

const isBatchable = (read: Read<unknown>): boolean =>
  read._tag === "Absent" || read._tag === "Dead" || read._tag === "Corrupt" || read._tag === "Unavailable"

type Done<K, A, E> = readonly [Led<K, A, E>, Exit.Exit<Option.Option<A>, E>]

const held: Lease.Taken = { _tag: "Held" }

/**
 * A miss's lease, a resource of the batch's scope (released on every exit unless a fill consumed
 * it). An absent key's is taken by a lease-read (`getOrLease`), as a single get takes it: a store
 * gathers the lease-reads of one turn (the Redis store sends them as one script call per chunk,
 * not one `SET NX` per key, which made a batch of thousands of keys thousands of commands). What
 * the key holds by then (another loader's lease, or a value filled meanwhile) is `Held`, as a
 * refused `SET NX` was. A dead or corrupt entry's lease is a compare-and-set over its bytes.
 */
const takeLease = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  full: string,
  read: Read<A>
): Effect.Effect<Lease.Taken | undefined, never, Scope.Scope> => {
  if (read._tag === "Unavailable") return Effect.succeed(undefined)
  const over = overOf(read)
  if (over !== undefined) return Lease.take(impl, full, impl.config.leaseTtl, over)
  return Effect.acquireRelease(
    Effect.suspend(() => {
      const lease = Lease.fresh(full)
      return Effect.matchEffect(impl.store.getOrLease(full, lease.bytes, impl.config.leaseTtl), {
        // a lease-read without an answer may have written the lease: released in the background
        onFailure: (error) => Lease.failed(impl, lease, error),
        onSuccess: (stored) => Effect.succeed<Lease.Taken>(Option.isNone(stored) ? { _tag: "Mine", lease } : held)
      })
    }),
    (taken) => taken._tag === "Mine" ? Lease.releaseUnlessConsumed(impl.store, taken.lease) : Effect.void
  )
}

/**
 * Misses leased (each one's lease a resource of this scope) and loaded with one `loadMany`. Their
 * flights are answered once the scope has closed: every lease is released before anyone reads on.
 */
const loadBatch = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  misses: ReadonlyArray<readonly [Led<K, A, E>, Read<A>]>,
  failed: CacheUnavailable | undefined
): Effect.Effect<void> =>
  Effect.gen(function*() {
    impl.recorder.increment("misses", misses.length)
    if (failed !== undefined) {
      yield* impl.cacheError(failed, "fallbacks")
      impl.recorder.increment("fallbacks", misses.length - 1)
    }
    for (const [l, read] of misses) {
      if (read._tag === "Corrupt") yield* impl.corrupt(l.full, read.error)
    }
    const done = yield* Effect.scoped(Effect.gen(function*() {
      const taken = yield* Effect.forEach(misses, ([l, read]) => takeLease(impl, l.full, read), {
        concurrency: "unbounded"
      })
      const waiting: Array<Led<K, A, E>> = []
      const loading: Array<readonly [Led<K, A, E>, Lease.Lease | undefined]> = []
      misses.forEach(([l], i) => {
        const t = taken[i]
        if (t?._tag === "Held" && impl.config.lock !== undefined) waiting.push(l)
        else loading.push([l, t?._tag === "Mine" ? t.lease : undefined])
      })
      const [, mine] = yield* Effect.all([
        Effect.forEach(
          waiting,
          (l) => settleWith(impl, l, impl.waitForFill(l.key, l.userKey, l.full, l.flight, undefined, undefined)),
          { concurrency: "unbounded", discard: true }
        ),
        loadMine(impl, loading)
      ], { concurrency: "unbounded" })
      return mine
    }))
    for (const [l, exit] of done) impl.flights.settle(l.flight, exit)
  })

/** One `loadMany` for the keys this batch loads; a key it leaves out loads on its own. */
const loadMine = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  loading: ReadonlyArray<readonly [Led<K, A, E>, Lease.Lease | undefined]>
): Effect.Effect<ReadonlyArray<Done<K, A, E>>> =>
  Effect.gen(function*() {
    if (loading.length === 0) return []
    const loaded = yield* Effect.exit(impl.lookup.loadMany(loading.map(([l]) => l.key)))
    if (Exit.isFailure(loaded)) {
      const failure = Exit.failCause(loaded.cause)
      return loading.map(([l]): Done<K, A, E> => [l, failure])
    }
    const [answers, delta] = loaded.value
    return yield* Effect.forEach(loading, ([l, lease]) => {
      const value = answers.get(l.userKey)
      const work = value === undefined
        ? lease === undefined
          ? impl.loadOnly(l.key, l.userKey, l.full)
          : impl.loadAndFill(l.key, l.userKey, l.full, l.flight, lease)
        : lease === undefined
        ? Effect.map(impl.entries.prepare(l.full, value, delta), (prepared) => prepared.value)
        : impl.fill(l.full, l.flight, lease, value, delta)
      return Effect.map(Effect.exit(work), (exit): Done<K, A, E> => [l, exit])
    }, { concurrency: impl.config.batchConcurrency })
  })
