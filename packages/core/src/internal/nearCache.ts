/**
 * The near cache (L1): decoded values of one cache, in process memory, in front of the store.
 *
 * - Bounded by entries and by approximate bytes (the size of the stored bytes), least recently
 *   used first out. `lru-cache` keeps the bounds only: expiry is checked here against the time the
 *   caller passes (Effect's `Clock`), because lru-cache's own TTL runs on `performance.now`.
 * - An entry never outlives its store entry's logical expiry nor the near cache's `ttl`.
 * - Coherence within the process: every eviction bumps an epoch. A read takes a `token` (the epoch)
 *   before it asks the store; its result is put into L1 only if nothing it covers was evicted
 *   since, so a read that raced an invalidation never caches what the invalidation removed.
 * - While the bus is unhealthy the L1 is bypassed: `get` answers nothing and `set` stores nothing.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import type * as Option from "effect/Option"
import { Buffer } from "node:buffer"
import type { Invalidation } from "../CacheBus.js"
import * as Glob from "../Glob.js"
import { Lru } from "./lru.js"
import * as validate from "./validate.js"

/** @internal */
export interface Options {
  readonly maxEntries: number
  readonly maxBytes?: number | undefined
  readonly ttl: Duration.DurationInput
}

/** @internal */
export interface Resolved {
  readonly maxEntries: number
  readonly maxBytes: number | undefined
  readonly ttlMillis: number
}

/** Validates the user's options; the message names the option. @internal */
export const resolve = (options: Options): Either.Either<Resolved, string> =>
  Either.gen(function*() {
    const maxEntries = yield* validate.integer("nearCache.maxEntries", options.maxEntries, 1)
    const maxBytes = options.maxBytes === undefined
      ? undefined
      : yield* validate.integer("nearCache.maxBytes", options.maxBytes, 1)
    const ttl = yield* validate.duration("nearCache.ttl", options.ttl, { min: 1 })
    return { maxEntries, maxBytes, ttlMillis: Duration.toMillis(ttl) }
  })

interface Slot<A> {
  readonly value: Option.Option<A>
  readonly expiresAt: number
}

/**
 * The matching steps a pattern eviction may take at worst (pattern bytes × the entries' key
 * bytes, in UTF-8); above it, the near cache is cleared instead: 10,000 entries of 50-character keys
 * allow a pattern of 200 characters. (Not timed here; the unit test bounds a hostile pattern's
 * eviction, cleared, under 2 s with generous slack.)
 */
const maxPatternWork = 100_000_000

/** Invalidated keys remembered for racing reads; past this many, one flush epoch replaces them. */
const maxRemembered = 4096

/** What the near cache reports (metrics). @internal */
export interface Events {
  /** Entries removed by an invalidation from elsewhere (another process, a write by any client). */
  readonly evicted: (count: number) => void
  /** The L1 was flushed because the bus lost (or regained) its connection. */
  readonly flushed: () => void
  /** A get of a key the L1 holds was not answered from it: the bus was not current. */
  readonly bypassed: () => void
}

/** @internal */
export class NearCache<A> {
  private readonly lru: Lru<Slot<A>>
  private epoch = 0
  /** Reads that began at or before this epoch must not fill. */
  private floor = 0
  /** Per-key epochs of recent evictions. */
  private readonly evictedAt = new Map<string, number>()
  /** Tokens of store reads that began and have not filled yet. */
  private readonly pending = new Map<string, number>()

  constructor(
    readonly options: Resolved,
    private readonly healthy: () => boolean,
    private readonly events: Events
  ) {
    this.lru = new Lru<Slot<A>>({ maxEntries: options.maxEntries, maxSize: options.maxBytes })
  }

  /** The number of entries held (expired ones included until they are touched). */
  get size(): number {
    return this.lru.size
  }

  /** Taken before a store read: `set` later checks that nothing was evicted since. */
  token(): number {
    return this.epoch
  }

  /**
   * Marks the start of a store read of `key` (the read path's one read step): the token that a
   * later `fill` of the key checks. An earlier read still pending keeps its (older, stricter) token.
   */
  begin(key: string): void {
    if (this.pending.has(key)) return
    if (this.pending.size >= maxRemembered) this.pending.clear() // forgotten reads just do not fill
    this.pending.set(key, this.epoch)
  }

