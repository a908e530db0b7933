/**
 * CacheAside against its peers, side by side on one Redis: hand-written cache-aside on raw
 * ioredis, BentoCache (Redis only; memory L1 + Redis + bus), cache-manager 7 with @keyv/redis,
 * CacheAside (Redis only; with its near cache), and the floor (`runPromise` of a bare
 * `Effect.succeed`). Workloads A to E (see `peers/workloads.ts`), in two modes: through Promises
 * and inside one Effect program. Rounds interleave the contenders in a rotating order; the tables
 * show medians and the median of the per-round ratios to raw ioredis. Writes
 * bench/results/peers.json and the chart bench/results/peers.svg. See bench/README.md.
 *
 * Flags and environment:
 * - `--quick`             a few seconds per cell (3 rounds of 200 ms); the default is the full run
 * - `REDIS_URL`           use this Redis instead of spawning a `redis-server` on a free port; the
 *                         benchmark empties it (FLUSHALL), so it also needs `BENCH_FLUSH_OK=1`
 * - `BENCH_ROUNDS`        measured rounds (full 5, quick 3)
 * - `BENCH_RUN_MS`        duration of a run of A, B, D, E (full 800, quick 200)
 * - `BENCH_ZIPF_OPS`      gets per run of C (full 10000, quick 4000)
 * - `BENCH_ONLY`          workloads to run, e.g. `A,B` (default all)
 * - `BENCH_CONTENDERS`    contender ids to run besides raw, e.g. `cache-aside,cache-aside-near`
 * - `BENCH_MODES`         `promise`, `effect` or both (default)
 * - `BENCH_WARMUP_MS`     unmeasured warm-up per contender, workload and mode (full 2000, quick 1000)
 * - `BENCH_RUN_PROMISE=1` CacheAside's Promise-mode gets are `runtime.runPromise(cache.get(key))`
 *                         instead of `PromiseCache.get` (every get enters the runtime)
 */
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Redis } from "ioredis"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import { renderChart } from "./peers/chart.js"
import * as Contenders from "./peers/contenders.js"
import {
  callsTable,
  type Cell,
  chartInput,
  costTable,
  type Labels,
  makeCell,
  ratioTable,
  targetTable
} from "./peers/report.js"
import { type Mode, runOnce, type Sample } from "./peers/runner.js"
import { distinctIn, makeWorkloads, type Workload, ZIPF_EXPONENT, ZIPF_KEYS, zipfSequence } from "./peers/workloads.js"
import { redisVersion as readRedisVersion, startRedis } from "./redis-server.js"

// ---------------------------------------------------------------------------------------------
// configuration

const QUICK = process.argv.includes("--quick")

const envInt = (name: string, fallback: number): number => {
  const parsed = Number.parseInt(process.env[name] ?? "", 10)
  return Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}
const envList = (name: string): ReadonlyArray<string> | undefined =>
  process.env[name]?.split(",").map((s) => s.trim()).filter((s) => s.length > 0)

const ROUNDS = envInt("BENCH_ROUNDS", QUICK ? 3 : 5)
const sizes = {
  runMillis: envInt("BENCH_RUN_MS", QUICK ? 200 : 800),
  zipfOps: envInt("BENCH_ZIPF_OPS", QUICK ? 4000 : 10_000)
}
/**
 * Unmeasured warm-up per contender, workload and mode: whole runs until this much time has passed
 * (at least one). V8 optimizes a code path after thousands of calls: a library with a longer miss
 * path than raw code (ours: measured 1,040 µs per miss in its first 1.5 s, 280 µs from the third
 * second on) would otherwise be measured on its cold path, which a long-lived server never runs.
 */
const WARMUP_MILLIS = envInt("BENCH_WARMUP_MS", QUICK ? 1000 : 2000)
const ONLY = envList("BENCH_ONLY")
const ONLY_CONTENDERS = envList("BENCH_CONTENDERS")
const MODES: ReadonlyArray<Mode> = (envList("BENCH_MODES") ?? ["promise", "effect"]).filter(
  (m): m is Mode => m === "promise" || m === "effect"
)

const workloads = makeWorkloads(sizes).filter((w) => ONLY === undefined || ONLY.includes(w.id))

