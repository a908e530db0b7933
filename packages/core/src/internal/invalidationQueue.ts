/**
 * The invalidation queue of `ResilientCacheStore`: the deletes (keys and patterns) that could not
 * reach the store, kept until they can. Bounded, deduplicated (one entry per key or pattern, at its
 * latest position), replayed in order by one background fiber.
 *
 * Reads and writes do not wait for the whole queue: an operation only needs the invalidations of
 * its own keys applied first. `claim(keys)` answers which of them a queued invalidation covers (a
 * queued key, or a queued pattern that matches it and that has not been applied to that key yet).
 * The store then either waits (briefly) for the replay, or deletes those keys itself (one cheap
 * `delete`) and `settle(claim)` records it: a key entry is done, a pattern notes the key as
 * cleared, so later reads of that key (and the fill that follows the miss) are not deleted again
 * by the read path. Keys no queued invalidation covers are never held up.
 *
 * Logs are proportional to incidents, not to traffic: one warning when the queue starts, one error
 * when an overflow episode starts and one summary (with the count dropped) when it ends.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { CacheUnavailable } from "../CacheStore.js"
import * as Glob from "../Glob.js"
import type { StoreRecorder } from "../Metrics.js"

/** @internal */
export interface KeyInvalidation {
  readonly _tag: "Key"
  readonly id: string
  readonly key: string
}

/** @internal */
export interface PatternInvalidation {
  readonly _tag: "Pattern"
  readonly id: string
  readonly pattern: string
  readonly matches: (key: string) => boolean
  /** Keys the read path already deleted for this pattern: not deleted again until it is replayed. */
  readonly cleared: Set<string>
  /** Failed replay attempts (each gets a longer time limit). */
  attempts: number
}

/** @internal */
export type Invalidation = KeyInvalidation | PatternInvalidation

/**
 * Keys of an operation that queued invalidations cover, with the entries seen: settled after the
 * store deleted the keys.
 *
 * @internal
 */
export interface Claim {
  readonly keys: ReadonlyArray<string>
  readonly entries: ReadonlyArray<Invalidation>
  /** Whether a queued pattern covers one of the keys (not only queued keys). */
  readonly patterns: boolean
}

/** @internal */
export interface Config {
  readonly maxQueued: number
  /** A pattern that covers every key: an overflowing queue collapses into it. */
  readonly overflowPattern: string | undefined
  readonly recorder: StoreRecorder
  readonly log: (effect: Effect.Effect<void>) => Effect.Effect<void>
}

/** The most keys remembered as cleared, over all queued patterns (past it, reads delete again). */
const maxCleared = 100_000

const keyId = (key: string) => `k:${key}`
const patternId = (pattern: string) => `p:${pattern}`

/** @internal */
export class InvalidationQueue {
  /** The live entry per key or pattern. */
  private readonly queue = new Map<string, Invalidation>()
  /**
   * The order: FIFO, a re-queued key or pattern moves to the end. Removed entries stay in the array
   * until the head passes them (an entry is live while `queue` maps its id to it), so dropping the
   * oldest and re-queueing are O(1) amortised; a `Map` iterated from its start after many deletes
   * from its front is not.
   */
  private order: Array<Invalidation> = []
  private head0 = 0
  private readonly patterns = new Set<PatternInvalidation>()
  private cleared = 0
  /** Invalidations dropped in the current overflow episode (which ends when the queue empties). */
  private dropped = 0
  private overflowLogged = false
  private replayedInEpisode = 0

  constructor(readonly config: Config) {}

  get size(): number {
    return this.queue.size
  }

  makePattern(pattern: string): PatternInvalidation {
    return {
      _tag: "Pattern",
      id: patternId(pattern),
      pattern,
      matches: Glob.matcher(pattern),
      cleared: new Set(),
      attempts: 0
    }
  }

