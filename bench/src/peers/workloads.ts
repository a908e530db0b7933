/**
 * The peers benchmark's workloads (A to E) and the rows they read: what a run asks for, which key
 * each get reads, and how long the lookup (the "database") takes.
 */

/** The value every contender caches: plain JSON, so no contender decodes more than another. */
export interface Row {
  readonly id: string
  readonly name: string
  readonly email: string
  readonly score: number
}

/** The row of a key, as the data store would return it. */
export const rowOf = (id: string): Row => ({ id, name: `User ${id}`, email: `user-${id}@example.com`, score: 42 })

export type WorkloadId = "A" | "B" | "C" | "D" | "E"

/** What a workload measures: throughput (ops/s, higher is better) or client CPU per get (lower is better). */
export type Metric = "throughput" | "cpu"

export interface Workload {
  readonly id: WorkloadId
  readonly title: string
  /** Gets in flight at once (workers, or fibers, each looping). */
  readonly concurrency: number
  /** How long the lookup takes (0: answers at once). */
  readonly lookupMillis: number
  readonly metric: Metric
  /**
   * `time`: a run lasts the run duration (the keys do not depend on how many gets ran);
   * `ops`: a run makes a fixed number of gets (C: the hit ratio depends on it).
   */
  readonly budget: { readonly _tag: "time"; readonly millis: number } | {
    readonly _tag: "ops"
    readonly ops: number
  }
  /** The keys of one run: `epoch` is unique per run, so a run that needs cold keys gets fresh ones. */
  readonly keys: (epoch: number) => (i: number) => string
  /** Whether each run starts from an empty Redis (miss workloads: FLUSHALL, so keys do not pile up). */
  readonly flushBeforeRun: boolean
}

export const ZIPF_KEYS = 5000
export const ZIPF_EXPONENT = 0.99

/** mulberry32: a small seeded generator, so every run and contender gets the same key sequence. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** `count` draws of a Zipf(`exponent`) distribution over ranks 0..n-1 (rank 0 the most popular). */
export const zipfSequence = (n: number, exponent: number, count: number, seed = 1): Int32Array => {
  const cdf = new Float64Array(n)
  let total = 0
  for (let rank = 0; rank < n; rank++) {
    total += 1 / Math.pow(rank + 1, exponent)
    cdf[rank] = total
  }
  const random = seeded(seed)
  const out = new Int32Array(count)
  for (let i = 0; i < count; i++) {
    const target = random() * total
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid]! < target) lo = mid + 1
      else hi = mid
    }
    out[i] = lo
  }
  return out
}

/** How many distinct keys the first `count` draws touch: the misses of a cold run that coalesces perfectly. */
export const distinctIn = (sequence: Int32Array, count: number): number => {
  const seen = new Set<number>()
  for (let i = 0; i < count && i < sequence.length; i++) seen.add(sequence[i]!)
  return seen.size
}

export interface Sizes {
  /** Duration of a time-budgeted run. */
  readonly runMillis: number
  /** Gets per run of C. */
  readonly zipfOps: number
}

export const makeWorkloads = (sizes: Sizes): ReadonlyArray<Workload> => {
  const zipf = zipfSequence(ZIPF_KEYS, ZIPF_EXPONENT, sizes.zipfOps)
  const time = { _tag: "time", millis: sizes.runMillis } as const
  const hot = () => () => "hot"
  const fresh = (epoch: number) => (i: number) => `m${epoch}:${i}`
  return [
    {
      id: "A",
      title: "A: one hot key, sequential",
      concurrency: 1,
      lookupMillis: 0,
      metric: "throughput",
      budget: time,
      keys: hot,
      flushBeforeRun: false
    },
    {
      id: "B",
      title: "B: one hot key, 64 in flight",
      concurrency: 64,
      lookupMillis: 0,
      metric: "throughput",
      budget: time,
      keys: hot,
      flushBeforeRun: false
    },
    {
      id: "C",
      title: `C: Zipf(${ZIPF_EXPONENT}) over ${ZIPF_KEYS.toLocaleString("en-US")} keys, 32 in flight, 1 ms lookup`,
      concurrency: 32,
      lookupMillis: 1,
      metric: "throughput",
      budget: { _tag: "ops", ops: sizes.zipfOps },
      keys: (epoch) => (i) => `z${epoch}:${zipf[i % zipf.length]!}`,
      flushBeforeRun: false
    },
    {
      id: "D",
      title: "D: misses only, sequential",
      concurrency: 1,
      lookupMillis: 0,
      metric: "cpu",
      budget: time,
      keys: fresh,
      flushBeforeRun: true
    },
    {
      id: "E",
      title: "E: misses only, 32 in flight",
      concurrency: 32,
      lookupMillis: 0,
      metric: "cpu",
      budget: time,
      keys: fresh,
      flushBeforeRun: true
    }
  ]
}
