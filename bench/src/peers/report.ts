/**
 * The peers benchmark's figures: per cell (workload × mode × contender) the medians of the
 * measured rounds, and the median of the per-round ratios to raw ioredis (each round's contender
 * against raw in the same round). Renders the markdown tables and the chart's input.
 */
import type { ChartInput } from "./chart.js"
import type { Mode, Sample } from "./runner.js"
import type { Workload, WorkloadId } from "./workloads.js"

export interface Cell {
  readonly workload: WorkloadId
  readonly mode: Mode
  readonly contender: string
  readonly samples: ReadonlyArray<Sample>
  readonly opsPerSecond: number
  readonly cpuMicrosPerOp: number
  readonly redisCommandsPerOp: number
  readonly redisCpuMicrosPerOp: number
  readonly lookupsPerRun: number
  readonly wrong: number
  /** Store operations that failed during the measured rounds (CacheAside's `cacheErrors`): those gets fell back. */
  readonly storeErrors: number
  readonly errors: ReadonlyArray<string>
  /**
   * Median over rounds of (this round's figure ÷ raw's figure in the same round): ops/s for a
   * throughput workload (> 1: faster than raw), CPU per get for a CPU workload (< 1: cheaper).
   */
  readonly ratio: number
}

/** A run of the cell threw, answered a wrong row, or saw store errors (its gets fell back to the lookup). */
const flagged = (cell: Cell): boolean => cell.errors.length > 0 || cell.wrong > 0 || cell.storeErrors > 0

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const makeCell = (
  workload: Workload,
  mode: Mode,
  contender: string,
  samples: ReadonlyArray<Sample>,
  rawSamples: ReadonlyArray<Sample>
): Cell => {
  const figure = (s: Sample) => workload.metric === "throughput" ? s.opsPerSecond : s.cpuMicrosPerOp
  const valid = (s: Sample | undefined): s is Sample => s !== undefined && s.error === undefined && s.ops > 0
  const ratios = samples.flatMap((s, round) => {
    const rawSample = rawSamples[round]
    return valid(s) && valid(rawSample) ? [figure(s) / figure(rawSample)] : []
  })
  const ok = samples.filter(valid)
  return {
    workload: workload.id,
    mode,
    contender,
    samples,
    opsPerSecond: median(ok.map((s) => s.opsPerSecond)),
    cpuMicrosPerOp: median(ok.map((s) => s.cpuMicrosPerOp)),
    redisCommandsPerOp: median(ok.map((s) => s.redisCommandsPerOp)),
    redisCpuMicrosPerOp: median(ok.map((s) => s.redisCpuMicrosPerOp)),
    lookupsPerRun: median(ok.map((s) => s.lookups)),
    wrong: samples.reduce((n, s) => n + s.wrong, 0),
    storeErrors: samples.reduce((n, s) => n + (s.counters["cacheErrors"] ?? 0), 0),
    errors: samples.flatMap((s) => s.error === undefined ? [] : [s.error]),
    ratio: median(ratios)
  }
}

const ops = (n: number) => Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a"
const times = (n: number) => Number.isFinite(n) ? `${n >= 10 ? n.toFixed(1) : n.toFixed(2)}×` : "n/a"
const micros = (n: number) => Number.isFinite(n) ? `${n >= 100 ? n.toFixed(0) : n.toFixed(1)} µs` : "n/a"

export interface Labels {
  readonly contenders: ReadonlyArray<{ readonly id: string; readonly label: string }>
  readonly workloads: ReadonlyArray<Workload>
}

const find = (cells: ReadonlyArray<Cell>, workload: WorkloadId, mode: Mode, contender: string) =>
  cells.find((c) => c.workload === workload && c.mode === mode && c.contender === contender)

const header = (labels: Labels, first: string) => [
  `| ${first} | ${labels.workloads.map((w) => w.title).join(" | ")} |`,
  `| --- | ${labels.workloads.map(() => "---:").join(" | ")} |`
]

