/**
 * Outage latency: what one request pays while Redis is (a) stopped (killed, port closed) and
 * (b) hung (SIGSTOP), for
 *
 * - **CacheAside** on `RedisCacheStore.layer({ url })` with its defaults (resilient store: 250 ms
 *   operation timeout, circuit breaker);
 * - **raw ioredis**: a hand-written cache-aside on `new Redis(url)` with **default** ioredis
 *   options, each request wrapped in try/catch that falls back to the lookup (as a careful user
 *   would), capped at `RAW_CAP_MS` by `Promise.race` (capped requests are counted);
 * - **direct**: the lookup alone, no cache (the baseline).
 *
 * The lookup is the same for everyone: a simulated database call (`setTimeout(1)`, about 1 ms).
 * Each outage kind spawns its own redis-server on a free port, fills the caches, then kills or
 * stops the server. CacheAside and direct run `BENCH_ROUNDS` rounds in a rotating order after an
 * unmeasured warm-up (the breaker opening is reported separately as "onset"); the table shows the
 * medians of the per-round figures. Raw ioredis runs once per mode (its requests hang until the
 * cap), in a rotating round. See bench/README.md.
 *
 * Environment: `BENCH_ROUNDS` (default 3), `BENCH_SEQ_OPS` (default 1000), `BENCH_CONC_OPS`
 * (default 2000), `BENCH_RAW_CAP_MS` (default 10000).
 */
import { CacheAside, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import * as Fs from "node:fs"
import { performance } from "node:perf_hooks"
import { redisVersion, startRedis } from "./redis-server.js"
import { makeScoped } from "./scoped.js"

// ---------------------------------------------------------------------------------------------
// configuration

const envInt = (name: string, fallback: number): number => {
  const parsed = Number.parseInt(process.env[name] ?? "", 10)
  return Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}

const ROUNDS = envInt("BENCH_ROUNDS", 3)
const SEQ_OPS = envInt("BENCH_SEQ_OPS", 1000)
const CONC_OPS = envInt("BENCH_CONC_OPS", 2000)
const CONCURRENCY = 64
const RAW_CAP_MS = envInt("BENCH_RAW_CAP_MS", 10_000)
/** Raw ioredis starts no new request after this much time in one run (it hangs until the cap). */
const RAW_BUDGET_MS = RAW_CAP_MS
const KEYS = 1000
const WARMUP = 300

// ---------------------------------------------------------------------------------------------
// data and the lookup

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String, email: Schema.String }) {}

const makeUser = (id: number): User =>
  new User({ id, name: `User ${id}`, email: `user${id}@example.com` }, { disableValidation: true })

/** The simulated database call, the same for every contender. */
const dbCall = (id: number): Promise<User> => new Promise((resolve) => setTimeout(() => resolve(makeUser(id)), 1))

// ---------------------------------------------------------------------------------------------
// contenders

interface Run {
  /** Latency of each finished request, in ms. */
  readonly latencies: Array<number>
  /** Requests that hit the cap (raw ioredis only). */
  readonly capped: number
  /** Requests that returned a wrong value or threw. */
  readonly errors: number
}

type Mode = "sequential" | "concurrent"

interface Contender {
  readonly id: "direct" | "cacheAside" | "raw"
  readonly label: string
  readonly fill: () => Promise<void>
  readonly run: (mode: Mode, ops: number) => Promise<Run>
  readonly close: () => Promise<void>
}

/** Runs `request` `ops` times, one at a time or `CONCURRENCY` at a time, until `budgetMs` has passed. */
const runPromises = async (
  mode: Mode,
  ops: number,
  budgetMs: number,
  request: (id: number) => Promise<"ok" | "capped" | "error">
): Promise<Run> => {
  const latencies: Array<number> = []
  let capped = 0
  let errors = 0
  let next = 0
  const deadline = performance.now() + budgetMs
  const worker = async () => {
    while (next < ops && performance.now() < deadline) {
      const id = next++ % KEYS
      const started = performance.now()
      const outcome = await request(id)
      latencies.push(performance.now() - started)
      if (outcome === "capped") capped++
      if (outcome === "error") errors++
    }
  }
  await Promise.all(Array.from({ length: mode === "sequential" ? 1 : CONCURRENCY }, worker))
  return { latencies, capped, errors }
}

const directContender = (): Contender => ({
  id: "direct",
  label: "direct lookup (no cache)",
  fill: async () => {},
  run: (mode, ops) => runPromises(mode, ops, 60_000, async (id) => ((await dbCall(id)).id === id ? "ok" : "error")),
  close: async () => {}
})

