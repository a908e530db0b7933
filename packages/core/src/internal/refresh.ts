/**
 * Reloading an entry that is still servable: stale-while-revalidate and XFetch in the background,
 * fail-safe in the foreground, and the handle's `refresh`. A reload over a servable entry takes a
 * lease *beside* the entry (a short hint key), never over it, so one process reloads while the
 * others keep serving the stale value; its fill is a compare-and-set against the bytes that were
 * read, so an invalidation meanwhile wins.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Option from "effect/Option"
import type * as Codec from "../Codec.js"
import type { CacheAsideImpl } from "./cacheAside.js"
import type { Found } from "./entry.js"
import type { Flight } from "./flight.js"
import * as Lease from "./lease.js"

/** XFetch: `now - delta * beta * ln(random) >= expiry`. @internal */
export const shouldRefreshEarly = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  entry: Codec.Entry<A>
): Effect.Effect<boolean> =>
  Effect.map(
    Effect.randomWith((random) => random.next),
    (r) => impl.now() - entry.delta * impl.config.beta * Math.log(r) >= entry.expiresAt
  )

/**
 * Refreshes a held entry in the background (the cache's `FiberSet`): once per key in this process,
 * and once across processes (the hint lease).
 *
 * @internal
 */
export const inBackground = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  key: K,
  userKey: string,
  full: string,
  bytes: Uint8Array
): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (impl.refreshing.has(full)) return Effect.void
    impl.refreshing.add(full)
    const work = Lease.use(impl, impl.keys.hint(full), impl.config.leaseTtl, undefined, (taken) =>
      taken._tag === "Mine"
        ? Effect.asVoid(impl.loadAndFill(key, userKey, full, undefined, Lease.borrowed(full, bytes)))
        : Effect.void)
    return impl.fork(
      work,
      Effect.sync(() => impl.refreshing.delete(full))
    )
  })

/**
 * Fail-safe: the entry is past its TTL and past the stale-while-revalidate window but still held.
 * One process reloads (it holds the hint lease); the others answer the stale value. When the
 * lookup fails, or the soft timeout passes first, the stale value is answered; a failure also
 * keeps it for the throttle period (never past its original `maxStale`), so a failing lookup is
 * not hammered. After a soft timeout the load goes on (the flight stays registered, so later gets
 * join it instead of starting another load) and still fills the cache.
 *
 * @internal
 */
export const reloadOverStale = <K, A, E, R>(
  impl: CacheAsideImpl<K, A, E, R>,
  key: K,
  userKey: string,
  full: string,
  flight: Flight<A, E>,
  stale: Found<A>
): Effect.Effect<Option.Option<A>, E> => {
  const serveStale = (reason: string) =>
    Effect.suspend(() => {
      impl.recorder.increment("staleServes")
      return Effect.as(
        Effect.logWarning(`cache-aside: fail-safe, serving a stale value (${reason})`).pipe(
          Effect.annotateLogs({ ...impl.logAnnotations, key: impl.config.keyLabel(full) })
        ),
        stale.value
      )
    })
  const soft = impl.config.softTimeout
  const answerAfterSoftTimeout = soft === undefined ? Effect.void : Effect.asVoid(Effect.fork(
    Effect.flatMap(Effect.sleep(soft), () => {
      impl.recorder.increment("lookupTimeouts")
      return Effect.map(
        serveStale(`the lookup passed its soft timeout of ${Duration.format(soft)}`),
        (value) => impl.flights.answer(flight, Exit.succeed(value))
      )
    })
  ))
  return Lease.use(impl, impl.keys.hint(full), impl.config.leaseTtl, undefined, (taken) => {
    if (taken._tag === "Held") return serveStale("another process is reloading it")
    const work = impl.loadAndFill(key, userKey, full, flight, Lease.borrowed(full, stale.bytes))
    return Effect.catchAll(
      Effect.zipRight(answerAfterSoftTimeout, work),
      (error) =>
        Effect.zipRight(
          throttle(impl, full, stale),
          serveStale(
            typeof error === "object" && error !== null && "_tag" in error && error._tag === "LookupTimeout"
              ? "the lookup passed its hard timeout"
              : "the lookup failed"
          )
        )
    )
  })
}

/** Keeps a stale entry fresh for the throttle period, but never past its original stale deadline. */
const throttle = <K, A, E, R>(impl: CacheAsideImpl<K, A, E, R>, full: string, stale: Found<A>): Effect.Effect<void> =>
  Effect.suspend(() => {
    // the original stale deadline, carried by every rewrite: a chain of throttles never extends it
    const deadline = stale.entry.staleUntil ?? stale.entry.expiresAt + impl.config.failSafe!.maxStaleMillis
    const left = deadline - impl.now()
    if (left < 1) return Effect.void
    const fresh = Math.min(impl.config.failSafe!.throttleMillis, left)
    const encoded = impl.entries.encode(full, stale.value, fresh, stale.entry.delta, left, deadline)
    return Either.isLeft(encoded)
      ? Effect.void
      : Effect.ignore(impl.store.compareAndSet(full, stale.bytes, encoded.right.bytes, encoded.right.ttl))
  })

/**
 * The handle's `refresh`: reloads now and writes over what is cached (a compare-and-set against
 * the bytes read), while gets keep serving the old value. An absent key is leased and filled.
 *
 * @internal
 */
export const now = <K, A, E, R>(impl: CacheAsideImpl<K, A, E, R>, key: K): Effect.Effect<void, E> =>
  Effect.suspend(() => {
    const userKey = impl.config.key(key)
    const full = impl.keys.full(userKey)
    return Effect.flatMap(impl.read(full), (found): Effect.Effect<unknown, E> => {
      switch (found._tag) {
        case "Found":
        case "Leased":
          return impl.loadAndFill(key, userKey, full, undefined, Lease.borrowed(full, found.bytes))
        case "Absent":
          return impl.miss(key, userKey, full, undefined, undefined, undefined)
        case "Dead":
        case "Corrupt":
          return impl.miss(key, userKey, full, undefined, found.bytes, undefined)
        case "Newer":
        case "Unavailable":
          return impl.lookup.load(key, userKey)
      }
    })
  }).pipe(Effect.asVoid)
