/**
 * A least-recently-used map bounded by entries and, when given, by a size (approximate bytes): the
 * memory store, the near cache and the decode memo keep their entries in one.
 *
 * It is `lru-cache` without that library's `max` option, which preallocates arrays of `max` slots
 * when the cache is made: measured, `max: 1e8` took 2.6 GB and 20 s before the first entry, and
 * `max: 1e9` aborted the process (V8's fatal out-of-memory, nothing to catch). An entry bound set
 * too high is an option mistake, and must not crash a process: here memory follows what is held.
 * Entries are bounded by `lru-cache`'s own size bound (one unit per entry) when there is no byte
 * bound, else by dropping the least recently used entry (`pop`, constant time) past `maxEntries`.
 *
 * @internal
 */
import { LRUCache } from "lru-cache"

/** @internal */
export interface Bounds {
  readonly maxEntries: number
  /** The most size units (bytes) held; `undefined`: bounded by entries only. */
  readonly maxSize?: number | undefined
  /** The largest entry kept (default `maxSize`); a larger one is not stored and removes the key's older entry. */
  readonly maxEntrySize?: number | undefined
}

/** @internal */
export class Lru<V extends object> {
  private readonly cache: LRUCache<string, V>
  /** Whether entries are counted by hand (a byte bound is on, so `lru-cache`'s size is bytes). */
  private readonly countEntries: boolean

  constructor(readonly bounds: Bounds) {
    const { maxEntries, maxEntrySize, maxSize } = bounds
    this.countEntries = maxSize !== undefined
    this.cache = maxSize === undefined
      ? new LRUCache<string, V>({ maxSize: maxEntries, sizeCalculation: () => 1 })
      : new LRUCache<string, V>({ maxSize, maxEntrySize: maxEntrySize ?? maxSize })
  }

  get size(): number {
    return this.cache.size
  }

  /** The size units held (bytes), or the entries when there is no byte bound. */
  get calculatedSize(): number {
    return this.cache.calculatedSize
  }

  /** The entry, made the most recently used. */
  get(key: string): V | undefined {
    return this.cache.get(key)
  }

  /** The entry, its recency unchanged. */
  peek(key: string): V | undefined {
    return this.cache.peek(key)
  }

  /**
   * Stores `value` as the most recently used entry (`size` units, at least 1; ignored without a
   * byte bound), dropping the least recently used past either bound.
   */
  set(key: string, value: V, size = 1): void {
    if (!this.countEntries) {
      this.cache.set(key, value)
      return
    }
    this.cache.set(key, value, { size: Math.max(1, size) })
    while (this.cache.size > this.bounds.maxEntries) this.cache.pop()
  }

  delete(key: string): boolean {
    return this.cache.delete(key)
  }

  clear(): void {
    this.cache.clear()
  }

  /** The keys, most recently used first (a snapshot: safe to delete while walking it). */
  keys(): Array<string> {
    return Array.from(this.cache.keys())
  }
}
