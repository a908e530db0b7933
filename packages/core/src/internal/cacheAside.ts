/**
 * The read path of one cache: `CacheAsideImpl` holds the cache's state in fields (keys, flights,
 * entries, the lookup, the background fibers) and its methods are the steps of a get:
 *
 * ```
 * get -> keys -> flight (join or lead) -> store read -> entry (classify) -> decide
 *     -> [answer now: fresh / stale]  or  [background: lease -> load -> fill (CAS) -> release]
 * ```
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type { CacheAside } from "../CacheAside.js"
import type { CacheBus, Invalidation } from "../CacheBus.js"
import type { CacheStore } from "../CacheStore.js"
import { CacheUnavailable } from "../CacheStore.js"
import * as Codec from "../Codec.js"
import * as Glob from "../Glob.js"
import type { Recorder } from "../Metrics.js"
import * as batch from "./batch.js"
import { isBreakerOpen } from "./breaker.js"
import { Entries } from "./entry.js"
import type { Found, Read } from "./entry.js"
import type { AnyFlight, Restore } from "./flight.js"
import { Flight, Flights, ReentrantGet, Retry } from "./flight.js"
import { Keys } from "./keys.js"
import * as Lease from "./lease.js"
import { Lookup, whenTraced } from "./lookup.js"
import type { NearCache } from "./nearCache.js"
import type { Config } from "./options.js"
import * as refresh from "./refresh.js"

/**
 * XFetch refreshes when `-beta * delta * ln(random) >= time left`: 4 lookup durations before expiry
 * that still happens for 1.8 % of reads. Near cache entries end there (see `fresh`).
 */
const earlyWindow = 4

/** @internal */
export class CacheAsideImpl<K, A, E, R> {
  readonly keys: Keys
  readonly flights: Flights
  readonly entries: Entries<A>
  readonly lookup: Lookup<K, A, E, R, E>
  /** Keys whose background refresh runs in this process. */
  readonly refreshing = new Set<string>()
  readonly logAnnotations: { readonly namespace: string }
  readonly now: () => number
  /** The near cache and its bus (set by `make` when the `nearCache` option is on). */
  near: { readonly cache: NearCache<A>; readonly bus: CacheBus["Type"]; readonly namespace: string } | undefined

  constructor(
    readonly config: Config<K, A, E, R>,
    readonly store: CacheStore["Type"],
    readonly recorder: Recorder,
    readonly fibers: FiberSet.FiberSet<unknown, unknown>,
    captured: Context.Context<R>,
    clock: Clock.Clock,
    timeoutError: (userKey: string) => E
  ) {
    this.now = () => clock.unsafeCurrentTimeMillis()
    this.keys = new Keys(config.prefix, config.namespace, config.version)
    this.entries = new Entries<A>(config, recorder, this.now)
    this.lookup = new Lookup(config, recorder, captured, this.now, timeoutError)
    this.flights = new Flights(fibers, (caller) => this.lookup.contextFor(caller))
    this.logAnnotations = { namespace: config.namespace }
  }

  keyOf = (key: K): string => this.keys.full(this.config.key(key))

  // ---------------------------------------------------------------------------------------------
  // hooks: the one place a fresh decoded value is produced, and the one place invalidations apply

  /**
   * A fresh value was read or filled (the near cache's fill point); `delta`: how long its lookup
   * took, `size`: its stored bytes. With early expiration on, the near cache stops answering the
   * key `earlyWindow` lookup durations (times beta) before expiry, so reads reach the store, where
   * XFetch decides on a refresh.
   */
  fresh(full: string, value: Option.Option<A>, expiresAt: number, delta: number, size: number): void {
    if (this.near === undefined) return
    const until = expiresAt - earlyWindow * this.config.beta * delta
    this.near.cache.fill(full, value, until, size, this.now())
  }

  /** The near cache's answer for a key (a counted hit), or `undefined`. */
  nearGet(full: string): Option.Option<A> | undefined {
    if (this.near === undefined) return undefined
    const held = this.near.cache.get(full, this.now())
    if (held !== undefined) {
      this.recorder.increment("hits")
      this.recorder.increment("nearHits")
    }
    return held
  }

