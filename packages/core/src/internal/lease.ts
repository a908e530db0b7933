/**
 * The lease ("Scaling Memcache at Facebook", NSDI 2013, 3.2.1) as one resource: a placeholder with
 * a random token put under a key (`SET NX PX`, or a compare-and-set over bytes that are to be taken
 * over), consumed by the fill's compare-and-set, and released by compare-and-delete on every other
 * exit (failure, interrupt, a value that must not be cached, an invalidation meanwhile).
 *
 * `get`, `getMany`, the lock waiter and the background refreshes all take leases through `take`
 * (scoped) or `use`; none of them touches a lease's bytes otherwise.
 *
 * A lease write that fails without an answer from the store (a client-side timeout, a connection
 * cut after the command was sent) may have written the lease all the same: it is released in the
 * background (`mayHaveWritten`, `releaseInBackground`), so that other processes do not wait out
 * `leaseTtl` on a lease nobody will fill.
 *
 * @internal
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import type { CacheStore, CacheUnavailable } from "../CacheStore.js"
import * as Codec from "../Codec.js"
import { isBreakerOpen } from "./breaker.js"

/** @internal */
export class Lease {
  /** Set once a fill's compare-and-set replaced the lease: nothing left to release. */
  consumed = false
  constructor(readonly key: string, readonly bytes: Uint8Array) {}
}

/**
 * What taking a lease gave: `Mine` (release is ours), `Held` (another loader holds the key), or
 * `Unavailable` (the store failed).
 *
 * @internal
 */
export type Taken =
  | { readonly _tag: "Mine"; readonly lease: Lease }
  | { readonly _tag: "Held" }
  | { readonly _tag: "Unavailable"; readonly error: CacheUnavailable }

const held: Taken = { _tag: "Held" }

type Store = CacheStore["Type"]

/**
 * Who takes leases: the store, and where a release that nobody waits for runs (`forkRelease`).
 *
 * @internal
 */
export interface Owner {
  readonly store: Store
  /** Runs a release in the owner's background (see `CacheAsideImpl.forkRelease`). */
  readonly forkRelease: (release: Effect.Effect<void>) => Effect.Effect<void>
}

/**
 * Whether a failed lease write (`getOrLease`, `setIfAbsent`, `compareAndSet`) may have written the
 * lease all the same: the command may have run, its answer lost (a client-side timeout, a
 * connection cut after it was sent). Not when the store answered with an error (`replied`: nothing
 * was written), nor when a circuit breaker refused the call (nothing was sent).
 *
 * @internal
 */
export const mayHaveWritten = (error: CacheUnavailable): boolean => error.replied !== true && !isBreakerOpen(error)

/**
 * Releases `lease` in the owner's background (compare-and-delete: it removes our token or
 * nothing), for a lease write whose outcome is unknown: the caller goes on at once.
 *
 * @internal
 */
export const releaseInBackground = (owner: Owner, lease: Lease): Effect.Effect<void> =>
  owner.forkRelease(releaseUnlessConsumed(owner.store, lease))

/**
 * What a failed lease write gave: `Unavailable`, with the lease it may have written released in
 * the background (see `mayHaveWritten`).
 *
 * @internal
 */
export const failed = (owner: Owner, lease: Lease, error: CacheUnavailable): Effect.Effect<Taken> => {
  const taken: Taken = { _tag: "Unavailable", error }
  return mayHaveWritten(error) ? Effect.as(releaseInBackground(owner, lease), taken) : Effect.succeed(taken)
}

const acquire = (owner: Owner, key: string, ttl: Duration.Duration, over: Uint8Array | undefined) =>
  Effect.suspend((): Effect.Effect<Taken> => {
    const lease = fresh(key)
    const store = owner.store
    const taking = over === undefined
      ? store.setIfAbsent(key, lease.bytes, ttl)
      : store.compareAndSet(key, over, lease.bytes, ttl)
    return Effect.matchEffect(taking, {
      onFailure: (error) => failed(owner, lease, error),
      onSuccess: (taken) => Effect.succeed(taken ? { _tag: "Mine", lease } : held)
    })
  })

/**
 * A new lease for `key`, not yet in the store: a lease-read (`getOrLease`) puts it there when the
 * key is absent; the caller then owns it and releases it with `releaseUnlessConsumed`.
 *
 * @internal
 */
export const fresh = (key: string): Lease => new Lease(key, Codec.lease(instance + (++taken).toString(36)))

/**
 * Lease tokens: this process's random id and a counter, unique across processes and within one,
 * without a random draw per get (every leader's read carries a lease).
 */
const instance = `${randomUUID()}:`
let taken = 0

/**
 * Releases an owned lease (compare-and-delete: never another loader's bytes) unless a fill
 * consumed it. Never fails: a lease the store did not release expires on its own.
 *
 * @internal
 */
export const releaseUnlessConsumed = (store: Store, lease: Lease): Effect.Effect<void> =>
  Effect.suspend(() => releaseIfHeld(store, lease) ?? Effect.void)

/**
 * The release still owed for an owned lease, decided now: `undefined` when a fill consumed it (a
 * load fiber's cleanup: nothing left to run, no step spent).
 *
 * @internal
 */
export const releaseIfHeld = (store: Store, lease: Lease): Effect.Effect<void> | undefined =>
  lease.consumed ? undefined : Effect.ignore(store.compareAndDelete(lease.key, lease.bytes))

const release = (store: Store) => (taken: Taken): Effect.Effect<void> =>
  taken._tag === "Mine" ? releaseUnlessConsumed(store, taken.lease) : Effect.void

/**
 * Takes a lease on `key` for the scope: `SET NX` when `over` is undefined, else a compare-and-set
 * of `over` (the dead or corrupt bytes read) into the lease. A write that failed but may have run
 * is released at once, in the owner's background.
 *
 * @internal
 */
export const take = (
  owner: Owner,
  key: string,
  ttl: Duration.Duration,
  over?: Uint8Array | undefined
): Effect.Effect<Taken, never, Scope.Scope> =>
  Effect.acquireRelease(acquire(owner, key, ttl, over), release(owner.store))

/**
 * Takes a lease, runs `use` with it, and releases it on every exit unless a fill consumed it.
 *
 * @internal
 */
export const use = <X, E, R>(
  owner: Owner,
  key: string,
  ttl: Duration.Duration,
  over: Uint8Array | undefined,
  f: (taken: Taken) => Effect.Effect<X, E, R>
): Effect.Effect<X, E, R> => Effect.acquireUseRelease(acquire(owner, key, ttl, over), f, release(owner.store))

/**
 * Another loader's lease seen in the store, filled under without owning it (the lock off): never
 * released by us.
 *
 * @internal
 */
export const borrowed = (key: string, bytes: Uint8Array): Lease => new Lease(key, bytes)

/**
 * The fill: writes `bytes` if the key still holds the lease; `true` when written (the lease is then
 * consumed).
 *
 * @internal
 */
export const fill = (
  store: Store,
  lease: Lease,
  bytes: Uint8Array,
  ttl: Duration.Duration
): Effect.Effect<boolean, CacheUnavailable> =>
  Effect.map(store.compareAndSet(lease.key, lease.bytes, bytes, ttl), (written) => {
    if (written) lease.consumed = true
    return written
  })