/** Ratios to raw (bold) and the absolute figure: ops/s for A–C, client CPU per miss for D–E. */
export const ratioTable = (cells: ReadonlyArray<Cell>, labels: Labels, mode: Mode): string => {
  const rows = labels.contenders.flatMap((contender) => {
    const row = labels.workloads.map((w) => {
      const cell = find(cells, w.id, mode, contender.id)
      if (cell === undefined) return "–"
      const flag = flagged(cell) ? " ⚠" : ""
      return w.metric === "throughput"
        ? `**${times(cell.ratio)}** ${ops(cell.opsPerSecond)}/s${flag}`
        : `${micros(cell.cpuMicrosPerOp)} **${times(cell.ratio)}**${flag}`
    })
    return row.every((r) => r === "–") ? [] : [`| ${contender.label} | ${row.join(" | ")} |`]
  })
  return [...header(labels, "contender"), ...rows].join("\n")
}

/** What each get cost: client CPU per get, Redis commands per get, and Redis CPU per get. */
export const costTable = (cells: ReadonlyArray<Cell>, labels: Labels, mode: Mode): string => {
  const rows = labels.contenders.flatMap((contender) => {
    const row = labels.workloads.map((w) => {
      const cell = find(cells, w.id, mode, contender.id)
      if (cell === undefined) return "–"
      const lookups = w.id === "C" ? `, ${ops(cell.lookupsPerRun)} lookups` : ""
      return `${micros(cell.cpuMicrosPerOp)}, ${cell.redisCommandsPerOp.toFixed(2)} cmd, ` +
        `${micros(cell.redisCpuMicrosPerOp)}${lookups}`
    })
    return row.every((r) => r === "–") ? [] : [`| ${contender.label} | ${row.join(" | ")} |`]
  })
  return [...header(labels, "client CPU / get, Redis commands / get, Redis CPU / get"), ...rows].join("\n")
}

/** The chart's bars: × raw with higher = better (CPU workloads inverted: raw's CPU ÷ the contender's). */
export const chartInput = (
  cells: ReadonlyArray<Cell>,
  labels: Labels,
  modes: ReadonlyArray<Mode>,
  title: string,
  subtitle: string
): ChartInput => ({
  title,
  subtitle,
  contenders: labels.contenders,
  panels: modes.map((mode) => ({
    title: mode === "promise"
      ? "Through Promises (a Promise per get, as a non-Effect caller; CacheAside through PromiseCache)"
      : "Inside one Effect program (fibers looping; peers wrapped in Effect.promise)",
    groups: labels.workloads.map((w) => ({
      label: w.title.split(":")[0]! + (w.metric === "cpu" ? " (CPU per miss)" : " (ops/s)"),
      sublabel: w.title.slice(w.title.indexOf(":") + 2),
      bars: labels.contenders.map((c) => {
        const cell = find(cells, w.id, mode, c.id)
        const value = cell === undefined || !Number.isFinite(cell.ratio)
          ? undefined
          : w.metric === "throughput"
          ? cell.ratio
          : 1 / cell.ratio
        return { contender: c.id, value, flagged: cell !== undefined && flagged(cell) }
      })
    }))
  }))
})

interface Target {
  readonly what: string
  readonly mode: Mode
  readonly contender: string
  readonly workload: WorkloadId
  /** The measured figure: the ratio, or (`cpu`) client CPU per get ÷ raw's. */
  readonly figure: "ratio" | "cpu"
  readonly bound: number
  /** `min`: at least the bound; `max`: at most. */
  readonly kind: "min" | "max"
}