const rawContender = (url: string): Contender => {
  const redis = new Redis(url) // default options, as most applications have them
  redis.on("error", () => {}) // connection errors during the outage are expected
  const keyOf = (id: number) => `raw:user:${id}`
  const get = async (id: number): Promise<{ readonly id: number }> => {
    try {
      const cached = await redis.get(keyOf(id))
      if (cached !== null) return JSON.parse(cached) as { readonly id: number }
    } catch {
      // the cache failed: fall back to the lookup
    }
    const user = await dbCall(id)
    try {
      await redis.set(keyOf(id), JSON.stringify(user), "EX", 3600)
    } catch {
      // a failed cache write must not fail the request
    }
    return user
  }
  return {
    id: "raw",
    label: "raw ioredis (default options) + try/catch",
    fill: async () => {
      await Promise.all(Array.from({ length: KEYS }, (_, id) => get(id)))
    },
    run: (mode, ops) =>
      runPromises(mode, ops, RAW_BUDGET_MS, async (id) => {
        let timer: NodeJS.Timeout | undefined
        const cap = new Promise<"capped">((resolve) => {
          timer = setTimeout(() => resolve("capped"), RAW_CAP_MS)
        })
        try {
          const outcome = await Promise.race([
            get(id).then((user) => user.id === id ? "ok" as const : "error" as const),
            cap
          ])
          return outcome
        } catch {
          return "error"
        } finally {
          clearTimeout(timer)
        }
      }),
    close: async () => {
      redis.disconnect()
    }
  }
}

const cacheAsideContender = async (
  url: string
): Promise<Contender & { readonly counters: () => Promise<Metrics.Snapshot> }> => {
  const quiet = process.env["BENCH_LOG_LEVEL"] === "error"
  const runtime = ManagedRuntime.make(
    Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(url) }), Metrics.layer).pipe(
      Layer.provideMerge(quiet ? Logger.minimumLogLevel(LogLevel.Error) : Layer.empty)
    )
  )
  const scoped = await makeScoped(
    runtime,
    CacheAside.make({
      namespace: "user",
      key: (id: number) => String(id),
      schema: User,
      lookup: (id: number) => Effect.map(Effect.promise(() => dbCall(id)), Option.some),
      ttl: "3600 seconds"
    })
  )
  const users = scoped.value
  const one = (id: number, latencies: Array<number>, count: { errors: number }) =>
    Effect.suspend(() => {
      const started = performance.now()
      return Effect.map(Effect.exit(users.get(id)), (exit) => {
        latencies.push(performance.now() - started)
        if (exit._tag === "Failure" || Option.getOrUndefined(exit.value)?.id !== id) count.errors++
      })
    })
  return {
    id: "cacheAside",
    label: "CacheAside (resilient Redis store, defaults)",
    fill: () =>
      runtime.runPromise(
        Effect.forEach(Array.from({ length: KEYS }, (_, id) => id), (id) => users.get(id), {
          concurrency: 16,
          discard: true
        })
      ),
    run: (mode, ops) => {
      const latencies: Array<number> = []
      const count = { errors: 0 }
      let next = 0
      const worker = Effect.whileLoop({
        while: () => next < ops,
        body: () => one(next++ % KEYS, latencies, count),
        step: () => {}
      })
      const program = mode === "sequential"
        ? worker
        : Effect.forEach(Array.from({ length: CONCURRENCY }), () => worker, {
          concurrency: CONCURRENCY,
          discard: true
        })
      return runtime.runPromise(program.pipe(Effect.timeout("60 seconds"), Effect.orDie)).then(() => ({
        latencies,
        capped: 0,
        errors: count.errors
      }))
    },
    counters: () => runtime.runPromise(Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("user"))),
    close: scoped.close
  }
}

// ---------------------------------------------------------------------------------------------
// statistics