  /**
   * A fresh value of `key` was read or filled: kept if a read of the key began (`begin`) and
   * nothing it covers was evicted since. A fill no read began is not kept.
   */
  fill(key: string, value: Option.Option<A>, expiresAt: number, size: number, now: number): void {
    const token = this.pending.get(key)
    if (token === undefined) return
    this.pending.delete(key)
    this.set(key, value, expiresAt, size, token, now)
  }

  /** The value held for `key`, if fresh at `now` and the bus is healthy; `undefined` otherwise. */
  get(key: string, now: number): Option.Option<A> | undefined {
    if (this.lru.size === 0) return undefined
    if (!this.healthy()) {
      // held, but the bus is not current (lost, silent, or this process stalled): not answered
      if (this.lru.peek(key) !== undefined) this.events.bypassed()
      return undefined
    }
    const slot = this.lru.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= now) {
      this.lru.delete(key)
      return undefined
    }
    return slot.value
  }

  /**
   * Keeps `value` until `expiresAt` (the store entry's logical expiry), at most `ttl` from `now`,
   * unless `key` was evicted since `token` or the bus is unhealthy. `size` is approximate bytes.
   */
  set(key: string, value: Option.Option<A>, expiresAt: number, size: number, token: number, now: number): void {
    if (token < this.floor || (this.evictedAt.get(key) ?? -1) > token || !this.healthy()) return
    const until = Math.min(expiresAt, now + this.options.ttlMillis)
    if (!(until > now)) return
    if (this.options.maxBytes !== undefined && !(size >= 1 && size <= this.options.maxBytes)) return
    const slot: Slot<A> = { value, expiresAt: until }
    this.lru.set(key, slot, size)
  }

  /** Removes keys (a local write, or a message); every read that began before cannot fill them. */
  evictKeys(keys: ReadonlyArray<string>): number {
    // more keys than are remembered: one flush epoch would replace them anyway
    if (keys.length > maxRemembered) return this.clear()
    const epoch = ++this.epoch
    let removed = 0
    for (const key of keys) {
      if (this.lru.delete(key)) removed++
      this.evictedAt.set(key, epoch)
    }
    if (this.evictedAt.size > maxRemembered) this.raiseFloor()
    return removed
  }

  /**
   * Removes the keys a glob pattern (over full keys) matches. Matching costs up to (pattern length
   * × key length) steps per entry: a pattern long enough to make that seconds over the whole cache
   * (a hostile bus message) clears the cache instead, which removes everything it could match.
   */
  evictPattern(pattern: string): number {
    const keys = this.lru.keys()
    // matched as Redis matches, over UTF-8 bytes: this process evicts what its own delete removed
    // from Redis (which sends this process no invalidation for it) and what a message names
    const bytes = Glob.utf8Bytes(pattern)
    let chars = 0
    for (const key of keys) chars += Buffer.byteLength(key, "utf8")
    if (bytes.length * chars > maxPatternWork) return this.clear()
    const matches = Glob.bytesMatcher(bytes)
    this.raiseFloor()
    let removed = 0
    for (const key of keys) {
      if (matches(Glob.utf8Bytes(key)) && this.lru.delete(key)) removed++
    }
    return removed
  }

  /** Removes everything; no read that began before may fill. */
  clear(): number {
    const removed = this.lru.size
    this.raiseFloor()
    this.lru.clear()
    return removed
  }

  /** Applies an invalidation (this process's own write); answers how many entries it removed. */
  evict(invalidation: Invalidation): number {
    switch (invalidation._tag) {
      case "Keys":
        return this.evictKeys(invalidation.keys)
      case "Set":
        return this.evictKeys([invalidation.key])
      case "Pattern":
        return this.evictPattern(invalidation.pattern)
      case "All":
        return this.clear()
    }
  }

  /** Applies an invalidation from elsewhere (another process, a write by any client), counted. */
  apply(invalidation: Invalidation): void {
    const removed = this.evict(invalidation)
    if (removed > 0) this.events.evicted(removed)
  }

  /** The bus lost or regained its connection. */
  flush(): void {
    this.clear()
    this.events.flushed()
  }

  private raiseFloor(): void {
    this.floor = ++this.epoch
    this.evictedAt.clear()
  }
}