/** Issue 10's targets, as ratios to raw in this run. */
const targets: ReadonlyArray<Target> = (["effect", "promise"] as const).flatMap((mode): Array<Target> => {
  const near = mode === "effect" ? [5, 5, 2] : [3.5, 3.1, 1.5]
  const label = mode === "effect" ? "inside Effect" : "through Promises"
  return [
    ...(["A", "B", "C"] as const).map((workload, i): Target => ({
      what: `near cache, ${label}, ${workload} ≥ ${near[i]}×`,
      mode,
      contender: "cache-aside-near",
      workload,
      figure: "ratio",
      bound: near[i]!,
      kind: "min"
    })),
    ...(["A", "B", "C"] as const).map((workload, i): Target => ({
      what: `Redis only, ${label}, ${workload} ≥ ${[0.9, 3.1, 1.0][i]}×`,
      mode,
      contender: "cache-aside",
      workload,
      figure: "ratio",
      bound: [0.9, 3.1, 1.0][i]!,
      kind: "min"
    })),
    {
      what: `Redis only, ${label}, client CPU per hit (A) ≤ 1.5× raw's`,
      mode,
      contender: "cache-aside",
      workload: "A",
      figure: "cpu",
      bound: 1.5,
      kind: "max"
    },
    ...(["D", "E"] as const).map((workload): Target => ({
      what: `${label}, client CPU per miss (${workload}) ≤ 2.5× raw's`,
      mode,
      contender: "cache-aside",
      workload,
      figure: "ratio",
      bound: 2.5,
      kind: "max"
    }))
  ]
})

/** The peers that a CacheAside figure must beat: for A–C a higher ratio, for D–E a lower CPU per miss. */
const PEERS = ["bentocache", "bentocache-l1", "cache-manager"]

/** Issue 10's targets against this run: informational (the benchmark never fails on them). */
export const targetTable = (cells: ReadonlyArray<Cell>, workloads: ReadonlyArray<Workload>): string => {
  const rows = targets.flatMap((t) => {
    const cell = find(cells, t.workload, t.mode, t.contender)
    const raw = find(cells, t.workload, t.mode, "raw")
    if (cell === undefined || raw === undefined) return []
    const value = t.figure === "ratio" ? cell.ratio : cell.cpuMicrosPerOp / raw.cpuMicrosPerOp
    const met = t.kind === "min" ? value >= t.bound : value <= t.bound
    const metric = workloads.find((w) => w.id === t.workload)?.metric
    const peers = PEERS.flatMap((id) => {
      const peer = find(cells, t.workload, t.mode, id)
      return peer === undefined ? [] : [peer]
    })
    const best = metric === "cpu"
      ? Math.min(...peers.map((p) => p.ratio))
      : Math.max(...peers.map((p) => p.ratio))
    const ahead = t.figure === "cpu" || peers.length === 0
      ? "–"
      : (metric === "cpu" ? cell.ratio < best : cell.ratio > best)
      ? `yes (best peer ${times(best)})`
      : `no (best peer ${times(best)})`
    return [`| ${t.what} | ${times(value)} | ${met ? "met" : "**not met**"} | ${ahead} |`]
  })
  return ["| target (issue 10) | measured | | ahead of every peer |", "| --- | ---: | --- | --- |", ...rows].join("\n")
}

/** Redis calls per get by command, for the contenders named (the first measured round of each cell). */
export const callsTable = (
  cells: ReadonlyArray<Cell>,
  labels: Labels,
  mode: Mode,
  contenders: ReadonlyArray<string>
): string => {
  const rows = labels.contenders.filter((c) => contenders.includes(c.id)).flatMap((contender) => {
    const row = labels.workloads.map((w) => {
      const calls = find(cells, w.id, mode, contender.id)?.samples[0]?.redisCallsPerOp
      if (calls === undefined) return "–"
      const entries = Object.entries(calls).filter(([, n]) => n >= 0.005).sort((a, b) => b[1] - a[1])
      return entries.length === 0 ? "< 0.01" : entries.map(([name, n]) => `${name} ${n.toFixed(2)}`).join(", ")
    })
    return row.every((r) => r === "–") ? [] : [`| ${contender.label} | ${row.join(" | ")} |`]
  })
  return [...header(labels, "Redis calls per get, by command"), ...rows].join("\n")
}