  private put(entry: Invalidation): void {
    const previous = this.queue.get(entry.id)
    if (previous !== undefined) this.remove(previous)
    this.queue.set(entry.id, entry)
    this.order.push(entry)
    // removed entries past the head (re-queued keys, replayed ones) are dropped now and then
    if (this.order.length > 2 * this.queue.size + 1024) {
      this.order = this.order.filter((queued) => this.isLive(queued))
      this.head0 = 0
    }
    if (entry._tag === "Pattern") this.patterns.add(entry)
  }

  private remove(entry: Invalidation): void {
    this.queue.delete(entry.id)
    if (entry._tag === "Pattern") {
      this.patterns.delete(entry)
      this.cleared -= entry.cleared.size
    }
  }

  private isLive(entry: Invalidation): boolean {
    return this.queue.get(entry.id) === entry
  }

  /** The oldest live entry; drops the removed ones before it for good (compacting now and then). */
  private oldest(): Invalidation | undefined {
    while (this.head0 < this.order.length && !this.isLive(this.order[this.head0]!)) this.head0++
    if (this.head0 > 1024 && this.head0 * 2 > this.order.length) {
      this.order = this.order.slice(this.head0)
      this.head0 = 0
    }
    return this.order[this.head0]
  }

  /** The overflow pattern, when it is queued. */
  private overflowEntry(): PatternInvalidation | undefined {
    const pattern = this.config.overflowPattern
    const entry = pattern === undefined ? undefined : this.queue.get(patternId(pattern))
    return entry?._tag === "Pattern" ? entry : undefined
  }

  /** Makes room: drops the oldest entry, or collapses everything into the overflow pattern. */
  private overflow(): void {
    const pattern = this.config.overflowPattern
    if (pattern === undefined) {
      this.remove(this.oldest()!)
      this.dropped++
      return
    }
    this.dropped += this.queue.size - 1 // one slot goes to the pattern that replaces them
    this.queue.clear()
    this.order = []
    this.head0 = 0
    this.patterns.clear()
    this.cleared = 0
    this.put(this.makePattern(pattern))
  }

  /** Queues invalidations that could not reach the store; logs only when an episode starts. */
  enqueue(entries: ReadonlyArray<Invalidation>, error: CacheUnavailable): Effect.Effect<void> {
    return Effect.suspend(() => {
      const wasEmpty = this.queue.size === 0
      const droppedBefore = this.dropped
      let queued = 0
      for (const entry of entries) {
        // a key the queued overflow pattern covers needs no entry: make reads delete it again
        const covering = entry._tag === "Key" ? this.overflowEntry() : undefined
        if (covering !== undefined && covering.matches((entry as KeyInvalidation).key)) {
          if (covering.cleared.delete((entry as KeyInvalidation).key)) this.cleared--
          continue
        }
        this.put(entry)
        queued++
        if (this.queue.size > this.config.maxQueued) this.overflow()
      }
      const recorder = this.config.recorder
      if (queued > 0) recorder.increment("invalidationsQueued", queued)
      recorder.setQueueSize(this.queue.size)
      const logs: Array<Effect.Effect<void>> = []
      if (wasEmpty && this.queue.size > 0) {
        logs.push(Effect.logWarning(
          "cache-aside: invalidations could not reach the store; queued for replay (logged once until the queue empties)",
          error.message
        ))
      }
      if (this.dropped > droppedBefore) {
        recorder.increment("queueOverflows", this.dropped - droppedBefore)
        if (!this.overflowLogged) {
          this.overflowLogged = true
          logs.push(Effect.logError(this.overflowMessage()))
        }
      }
      return logs.length === 0 ? Effect.void : this.config.log(Effect.all(logs, { discard: true }))
    })
  }

  private overflowMessage(): string {
    const { maxQueued, overflowPattern } = this.config
    return overflowPattern !== undefined
      ? `cache-aside: invalidation queue full (${maxQueued}); replaced by one delete of "${overflowPattern}", ` +
        "the whole cache will be cleared when the store answers (logged once per overflow)"
      : `cache-aside: invalidation queue full (${maxQueued}); dropping the oldest invalidations, their keys may be ` +
        "served stale until they expire (set overflowPattern to clear the cache instead; logged once per overflow, " +
        "with the count when it ends)"
  }