const command = [
  ...[
    "BENCH_ROUNDS",
    "BENCH_RUN_MS",
    "BENCH_ZIPF_OPS",
    "BENCH_ONLY",
    "BENCH_CONTENDERS",
    "BENCH_MODES",
    "BENCH_RUN_PROMISE"
  ]
    .flatMap((
      name
    ) => process.env[name] === undefined ? [] : [`${name}=${process.env[name]}`]),
  "npx -y pnpm@10.34.9 --filter @cache-aside/bench peers",
  ...(QUICK ? ["--quick"] : [])
].join(" ")

// ---------------------------------------------------------------------------------------------
// environment

const readVersion = (pkg: string): string => {
  try {
    const url = new URL(`../node_modules/${pkg}/package.json`, import.meta.url)
    return (JSON.parse(Fs.readFileSync(url, "utf8")) as { version?: string }).version ?? "unknown"
  } catch {
    return "unknown"
  }
}

/**
 * Which build of the library runs: its published one (`dist`, the tsc output an npm user installs,
 * with `--conditions=cache-aside-dist` as the `peers` script passes) or its TypeScript sources
 * through tsx, whose transform adds a `__name` call per named closure (slower, not what users run).
 */
const cacheAsideBuild = (): string =>
  import.meta.resolve("@cache-aside/core").includes("/dist/")
    ? "its published build (dist)"
    : "its TypeScript sources through tsx (NOT the published build: run the peers script)"

const nproc = (): number => {
  try {
    return Number.parseInt(ChildProcess.execFileSync("nproc", { encoding: "utf8" }).trim(), 10)
  } catch {
    return Os.availableParallelism()
  }
}

// ---------------------------------------------------------------------------------------------
// the measurement

/** Builds the contenders into `all` one by one, so that those built are closed should a later one fail. */
const makeContenders = async (url: string, all: Array<Contenders.Contender>): Promise<void> => {
  const wanted = (id: string) => id === "raw" || ONLY_CONTENDERS === undefined || ONLY_CONTENDERS.includes(id)
  const add = async (id: string, make: () => Contenders.Contender | Promise<Contenders.Contender>) => {
    if (wanted(id)) all.push(await make())
  }
  await add("raw", () => Contenders.raw(url))
  await add("bentocache", () => Contenders.bentocache(url, false))
  await add("bentocache-l1", () => Contenders.bentocache(url, true))
  await add("cache-manager", () => Contenders.cacheManager(url))
  await add("cache-aside", () => Contenders.cacheAside(url, undefined))
  if (Contenders.NEAR_CACHE !== undefined) {
    await add("cache-aside-near", () => Contenders.cacheAside(url, Contenders.NEAR_CACHE))
  }
  await add("floor", () => Contenders.floor())
}

interface Context {
  readonly admin: Redis
  readonly runtime: ManagedRuntime.ManagedRuntime<never, never>
  epoch: number
}

const warn = (label: string, what: string, sample: Sample) => {
  const problems = [
    ...(sample.error === undefined ? [] : [`error: ${sample.error}`]),
    ...(sample.wrong > 0 ? [`${sample.wrong} gets answered no or the wrong row`] : []),
    ...((sample.counters["cacheErrors"] ?? 0) > 0 || (sample.counters["fallbacks"] ?? 0) > 0
      ? [`store errors: ${JSON.stringify(sample.counters)}`]
      : [])
  ]
  if (problems.length > 0) console.log(`    warning: ${label}, ${what}: ${problems.join("; ")}`)
}

