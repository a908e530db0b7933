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
 * Bounded twice: by entries (`maxQueued`) and by the memory they hold (`maxBytes`, an estimate: see
 * `entryBytes`; keys can be long, so a count alone does not bound memory). Keys remembered as
 * cleared count against the same bytes and are forgotten first (forgetting one only makes a read
 * delete its key again). Either bound reached is the same overflow: the queue collapses into the
 * overflow pattern, or drops its oldest entries, counted and logged.
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
  /** Estimated bytes of the keys in `cleared` (see `clearedBytes`). */
  clearedBytes: number
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
  /** The most bytes the queue holds (see `entryBytes`); default `defaultMaxBytes`. */
  readonly maxBytes?: number | undefined
  /** A pattern that covers every key: an overflowing queue collapses into it. */
  readonly overflowPattern: string | undefined
  readonly recorder: StoreRecorder
  readonly log: (effect: Effect.Effect<void>) => Effect.Effect<void>
}

/** The most keys remembered as cleared, over all queued patterns (past it, reads delete again). */
const maxCleared = 100_000

/** The default of `Config.maxBytes`: 16 MiB. */
export const defaultMaxBytes = 16 * 1024 * 1024

/**
 * Estimated heap bytes of a string: two per UTF-16 code unit (V8 stores text that fits Latin-1
 * with one, so this over-counts ASCII keys: the bound errs on the safe side).
 */
const stringBytes = (text: string): number => 2 * text.length

/** A fixed estimate of what an entry costs besides its strings: the object, its map and order slots. */
const entryOverhead = 128

/**
 * Estimated heap bytes of a queued entry: its strings (a key entry holds the key and its id, a
 * pattern its text, its id and its compiled matcher, counted as the text once more) and the
 * objects around them. Keys a pattern remembers as cleared are counted apart (`clearedBytes`).
 *
 * @internal
 */
export const entryBytes = (entry: Invalidation): number =>
  entry._tag === "Key"
    ? entryOverhead + stringBytes(entry.id) + stringBytes(entry.key)
    : entryOverhead + stringBytes(entry.id) + 2 * stringBytes(entry.pattern)