  /**
   * A write (`set`, an invalidation): evicts this process's near cache now and again when `write`
   * ends (a read that raced it cannot fill what it removes), then tells the other processes.
   */
  invalidateNear<X, Y>(invalidation: Invalidation, write: Effect.Effect<X, Y>): Effect.Effect<X, Y> {
    const near = this.near
    if (near === undefined) return write
    near.cache.evict(invalidation)
    return Effect.onExit(write, () => {
      near.cache.evict(invalidation)
      return near.bus.publish(near.namespace, invalidation)
    })
  }

  /** Applies an invalidation in this process: flights of matching keys do not cache their result. */
  invalidateLocal(matches: (flight: AnyFlight) => boolean): void {
    for (const flight of this.flights.all()) {
      if (matches(flight)) {
        flight.invalidated = true
        this.flights.unregister(flight)
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // small steps

  /** Counts a store failure and logs it, unless a circuit breaker refused the call (the store logged that once). */
  cacheError(error: CacheUnavailable, event: "fallbacks" | "writeErrors" | undefined): Effect.Effect<void> {
    this.recorder.increment("cacheErrors")
    if (event !== undefined) this.recorder.increment(event)
    // a circuit breaker's refusal: logged once by the store
    if (isBreakerOpen(error)) return Effect.void
    return Effect.logWarning("cache-aside: cache store unavailable", error.message).pipe(
      Effect.annotateLogs({ ...this.logAnnotations, operation: error.operation })
    )
  }

  /**
   * Runs work in the cache's `FiberSet` (closing the cache's scope stops it), forked as a load is
   * (with the captured services: a refresh's lookup needs no `Effect.provide`); its failures are logged.
   */
  fork(work: Effect.Effect<void, unknown>, cleanup: Effect.Effect<void> = Effect.void): Effect.Effect<void> {
    const logged = Effect.catchAllCause(
      work,
      (cause) =>
        Effect.logWarning("cache-aside: background work failed", cause).pipe(Effect.annotateLogs(this.logAnnotations))
    )
    return Effect.uninterruptible(
      Effect.map(this.flights.forkLoad(Effect.ensuring(Effect.interruptible(logged), cleanup), undefined), (fiber) => {
        FiberSet.unsafeAdd(this.fibers, fiber)
      })
    )
  }

  /**
   * Runs a lease's release in the background: in the cache's `FiberSet` while the cache is open;
   * once its scope has begun to close, as a daemon (the closed set would interrupt it before it
   * starts, leaving the lease for every process to wait on until `leaseTtl`). Either way bounded by
   * the store's own time limits, and nobody waits for it: a closing cache never waits for a store call.
   */
  forkRelease(release: Effect.Effect<void>): Effect.Effect<void> {
    return Effect.suspend(() => this.flights.closed ? Effect.asVoid(Effect.forkDaemon(release)) : this.fork(release))
  }

  read(full: string): Effect.Effect<Read<A>> {
    this.near?.cache.begin(full)
    return Effect.match(this.store.get(full), {
      onFailure: (error): Read<A> => ({ _tag: "Unavailable", error }),
      onSuccess: (stored) => this.entries.classify(full, stored)
    })
  }

  corrupt(full: string, error: Codec.CodecError): Effect.Effect<void> {
    this.recorder.increment(error.reason === "Integrity" ? "integrityErrors" : "decodeErrors")
    return Effect.logWarning("cache-aside: corrupt cache entry taken over", error.reason).pipe(
      Effect.annotateLogs({ ...this.logAnnotations, key: this.config.keyLabel(full) })
    )
  }

  /** The read worked, the lease write did not (OOM, READONLY): the value is served, not cached. */
  leaseRefused(key: K, userKey: string, full: string, error: CacheUnavailable): Effect.Effect<Option.Option<A>, E> {
    return Effect.zipRight(this.cacheError(error, "writeErrors"), this.loadOnly(key, userKey, full))
  }

  /** A load whose result is not cached (the store failed, a newer entry, no lease). */
  loadOnly(key: K, userKey: string, full: string): Effect.Effect<Option.Option<A>, E> {
    return Effect.flatMap(
      this.lookup.load(key, userKey),
      ([value, delta]) => Effect.map(this.entries.prepare(full, value, delta), (prepared) => prepared.value)
    )
  }

  /**
   * Loads and fills under `lease` (ours, another loader's seen without the lock, or the stale bytes
   * a refresh replaces): the fill is a compare-and-set, skipped when the flight was invalidated.
   */
  loadAndFill(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E> | undefined,
    lease: Lease.Lease
  ): Effect.Effect<Option.Option<A>, E> {
    return Effect.flatMap(
      this.lookup.load(key, userKey),
      ([value, delta]) => this.fill(full, flight, lease, value, delta)
    )
  }

  /** Prepares and writes a loaded value under `lease`; answers the decoded value. Never fails. */
  fill(
    full: string,
    flight: Flight<A, E> | undefined,
    lease: Lease.Lease,
    value: Option.Option<A>,
    delta: number
  ): Effect.Effect<Option.Option<A>> {
    return Effect.flatMap(this.entries.prepare(full, value, delta), (prepared) => {
      const write = prepared.write
      if (write === undefined || flight?.invalidated === true) return Effect.succeed(prepared.value)
      return Effect.matchEffect(Lease.fill(this.store, lease, write.bytes, write.ttl), {
        onFailure: (error) => Effect.as(this.cacheError(error, "writeErrors"), prepared.value),
        onSuccess: (written) => {
          if (!written) this.recorder.increment("leaseRejected")
          else {
            this.fresh(
              full,
              prepared.value,
              this.now() + Duration.toMillis(write.ttl) - this.config.keepMillis,
              delta,
              write.bytes.length
            )
          }
          return Effect.succeed(prepared.value)
        }
      })
    })
  }

  /**
   * A miss: take the lease (`SET NX`, or a compare-and-set over `over`, the dead or corrupt bytes
   * read), load, fill. Another loader holds it: wait for its fill (the lock) or load alone.
   */
  miss(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E> | undefined,
    over: Uint8Array | undefined,
    deadline: number | undefined
  ): Effect.Effect<Option.Option<A>, E> {
    return Lease.use(this, full, this.config.leaseTtl, over, (taken) => {
      switch (taken._tag) {
        case "Mine":
          return this.loadAndFill(key, userKey, full, flight, taken.lease)
        case "Held":
          return this.config.lock !== undefined
            ? this.waitForFill(key, userKey, full, flight, deadline, undefined)
            : this.loadOnly(key, userKey, full)
        case "Unavailable":
          return this.leaseRefused(key, userKey, full, taken.error)
      }
    })
  }

  /**
   * The lock: polls until the lease holder's fill lands, the lease goes away (then takes it), or
   * the deadline passes (then loads by itself, filling under the last lease seen). Counted once per
   * get; the deadline is wall-clock time from the first wait, whatever `poll` is.
   */
  waitForFill(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E> | undefined,
    deadline: number | undefined,
    seen: Uint8Array | undefined
  ): Effect.Effect<Option.Option<A>, E> {
    return Effect.suspend(() => {
      const lock = this.config.lock!
      if (deadline === undefined) {
        this.recorder.increment("lockWaits")
        deadline = this.now() + lock.waitMillis
      }
      const until = deadline
      const remaining = until - this.now()
      if (remaining <= 0) {
        this.recorder.increment("lockTimeouts")
        return seen === undefined
          ? this.loadOnly(key, userKey, full)
          : this.loadAndFill(key, userKey, full, flight, Lease.borrowed(full, seen))
      }
      return Effect.flatMap(
        Effect.zipRight(Effect.sleep(Duration.millis(Math.min(lock.pollMillis, remaining))), this.read(full)),
        (found): Effect.Effect<Option.Option<A>, E> => {
          switch (found._tag) {
            case "Found":
              return Effect.succeed(found.value)
            case "Absent":
              // the holder released its lease (not cached, failed) or an invalidation removed it
              return this.miss(key, userKey, full, flight, undefined, until)
            case "Dead":
              return this.miss(key, userKey, full, flight, found.bytes, until)
            case "Corrupt":
              return Effect.zipRight(
                this.corrupt(full, found.error),
                this.miss(key, userKey, full, flight, found.bytes, until)
              )
            case "Leased":
              return this.waitForFill(key, userKey, full, flight, until, found.bytes)
            case "Newer":
              return this.loadOnly(key, userKey, full)
            case "Unavailable":
              return Effect.zipRight(this.cacheError(found.error, "fallbacks"), this.loadOnly(key, userKey, full))
          }
        }
      )
    })
  }

  // ---------------------------------------------------------------------------------------------
  // the decision table

  /** A read answered at once (a fresh or stale hit), or `undefined` when it needs a load. */
  answerNow(key: K, userKey: string, full: string, found: Read<A>): Effect.Effect<Option.Option<A>> | undefined {
    if (found._tag !== "Found" || found.state === "failSafe") return undefined
    this.recorder.increment("hits")
    if (found.state === "stale") {
      this.recorder.increment("staleServes")
      return Effect.as(refresh.inBackground(this, key, userKey, full, found.bytes), found.value)
    }
    this.fresh(full, found.value, found.entry.expiresAt, found.entry.delta, found.bytes.length)
    if (this.config.beta === 0 || found.entry.delta <= 0) return Effect.succeed(found.value)
    return Effect.flatMap(refresh.shouldRefreshEarly(this, found.entry), (early) => {
      if (!early) return Effect.succeed(found.value)
      this.recorder.increment("earlyRefreshes")
      return Effect.as(refresh.inBackground(this, key, userKey, full, found.bytes), found.value)
    })
  }

  /** What a read that needs a load does (in the flight's background fiber). */
  resolve(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E>,
    found: Read<A>
  ): Effect.Effect<Option.Option<A>, E> {
    this.recorder.increment("misses")
    switch (found._tag) {
      case "Unavailable":
        return Effect.zipRight(this.cacheError(found.error, "fallbacks"), this.loadOnly(key, userKey, full))
      case "Absent":
        return this.miss(key, userKey, full, flight, undefined, undefined)
      case "Dead":
        return this.miss(key, userKey, full, flight, found.bytes, undefined)
      case "Corrupt":
        return Effect.zipRight(
          this.corrupt(full, found.error),
          this.miss(key, userKey, full, flight, found.bytes, undefined)
        )
      case "Newer":
        return this.loadOnly(key, userKey, full)
      case "Leased":
        // Without the lock, load now and fill under the lease that was seen: the compare-and-set
        // succeeds only while that lease is still there, so an invalidation since still wins.
        return this.config.lock !== undefined
          ? this.waitForFill(key, userKey, full, flight, undefined, found.bytes)
          : this.loadAndFill(key, userKey, full, flight, Lease.borrowed(full, found.bytes))
      case "Found":
        return refresh.reloadOverStale(this, key, userKey, full, flight, found as Found<A>)
    }
  }

  get = (key: K): Effect.Effect<Option.Option<A>, E> =>
    Effect.suspend(() => {
      const userKey = this.config.key(key)
      const full = this.keys.full(userKey)
      const now = this.answerable(full)
      if (now instanceof ReentrantGet) return Effect.die(now)
      if (now instanceof Flight) {
        return this.flights.join(now, (outcome, restore) => outcome === Retry ? restore(this.retry(key, now)) : outcome)
      }
      if (now !== undefined) return Effect.succeed(now)
      return this.flights.lead<A, E>(
        full,
        userKey,
        (flight, restore) => this.leadRead(key, userKey, full, flight, restore)
      )
    })

  /**
   * A get again, for a waiter of `flight` whose leader or load was interrupted (`Retry`). Once the
   * cache's scope has closed, a flight whose load was interrupted gives an interrupt: every load
   * would be interrupted at its start, and each round of retries would answer only its leader (N
   * waiters, N rounds, each resuming all the others). A leader interrupted in its inline read says
   * nothing of the scope: its waiters get again (a cached key still answers).
   */
  retry(key: K, flight: AnyFlight | Flight<A, E>): Effect.Effect<Option.Option<A>, E> {
    return this.flights.closed && flight.task !== undefined ? Effect.interrupt : this.get(key)
  }

  /**
   * What a get of `full` needs no read of its own for: the near cache's value (a counted hit), or
   * the flight of the key in flight to join (counted as coalesced); `undefined`: it leads a flight.
   */
  answerable(full: string): Option.Option<A> | Flight<A, E> | ReentrantGet | undefined {
    const held = this.nearGet(full)
    if (held !== undefined) return held
    const existing = this.flights.get<A, E>(full)
    if (existing === undefined) return undefined
    if (this.flights.waitsForItself(existing)) return this.reentrant(existing.userKey)
    this.recorder.increment("coalesced")
    return existing
  }

  /** The defect of a get that would wait for itself (see `Flights.waitsForItself`). */
  reentrant(userKey: string): ReentrantGet {
    return new ReentrantGet(
      `cache-aside: a lookup of namespace "${this.config.namespace}" gets key ${
        this.config.keyLabel(userKey)
      }, which that lookup (or one it waits for) is loading: it would wait for itself forever`
    )
  }

  /**
   * `answerable` for a get that would rather not enter the runtime (`PromiseCache`); `undefined`
   * also when the get has to run as an effect for another reason (its span is wanted, or the key
   * function threw: the effect reports that as it always does).
   */
  getWithoutFiber(key: K): Option.Option<A> | Flight<A, E> | ReentrantGet | undefined {
    if (this.config.spanEveryGet) return undefined
    let full: string
    try {
      full = this.keyOf(key)
    } catch {
      return undefined
    }
    return this.answerable(full)
  }

  /**
   * The leader's read is a lease-read (`getOrLease`): a miss holds its lease after one round trip,
   * and its load runs with the release as the load fiber's finalizer (released on every exit unless
   * the fill consumed it). From the read's answer to the fork nothing can interrupt the leader; an
   * interrupt during the read, or a failure without an answer from the store (`Lease.mayHaveWritten`),
   * releases the lease the read may have written, in the background.
   */
  leadRead(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E>,
    restore: Restore
  ): Effect.Effect<Option.Option<A>, E> {
    const lease = Lease.fresh(full)
    this.near?.cache.begin(full)
    // one step for the read's every exit (the caller's mask is `lead`'s): an interrupt releases the
    // lease the read may have written, in the background (an interrupted caller, a closing scope
    // or a frozen Redis, never waits for a store call of its own finalizer), also once the cache's
    // scope has closed (`forkRelease`)
    return Effect.matchCauseEffect(restore(this.store.getOrLease(full, lease.bytes, this.config.leaseTtl)), {
      onFailure: (cause) => {
        const failure = Cause.failureOrCause(cause)
        if (Either.isRight(failure)) {
          const propagated = Effect.failCause(failure.right)
          return Cause.isInterruptedOnly(cause)
            ? Effect.zipRight(Lease.releaseInBackground(this, lease), propagated)
            : propagated
        }
        const error = failure.left
        // no answer (a timeout, a cut connection): the read may have written the lease all the
        // same, which would hold every other process's get in the lock for `leaseTtl`
        const next = this.readFailed(key, userKey, full, flight, error, restore)
        return Lease.mayHaveWritten(error) ? Effect.zipRight(Lease.releaseInBackground(this, lease), next) : next
      },
      onSuccess: (stored) => {
        if (Option.isSome(stored)) {
          return this.decide(key, userKey, full, flight, this.entries.classify(full, stored), restore)
        }
        this.recorder.increment("misses")
        const load = this.loadAndFill(key, userKey, full, flight, lease)
        return this.flights.background(flight, load, () => Lease.releaseIfHeld(this.store, lease), restore)
      }
    })
  }

  /** A failed lease-read: served from the lookup, not cached. */
  readFailed(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E>,
    error: CacheUnavailable,
    restore: Restore
  ): Effect.Effect<Option.Option<A>, E> {
    if (error.operation !== "setIfAbsent") {
      return this.decide(key, userKey, full, flight, { _tag: "Unavailable", error }, restore)
    }
    // the key was read and found absent, the lease write refused (OOM, READONLY)
    this.recorder.increment("misses")
    return this.flights.background(flight, this.leaseRefused(key, userKey, full, error), undefined, restore)
  }

  /**
   * What a read that needs no lease of ours does, inside the leader's mask: answers now (a hit:
   * nothing in it can block, so it needs no restore), or loads in the background, this caller
   * counted as its waiter in the same step.
   */
  decide(
    key: K,
    userKey: string,
    full: string,
    flight: Flight<A, E>,
    found: Read<A>,
    restore: Restore
  ): Effect.Effect<Option.Option<A>, E> {
    return this.answerNow(key, userKey, full, found) ??
      this.flights.background(flight, this.resolve(key, userKey, full, flight, found), undefined, restore)
  }

  // ---------------------------------------------------------------------------------------------
  // the rest of the handle

  getMany = (keys: Iterable<K>): Effect.Effect<Array<Option.Option<A>>, E> => batch.getMany(this, keys)

  getOption = (key: K): Effect.Effect<Option.Option<Option.Option<A>>> =>
    Effect.suspend(() => {
      const full = this.keyOf(key)
      return Effect.map(this.read(full), (found) =>
        found._tag === "Found" && found.state !== "failSafe" ? Option.some(found.value) : Option.none())
    })

  refresh = (key: K): Effect.Effect<void, E> => refresh.now(this, key)

  set = (key: K, value: A): Effect.Effect<void, CacheUnavailable | Codec.CodecError> =>
    Effect.suspend(() => {
      const full = this.keyOf(key)
      this.invalidateLocal((flight) => flight.full === full)
      return this.invalidateNear(
        { _tag: "Set", key: full },
        Effect.flatMap(
          this.entries.ttlFor(Option.some(value)),
          (ttl): Effect.Effect<void, CacheUnavailable | Codec.CodecError> => {
            if (Option.isNone(ttl)) return Effect.asVoid(this.store.delete([full]))
            const encoded = this.entries.encode(full, Option.some(value), ttl.value, 0)
            if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
            const back = this.entries.decode(full, encoded.right.bytes)
            if (Either.isLeft(back)) return Effect.fail(back.left)
            return this.store.set(full, encoded.right.bytes, encoded.right.ttl)
          }
        )
      )
    })

  invalidate = (key: K): Effect.Effect<void, CacheUnavailable> =>
    Effect.suspend(() => {
      const full = this.keyOf(key)
      this.invalidateLocal((flight) => flight.full === full)
      return this.invalidateNear({ _tag: "Keys", keys: [full] }, Effect.asVoid(this.store.delete([full])))
    })

  invalidateAll: Effect.Effect<number, CacheUnavailable> = Effect.suspend(() => {
    this.invalidateLocal(() => true)
    return this.invalidateNear({ _tag: "All" }, this.store.deletePattern(this.keys.namespacePattern))
  })

  invalidatePattern = (pattern: string): Effect.Effect<number, CacheUnavailable> =>
    Effect.suspend(() => {
      const patterns = this.keys.patterns(pattern)
      if (Either.isLeft(patterns)) {
        // refused before anything is deleted: the store answered nothing, so no breaker counts it
        const cause = new RangeError(patterns.left)
        return Effect.fail(new CacheUnavailable({ operation: "invalidatePattern", cause, replied: true }))
      }
      // flights of the keys the store deletes (matched as Redis matches the full keys) do not cache
      const matchers = patterns.right.map((full) => Glob.matcher(full))
      this.invalidateLocal((flight) => matchers.some((matches) => matches(flight.full)))
      return Effect.reduce(patterns.right, 0, (count, full) =>
        Effect.map(
          this.invalidateNear({ _tag: "Pattern", pattern: full }, this.store.deletePattern(full)),
          (deleted) => count + deleted
        ))
    })

  /** The handle. */
  handle(): CacheAside<K, A, E> {
    const spanOptions = { kind: "client", attributes: this.logAnnotations, captureStackTrace: false } as const
    const get = this.get
    const getMany = this.getMany
    const handle: CacheAside<K, A, E> = {
      namespace: this.config.namespace,
      keyOf: this.keyOf,
      get: this.config.spanEveryGet ? (key) => Effect.withSpan(get(key), "cache_aside.get", spanOptions) : get,
      getMany: (keys) =>
        whenTraced(getMany(keys), (traced) => Effect.withSpan(traced, "cache_aside.get_many", spanOptions)),
      getOption: this.getOption,
      refresh: this.refresh,
      set: this.set,
      invalidate: this.invalidate,
      invalidateAll: this.invalidateAll,
      invalidatePattern: this.invalidatePattern
    }
    impls.set(handle, this)
    return handle
  }
}

const impls = new WeakMap<object, object>()

/**
 * The impl behind a handle: for the library's own tests (flights, background fibers), never for users.
 *
 * @internal
 */
export const implOf = <K, A, E>(handle: CacheAside<K, A, E>): CacheAsideImpl<K, A, E, unknown> | undefined =>
  impls.get(handle) as CacheAsideImpl<K, A, E, unknown> | undefined