/** Every contender of one mode on one workload: a warm-up each, then interleaved rounds. */
const measure = async (
  ctx: Context,
  workload: Workload,
  mode: Mode,
  contenders: ReadonlyArray<Contenders.Contender>
): Promise<Array<Cell>> => {
  const active = contenders.filter((c) => mode === "promise" || c.getEffect !== undefined)
  const run = async (contender: Contenders.Contender, scale: number) => {
    if (workload.flushBeforeRun) await ctx.admin.flushall()
    return runOnce({ contender, workload, mode, epoch: ctx.epoch++, scale, admin: ctx.admin, runtime: ctx.runtime })
  }
  for (const c of active) {
    const until = performance.now() + WARMUP_MILLIS
    do warn(c.label, `${workload.id} ${mode} warm-up`, await run(c, 1))
    while (performance.now() < until)
  }
  const samples = new Map(active.map((c) => [c.id, [] as Array<Sample>]))
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < active.length; j++) {
      const c = active[(round + j) % active.length]!
      const sample = await run(c, 1)
      warn(c.label, `${workload.id} ${mode} round ${round + 1}`, sample)
      samples.get(c.id)!.push(sample)
    }
  }
  const cells = active.map((c) => makeCell(workload, mode, c.id, samples.get(c.id)!, samples.get("raw")!))
  const line = cells.map((cell) => {
    const figure = workload.metric === "throughput"
      ? `${Math.round(cell.opsPerSecond)}/s`
      : `${cell.cpuMicrosPerOp.toFixed(1)}µs`
    return `${cell.contender} ${figure} (${cell.ratio.toFixed(2)}x)`
  })
  console.log(`  ${workload.id} ${mode}: ${line.join(", ")}`)
  return cells
}

// ---------------------------------------------------------------------------------------------
// main

const main = async () => {
  const startedAt = performance.now()
  const server = await startRedis({ allowEnv: true })
  const admin = new Redis(server.url)
  const runtime = ManagedRuntime.make(Logger.minimumLogLevel(LogLevel.Error))
  const contenders: Array<Contenders.Contender> = []
  try {
    if (!server.spawned && process.env["BENCH_FLUSH_OK"] !== "1") {
      throw new Error("the benchmark empties its Redis (FLUSHALL): set BENCH_FLUSH_OK=1 to let it empty REDIS_URL's")
    }
    const redisVersion = await readRedisVersion(server.url)
    await admin.flushall()
    await makeContenders(server.url, contenders)
    const zipf = zipfSequence(ZIPF_KEYS, ZIPF_EXPONENT, sizes.zipfOps)
    console.log(
      `peers${QUICK ? " --quick" : ""}: ${ROUNDS} rounds, ${sizes.runMillis} ms per run of A/B/D/E, ` +
        `${sizes.zipfOps} gets per run of C (${distinctIn(zipf, sizes.zipfOps)} distinct keys), modes ${
          MODES.join("+")
        }, redis ${redisVersion} at ${
          server.spawned ? `${server.url} (spawned)` : "REDIS_URL"
        }; CacheAside from ${cacheAsideBuild()}`
    )
    const ctx: Context = { admin, runtime, epoch: 0 }
    const cells: Array<Cell> = []
    for (const workload of workloads) {
      for (const c of contenders) c.db.delayMillis = workload.lookupMillis
      for (const mode of MODES) cells.push(...await measure(ctx, workload, mode, contenders))
      await admin.flushall()
    }
    await report({ cells, contenders, redisVersion, spawned: server.spawned, startedAt, zipf })
  } finally {
    for (const c of contenders) await c.close().catch(() => {})
    await runtime.dispose()
    admin.disconnect()
    await server.stop()
  }
}

interface ReportInput {
  readonly cells: ReadonlyArray<Cell>
  readonly contenders: ReadonlyArray<Contenders.Contender>
  readonly redisVersion: string
  readonly spawned: boolean
  readonly startedAt: number
  readonly zipf: Int32Array
}