/** Estimated heap bytes of a key remembered as cleared: the string and its set slot. */
const clearedBytes = (key: string): number => 32 + stringBytes(key)

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
  /**
   * Estimated bytes of the removed entries `order` still holds: compacted once past a quarter of
   * `maxBytes`, so that removed long keys do not outlive the bound.
   */
  private dead = 0
  private readonly patterns = new Set<PatternInvalidation>()
  private cleared = 0
  /** Estimated bytes held: live entries and the keys their patterns remember as cleared. */
  private held = 0
  private readonly maxBytes: number
  /** The bound the current overflow episode hit first (named in its log line). */
  private overflowBound: "entries" | "bytes" = "entries"
  /** Invalidations dropped in the current overflow episode (which ends when the queue empties). */
  private dropped = 0
  private overflowLogged = false
  private replayedInEpisode = 0

  constructor(readonly config: Config) {
    this.maxBytes = config.maxBytes ?? defaultMaxBytes
  }

  get size(): number {
    return this.queue.size
  }

  /** Estimated bytes held (see `entryBytes`): never more than `maxBytes` after an `enqueue`. */
  get bytes(): number {
    return this.held
  }

  makePattern(pattern: string): PatternInvalidation {
    return {
      _tag: "Pattern",
      id: patternId(pattern),
      pattern,
      matches: Glob.matcher(pattern),
      cleared: new Set(),
      attempts: 0,
      clearedBytes: 0
    }
  }

  private put(entry: Invalidation): void {
    const previous = this.queue.get(entry.id)
    if (previous !== undefined) this.remove(previous)
    this.queue.set(entry.id, entry)
    this.held += entryBytes(entry)
    this.order.push(entry)
    this.compact()
    if (entry._tag === "Pattern") this.patterns.add(entry)
  }

  private remove(entry: Invalidation): void {
    this.queue.delete(entry.id)
    this.held -= entryBytes(entry)
    this.dead += entryBytes(entry)
    if (entry._tag === "Pattern") {
      this.patterns.delete(entry)
      this.cleared -= entry.cleared.size
      this.held -= entry.clearedBytes
      // `order` may keep the entry a while: not its keys (a claim in flight skips a removed entry)
      entry.cleared.clear()
      entry.clearedBytes = 0
    }
    this.compact()
  }

  /** Drops removed entries (re-queued keys, replayed ones) from `order` now and then. */
  private compact(): void {
    if (this.order.length > 2 * this.queue.size + 1024 || this.dead > this.maxBytes / 4) {
      this.order = this.order.filter((queued) => this.isLive(queued))
      this.head0 = 0
      this.dead = 0
    }
  }

  private forgetCleared(entry: PatternInvalidation, key: string): void {
    if (entry.cleared.delete(key)) {
      this.cleared--
      entry.clearedBytes -= clearedBytes(key)
      this.held -= clearedBytes(key)
    }
  }

  /** Which bound the queue is past, if any. */
  private pastBound(): "entries" | "bytes" | undefined {
    return this.queue.size > this.config.maxQueued ? "entries" : this.held > this.maxBytes ? "bytes" : undefined
  }

  /**
   * Brings the queue back within its bounds: first forgets the keys remembered as cleared (reads
   * delete them again, nothing is lost), then overflows: collapses into the overflow pattern
   * (once: a pattern longer than the bound stays, alone), or drops the oldest entries until it fits.
   */
  private fit(): void {
    let past = this.pastBound()
    if (past === undefined) return
    if (past === "bytes" && this.cleared > 0) {
      for (const pattern of this.patterns) {
        this.held -= pattern.clearedBytes
        pattern.cleared.clear()
        pattern.clearedBytes = 0
      }
      this.cleared = 0
      past = this.pastBound()
    }
    if (past !== undefined && !this.overflowLogged) this.overflowBound = past
    while (past !== undefined && this.queue.size > 0) {
      this.overflow()
      if (this.config.overflowPattern !== undefined) return
      past = this.pastBound()
    }
  }

  private isLive(entry: Invalidation): boolean {
    return this.queue.get(entry.id) === entry
  }

  /** The oldest live entry; drops the removed ones before it for good (compacting now and then). */
  private oldest(): Invalidation | undefined {
    while (this.head0 < this.order.length && !this.isLive(this.order[this.head0]!)) this.head0++
    if (this.head0 > 1024 && this.head0 * 2 > this.order.length) {
      for (let i = 0; i < this.head0; i++) this.dead -= entryBytes(this.order[i]!) // all removed
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
    // one slot goes to the pattern that replaces them (an entry alone past the bytes is replaced too)
    this.dropped += Math.max(1, this.queue.size - 1)
    this.queue.clear()
    this.order = []
    this.head0 = 0
    this.dead = 0
    this.patterns.clear()
    this.cleared = 0
    this.held = 0
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
          this.forgetCleared(covering, (entry as KeyInvalidation).key)
          continue
        }
        this.put(entry)
        queued++
        this.fit()
      }
      const recorder = this.config.recorder
      if (queued > 0) recorder.increment("invalidationsQueued", queued)
      this.recordSize()
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

  private recordSize(): void {
    const recorder = this.config.recorder
    recorder.setQueueSize(this.queue.size)
    recorder.setQueueBytes?.(this.held)
  }

  private overflowMessage(): string {
    const { maxQueued, overflowPattern } = this.config
    const bound = this.overflowBound === "entries" ? `${maxQueued}` : `${this.maxBytes} bytes`
    return overflowPattern !== undefined
      ? `cache-aside: invalidation queue full (${bound}); replaced by one delete of "${overflowPattern}", ` +
        "the whole cache will be cleared when the store answers (logged once per overflow)"
      : `cache-aside: invalidation queue full (${bound}); dropping the oldest invalidations, their keys may be ` +
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
            if (
              this.cleared < maxCleared && this.held + clearedBytes(key) <= this.maxBytes &&
              !entry.cleared.has(key) && entry.matches(key)
            ) {
              entry.cleared.add(key)
              entry.clearedBytes += clearedBytes(key)
              this.held += clearedBytes(key)
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
    this.recordSize()
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