  /** Which of `keys` queued invalidations cover; `undefined` when none (the common case: one check). */
  claim(keys: ReadonlyArray<string>): Claim | undefined {
    if (this.queue.size === 0) return undefined
    let claimed: Array<string> | undefined
    // a pattern that covers many of the keys is one entry: `settle` walks entries × keys
    let entries: Set<Invalidation> | undefined
    let patterns = false
    for (const key of keys) {
      let covered = false
      const entry = this.queue.get(keyId(key))
      if (entry !== undefined) {
        covered = true
        ;(entries ??= new Set()).add(entry)
      }
      for (const pattern of this.patterns) {
        if (!pattern.cleared.has(key) && pattern.matches(key)) {
          covered = true
          patterns = true
          ;(entries ??= new Set()).add(pattern)
        }
      }
      if (covered) (claimed ??= []).push(key)
    }
    return claimed === undefined ? undefined : { keys: claimed, entries: Array.from(entries!), patterns }
  }

  /** The claimed keys were deleted: their key entries are done, their patterns note them as cleared. */
  settle(claim: Claim): Effect.Effect<void> {
    return Effect.suspend(() => {
      let done = 0
      for (const entry of claim.entries) {
        if (this.queue.get(entry.id) !== entry) continue // replayed, or queued again meanwhile
        if (entry._tag === "Key") {
          this.remove(entry)
          done++
        } else {
          for (const key of claim.keys) {
            if (this.cleared < maxCleared && !entry.cleared.has(key) && entry.matches(key)) {
              entry.cleared.add(key)
              this.cleared++
            }
          }
        }
      }
      return done === 0 ? Effect.void : this.replayed(done)
    })
  }

  /** The head of the queue: one pattern, or a batch of consecutive keys; `undefined` when empty. */
  head(batchSize: number): PatternInvalidation | ReadonlyArray<KeyInvalidation> | undefined {
    const first = this.oldest()
    if (first === undefined) return undefined
    if (first._tag === "Pattern") return first
    const batch: Array<KeyInvalidation> = []
    for (let i = this.head0; i < this.order.length && batch.length < batchSize; i++) {
      const entry = this.order[i]!
      if (!this.isLive(entry)) continue
      if (entry._tag !== "Key") break
      batch.push(entry)
    }
    return batch
  }

  /** Entries the store has applied: removed unless queued again meanwhile (a newer invalidation). */
  applied(entries: ReadonlyArray<Invalidation>): Effect.Effect<void> {
    return Effect.suspend(() => {
      let done = 0
      for (const entry of entries) {
        if (this.queue.get(entry.id) === entry) {
          this.remove(entry)
          done++
        }
      }
      return this.replayed(done)
    })
  }

  /** Counts replayed entries; when the queue empties, ends the episode with one summary line. */
  private replayed(count: number): Effect.Effect<void> {
    const recorder = this.config.recorder
    recorder.increment("invalidationsReplayed", count)
    recorder.setQueueSize(this.queue.size)
    this.replayedInEpisode += count
    if (this.queue.size > 0) return Effect.void
    const replayed = this.replayedInEpisode
    const dropped = this.dropped
    this.replayedInEpisode = 0
    this.dropped = 0
    this.overflowLogged = false
    if (dropped === 0) return this.config.log(Effect.logInfo(`cache-aside: invalidation queue replayed (${replayed})`))
    return this.config.log(Effect.logError(
      this.config.overflowPattern === undefined
        ? `cache-aside: invalidation queue replayed (${replayed}); ${dropped} invalidation(s) were dropped while it was full`
        : `cache-aside: invalidation queue replayed (${replayed}); ${dropped} invalidation(s) were replaced by the ` +
          "overflow pattern while it was full"
    ))
  }
}