const report = async (input: ReportInput) => {
  // A (one hot key, sequential) tells: a working near cache answers it with no Redis command, while
  // without one every get sends one (B does not tell: its concurrent gets share one read anyway)
  const near = input.cells.find((c) => c.contender === "cache-aside-near" && c.workload === "A")
  const nearInactive = near !== undefined && near.redisCommandsPerOp > 0.5
  const labels: Labels = {
    workloads,
    contenders: input.contenders.map((c) => ({
      id: c.id,
      label: c.id === "cache-aside-near" && nearInactive ? `${c.label} (INACTIVE: option ignored)` : c.label
    }))
  }
  const machine = `${
    Os.cpus()[0]?.model ?? "unknown CPU"
  }, nproc ${nproc()}, ${Os.type()} ${Os.arch()}, Node ${process.version}`
  const packages = Object.fromEntries(
    ["effect", "ioredis", "bentocache", "cache-manager", "keyv", "@keyv/redis"].map((p) => [p, readVersion(p)])
  )
  const seconds = Math.round((performance.now() - input.startedAt) / 1000)
  const date = new Date().toISOString()
  const notes = [
    `Ratios are medians over ${ROUNDS} rounds of (contender ÷ raw ioredis in the same round, same mode).`,
    "A–C: throughput, higher is better. D–E: client CPU per miss (process.cpuUsage over the run ÷ gets), lower is better.",
    `C: each run starts cold on fresh keys; ${sizes.zipfOps} gets touch ${
      distinctIn(input.zipf, sizes.zipfOps)
    } distinct keys.`,
    ...(nearInactive
      ? [
        "The near-cache contender was INACTIVE: CacheAside.make ignored `nearCache` (about one Redis command per hit)."
      ]
      : [])
  ]
  const sections = MODES.flatMap((mode) => [
    `### ${
      mode === "promise"
        ? "Through Promises (a Promise per get; CacheAside through PromiseCache)"
        : "Inside one Effect program"
    }`,
    "",
    ratioTable(input.cells, labels, mode),
    "",
    costTable(input.cells, labels, mode),
    ""
  ])
  const calls = [
    "### Redis calls per get by command (first measured round, through Promises)",
    "",
    callsTable(input.cells, labels, "promise", ["raw", "cache-aside", "cache-aside-near"]),
    ""
  ]
  const goals = ["### Targets of issue 10 (informational)", "", targetTable(input.cells, workloads), ""]
  console.log(
    ["", ...sections, ...(MODES.includes("promise") ? calls : []), ...goals, ...notes.map((n) => `- ${n}`), ""].join(
      "\n"
    )
  )
  console.log(
    `machine: ${machine}; redis-server ${input.redisVersion}${
      input.spawned ? " (spawned, same machine)" : " (REDIS_URL)"
    }`
  )
  console.log(`packages: ${Object.entries(packages).map(([k, v]) => `${k} ${v}`).join(", ")}`)
  console.log(`reproduce: ${command}`)

  const out = (name: string) => new URL(`../results/${name}`, import.meta.url)
  Fs.mkdirSync(out("."), { recursive: true })
  // a partial run (BENCH_ONLY, BENCH_CONTENDERS, BENCH_MODES) or one of plain runPromise gets keeps the full results
  const partial = ONLY !== undefined || ONLY_CONTENDERS !== undefined || envList("BENCH_MODES") !== undefined ||
    process.env["BENCH_RUN_PROMISE"] === "1"
  const base = partial ? "peers.partial" : "peers"
  const json = {
    benchmark: "peers",
    date,
    quick: QUICK,
    command,
    machine,
    redis: { version: input.redisVersion, spawned: input.spawned },
    packages,
    config: { rounds: ROUNDS, warmupMillis: WARMUP_MILLIS, ...sizes, modes: MODES, l1Entries: Contenders.L1_ENTRIES },
    nearCache: { option: Contenders.NEAR_CACHE ?? null, active: near === undefined ? null : !nearInactive },
    contenders: labels.contenders,
    workloads: workloads.map((w) => ({ id: w.id, title: w.title, metric: w.metric, concurrency: w.concurrency })),
    notes,
    cells: input.cells,
    durationSeconds: seconds
  }
  Fs.writeFileSync(out(`${base}.json`), JSON.stringify(json, null, 2) + "\n")
  const svg = renderChart(chartInput(
    input.cells,
    labels,
    MODES,
    `CacheAside and its peers: × raw ioredis in the same round (log scale, higher is better)${
      QUICK ? ", quick run" : ""
    }`,
    `A–C: ops/s ratio; D–E: raw's client CPU per miss ÷ the contender's. ${machine}; redis ${input.redisVersion}; ${
      date.slice(0, 16)
    } UTC`
  ))
  Fs.writeFileSync(out(`${base}.svg`), svg)
  console.log(`wrote bench/results/${base}.json and bench/results/${base}.svg (${seconds} s)`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