interface Stats {
  readonly n: number
  readonly capped: number
  readonly errors: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!

const stats = (run: Run): Stats => {
  const sorted = [...run.latencies].sort((a, b) => a - b)
  return {
    n: sorted.length,
    capped: run.capped,
    errors: run.errors,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const medianStats = (runs: ReadonlyArray<Stats>): Stats => ({
  n: median(runs.map((s) => s.n)),
  capped: median(runs.map((s) => s.capped)),
  errors: Math.max(...runs.map((s) => s.errors)),
  p50: median(runs.map((s) => s.p50)),
  p99: median(runs.map((s) => s.p99)),
  max: median(runs.map((s) => s.max)),
  mean: median(runs.map((s) => s.mean))
})

const fmt = (ms: number): string =>
  Number.isNaN(ms) ? "-" : ms >= 100 ? Math.round(ms).toLocaleString("en-US") : ms.toFixed(2)

// ---------------------------------------------------------------------------------------------
// main

type Outage = "stopped" | "hung"

interface Row {
  readonly outage: Outage
  readonly mode: Mode
  readonly contender: Contender["id"]
  readonly label: string
  readonly rounds: number
  readonly stats: Stats
  readonly perRound: ReadonlyArray<Stats>
  readonly ratio: number
}

const opsOf = (mode: Mode) => mode === "sequential" ? SEQ_OPS : CONC_OPS
const modes: ReadonlyArray<Mode> = ["sequential", "concurrent"]

const runOutage = async (outage: Outage, rows: Array<Row>, extra: Record<string, unknown>) => {
  const server = await startRedis()
  const version = await redisVersion(server.url)
  const direct = directContender()
  const raw = rawContender(server.url)
  const cacheAside = await cacheAsideContender(server.url)
  try {
    await raw.fill()
    await cacheAside.fill()
    // the outage begins
    if (outage === "stopped") await server.kill()
    else server.pause()
    // onset: the first requests while the breaker is still closed (not part of the table)
    const onset = stats(await cacheAside.run("sequential", WARMUP))
    await direct.run("sequential", WARMUP)
    extra[`${outage}.cacheAsideOnset`] = onset
    console.error(
      `${outage}: CacheAside onset (first ${WARMUP} sequential gets): max ${fmt(onset.max)} ms, mean ${
        fmt(onset.mean)
      } ms`
    )
    const perRound: Record<string, Array<Stats>> = {}
    const rotation: ReadonlyArray<Contender> = [direct, cacheAside]
    for (let round = 0; round < ROUNDS; round++) {
      const order = rotation.map((_, i) => rotation[(i + round) % rotation.length]!)
      // raw ioredis hangs until its cap: it runs once per mode, in a different round per outage kind
      if (round === (outage === "stopped" ? 0 : Math.min(1, ROUNDS - 1))) order.splice(1, 0, raw)
      for (const mode of modes) {
        for (const contender of order) {
          const started = performance.now()
          const s = stats(await contender.run(mode, opsOf(mode)))
          ;(perRound[`${contender.id}.${mode}`] ??= []).push(s)
          console.error(
            `${outage} round ${round + 1} ${mode} ${contender.id}: n ${s.n}, mean ${fmt(s.mean)} ms, max ${
              fmt(s.max)
            } ms (${Math.round(performance.now() - started)} ms)`
          )
        }
      }
    }
    const counters = await cacheAside.counters()
    extra[`${outage}.cacheAsideCounters`] = counters
    for (const mode of modes) {
      const directStats = medianStats(perRound[`direct.${mode}`]!)
      for (const contender of [direct, cacheAside, raw]) {
        const runs = perRound[`${contender.id}.${mode}`]!
        const s = medianStats(runs)
        rows.push({
          outage,
          mode,
          contender: contender.id,
          label: contender.label,
          rounds: runs.length,
          stats: s,
          perRound: runs,
          ratio: s.mean / directStats.mean
        })
      }
    }
  } finally {
    await server.kill()
    await raw.close()
    await cacheAside.close()
  }
  return version
}

const main = async () => {
  const startedAt = performance.now()
  const rows: Array<Row> = []
  const extra: Record<string, unknown> = {}
  let version = "unknown"
  for (const outage of ["stopped", "hung"] as const) version = await runOutage(outage, rows, extra)

  const outageLabel = { stopped: "stopped (SIGKILL)", hung: "hung (SIGSTOP)" } as const
  const modeLabel = { sequential: "sequential", concurrent: `${CONCURRENCY} in flight` } as const
  const lines = [
    `node ${process.version}, redis ${version}, ${ROUNDS} rounds (raw ioredis: 1), lookup = setTimeout(1), ` +
    `${SEQ_OPS} sequential / ${CONC_OPS} concurrent requests, raw capped at ${RAW_CAP_MS} ms per request`,
    "",
    "| Redis | mode | contender | n | capped | p50 ms | p99 ms | max ms | mean ms | mean / direct |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${outageLabel[r.outage]} | ${modeLabel[r.mode]} | ${r.label} | ${r.stats.n} | ${r.stats.capped} | ${
        fmt(r.stats.p50)
      } | ${fmt(r.stats.p99)} | ${fmt(r.stats.max)} | ${fmt(r.stats.mean)} | ${r.ratio.toFixed(2)}x |`
    )
  ]
  console.log(lines.join("\n"))
  const errors = rows.filter((r) => r.stats.errors > 0)
  for (const r of errors) console.error(`WARNING: ${r.outage} ${r.mode} ${r.contender}: ${r.stats.errors} errors`)
  Fs.mkdirSync(new URL("../results/", import.meta.url), { recursive: true })
  Fs.writeFileSync(
    new URL("../results/outage.json", import.meta.url),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        redis: version,
        config: { rounds: ROUNDS, seqOps: SEQ_OPS, concOps: CONC_OPS, concurrency: CONCURRENCY, rawCapMs: RAW_CAP_MS },
        rows,
        extra,
        seconds: Math.round((performance.now() - startedAt) / 1000)
      },
      null,
      2
    ) + "\n"
  )
  console.error(`done in ${Math.round((performance.now() - startedAt) / 1000)} s; bench/results/outage.json written`)
  process.exit(errors.length > 0 ? 1 : 0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
