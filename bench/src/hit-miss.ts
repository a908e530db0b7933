/**
 * Hit/miss throughput: raw ioredis cache-aside (hand-written, default ioredis options) against
 * `CacheAside` on `RedisCacheStore`, side by side in one run.
 *
 * Every scenario runs a fixed number of `get`s. Rounds are interleaved: each round runs every
 * contender once, in an order that rotates from round to round, and the table reports the median
 * of the per-round ops/sec. See bench/README.md.
 *
 * Environment:
 * - `REDIS_URL`      use this Redis instead of spawning a `redis-server` on a free port
 * - `BENCH_OPS`      operations per run of a concurrent scenario (default 16000; sequential ones run half)
 * - `BENCH_ROUNDS`   measured rounds (default 5)
 * - `BENCH_ONLY`     comma-separated scenario ids to run (default all: a,b,c,d,e)
 * - `BENCH_AUTOPIPELINE=1`  also run raw ioredis with `enableAutoPipelining: true` (informational)
 */
import { CacheAside, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import type { RedisOptions } from "ioredis"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import { redisVersion as readRedisVersion, startRedis } from "./redis-server.js"
import { makeScoped } from "./scoped.js"

// ---------------------------------------------------------------------------------------------
// configuration

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name]
  const parsed = raw === undefined ? Number.NaN : Number.parseInt(raw, 10)
  return Number.isFinite(parsed) && parsed > 0 ? parsed : fallback
}

/** Operations per run of a concurrent scenario; sequential scenarios run half as many (to keep the run short). */
const OPS = envInt("BENCH_OPS", 16_000)
const SEQUENTIAL_OPS = Math.max(1000, Math.floor(OPS / 2))
const ROUNDS = envInt("BENCH_ROUNDS", 5)
const CONCURRENCY = 64
const DISTINCT_KEYS = 1000
const HOT_ID = 0
const TTL_SECONDS = 3600
const ONLY = process.env["BENCH_ONLY"]?.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
const WITH_AUTOPIPELINE = process.env["BENCH_AUTOPIPELINE"] === "1"

// ---------------------------------------------------------------------------------------------
// data

/** What the raw contender stores and returns: `createdAt` stays an ISO string. */
interface PlainUser {
  readonly id: number
  readonly name: string
  readonly email: string
  readonly createdAt: string
}

/** What CacheAside returns: a class instance, `createdAt` decoded to a `Date` by the schema. */
class User extends Schema.Class<User>("User")({
  id: Schema.Number,
  name: Schema.String,
  email: Schema.String,
  createdAt: Schema.Date
}) {}

const CREATED_AT = new Date("2024-05-01T12:34:56.789Z")

const plainUser = (id: number): PlainUser => ({
  id,
  name: `User ${id}`,
  email: `user${id}@example.com`,
  createdAt: CREATED_AT.toISOString()
})

// the lookup stands for the data store, so it skips the constructor's validation (a cost of the
// application's data layer, not of the cache)
const classUser = (id: number): User =>
  new User({ id, name: `User ${id}`, email: `user${id}@example.com`, createdAt: CREATED_AT }, {
    disableValidation: true
  })

// ---------------------------------------------------------------------------------------------
// scenarios

type ScenarioId = "a" | "b" | "c" | "d" | "e"

interface Scenario {
  readonly id: ScenarioId
  readonly label: string
  readonly kind: "hit" | "miss"
  readonly concurrency: number
  /** Operations per run. */
  readonly ops: number
  /** The user id of operation `i` (miss scenarios take fresh ids from `freshId`). */
  readonly idOf: (i: number) => number
}

let nextFreshId = 10_000_000
const freshId = (): number => nextFreshId++

const allScenarios: ReadonlyArray<Scenario> = [
  {
    id: "a",
    label: `a. hit, sequential, ${DISTINCT_KEYS} distinct keys`,
    kind: "hit",
    concurrency: 1,
    ops: SEQUENTIAL_OPS,
    idOf: (i) => i % DISTINCT_KEYS
  },
  {
    id: "b",
    label: `b. hit, ${CONCURRENCY} in flight, distinct keys`,
    kind: "hit",
    concurrency: CONCURRENCY,
    ops: OPS,
    idOf: (i) => i % DISTINCT_KEYS
  },
  {
    id: "c",
    label: `c. hit, ${CONCURRENCY} in flight, one hot key`,
    kind: "hit",
    concurrency: CONCURRENCY,
    ops: OPS,
    idOf: () => HOT_ID
  },
  {
    id: "d",
    label: "d. miss (GET + lookup + SET), sequential",
    kind: "miss",
    concurrency: 1,
    ops: SEQUENTIAL_OPS,
    idOf: () => freshId()
  },
  {
    id: "e",
    label: `e. miss (GET + lookup + SET), ${CONCURRENCY} in flight`,
    kind: "miss",
    concurrency: CONCURRENCY,
    ops: OPS,
    idOf: () => freshId()
  }
]

const scenarios = ONLY === undefined ? allScenarios : allScenarios.filter((s) => ONLY.includes(s.id))

// ---------------------------------------------------------------------------------------------
// contenders

interface RunResult {
  /** Operations that found a value (hit scenarios) or went to the lookup (miss scenarios). */
  readonly expected: number
  readonly extra?: Record<string, number> | undefined
}

interface Contender {
  readonly id: string
  readonly label: string
  /** Writes the hit keys (ids 0..DISTINCT_KEYS-1). */
  readonly prewarm: () => Promise<void>
  readonly run: (scenario: Scenario, ops: number) => Promise<RunResult>
  readonly close: () => Promise<void>
}

/** Hand-written cache-aside on ioredis: GET + JSON.parse; on a miss lookup + SET EX. */
const rawContender = (id: string, label: string, url: string, options: RedisOptions): Contender => {
  const redis = new Redis(url, options)
  const keyOf = (userId: number) => `raw-${id}:user:${userId}`
  const lookup = async (userId: number): Promise<PlainUser> => plainUser(userId)

  const get = async (userId: number): Promise<{ readonly user: PlainUser; readonly hit: boolean }> => {
    const key = keyOf(userId)
    const cached = await redis.get(key)
    if (cached !== null) return { user: JSON.parse(cached) as PlainUser, hit: true }
    const user = await lookup(userId)
    await redis.set(key, JSON.stringify(user), "EX", TTL_SECONDS)
    return { user, hit: false }
  }

  return {
    id,
    label,
    prewarm: async () => {
      const pipeline = redis.pipeline()
      for (let i = 0; i < DISTINCT_KEYS; i++) pipeline.set(keyOf(i), JSON.stringify(plainUser(i)), "EX", TTL_SECONDS)
      await pipeline.exec()
    },
    run: async (scenario, ops) => {
      let next = 0
      let hits = 0
      let misses = 0
      const worker = async () => {
        while (next < ops) {
          const i = next++
          const result = await get(scenario.idOf(i))
          if (result.hit) hits++
          else misses++
        }
      }
      await Promise.all(Array.from({ length: scenario.concurrency }, worker))
      return { expected: scenario.kind === "hit" ? hits : misses }
    },
    close: async () => {
      await redis.quit()
    }
  }
}

/** `CacheAside` on `RedisCacheStore`, the layers built once in a `ManagedRuntime`. */
const cacheAsideContender = async (url: string): Promise<Contender> => {
  const runtime = ManagedRuntime.make(
    Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(url) }), Metrics.layer)
  )
  const scoped = await makeScoped(
    runtime,
    CacheAside.make({
      namespace: "user",
      key: (id: number) => String(id),
      schema: User,
      lookup: (id: number) => Effect.succeed(Option.some(classUser(id))),
      ttl: `${TTL_SECONDS} seconds`,
      jitter: 0.1
    })
  )
  const users = scoped.value
  const metrics = await runtime.runPromise(Metrics.Metrics)
  const snapshot = () => runtime.runPromise(metrics.snapshot("user"))

  const loop = (scenario: Scenario, ops: number, count: { found: number }) => {
    let next = 0
    const worker = Effect.whileLoop({
      while: () => next < ops,
      body: () => users.get(scenario.idOf(next++)),
      step: (user) => {
        if (Option.isSome(user)) count.found++
      }
    })
    return scenario.concurrency === 1
      ? worker
      : Effect.forEach(Array.from({ length: scenario.concurrency }), () => worker, {
        concurrency: scenario.concurrency,
        discard: true
      })
  }

  return {
    id: "cacheAside",
    label: "CacheAside",
    prewarm: () =>
      runtime.runPromise(
        Effect.forEach(
          Array.from({ length: DISTINCT_KEYS }, (_, i) => i),
          // a loaded machine can time a write out and open the breaker: retry until it closes again
          (i) =>
            Effect.retry(
              users.set(i, classUser(i)),
              Schedule.intersect(Schedule.spaced("50 millis"), Schedule.recurs(100))
            ),
          { concurrency: 8, discard: true }
        )
      ),
    run: async (scenario, ops) => {
      const before = await snapshot()
      const count = { found: 0 }
      await runtime.runPromise(loop(scenario, ops, count))
      const after = await snapshot()
      const delta = (event: Metrics.Event) => after[event] - before[event]
      if (count.found !== ops) throw new Error(`CacheAside returned ${count.found} values for ${ops} gets`)
      return {
        // hits count a cache answer: coalesced gets of a hot key share one answer
        expected: scenario.kind === "hit" ? delta("hits") + delta("coalesced") : delta("loads"),
        extra: {
          hits: delta("hits"),
          misses: delta("misses"),
          loads: delta("loads"),
          coalesced: delta("coalesced"),
          cacheErrors: delta("cacheErrors"),
          fallbacks: delta("fallbacks"),
          writeErrors: delta("writeErrors"),
          decodeErrors: delta("decodeErrors")
        }
      }
    },
    close: scoped.close
  }
}

// ---------------------------------------------------------------------------------------------
// reporting helpers

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const fmtOps = (n: number): string => Math.round(n).toLocaleString("en-US")
const fmtRatio = (n: number): string => `${n.toFixed(2)}x`

const readVersion = (relative: string): string => {
  try {
    const json = JSON.parse(Fs.readFileSync(new URL(relative, import.meta.url), "utf8")) as { version?: string }
    return json.version ?? "unknown"
  } catch {
    return "unknown"
  }
}

const nproc = (): number => {
  try {
    return Number.parseInt(ChildProcess.execFileSync("nproc", { encoding: "utf8" }).trim(), 10)
  } catch {
    return Os.availableParallelism()
  }
}

// ---------------------------------------------------------------------------------------------
// main

interface ScenarioResult {
  readonly id: ScenarioId
  readonly label: string
  readonly ops: number
  readonly perRound: Record<string, Array<number>>
  readonly median: Record<string, number>
  /** CacheAside median / raw median: > 1 means CacheAside is faster. */
  readonly ratio: number
  readonly cacheAsideCounters: Record<string, number>
}

const main = async () => {
  const startedAt = performance.now()
  const server = await startRedis({ allowEnv: true })
  const contenders: Array<Contender> = []
  try {
    const redisVersion = await readRedisVersion(server.url)

    contenders.push(rawContender("raw", "raw ioredis", server.url, {}))
    contenders.push(await cacheAsideContender(server.url))
    if (WITH_AUTOPIPELINE) {
      contenders.push(
        rawContender("rawAutoPipeline", "raw ioredis (autopipelining)", server.url, { enableAutoPipelining: true })
      )
    }

    const machine = {
      cpu: Os.cpus()[0]?.model ?? "unknown",
      nproc: nproc(),
      os: `${Os.type()} ${Os.release()} ${Os.arch()}`,
      node: process.version
    }
    const packages = {
      "@cache-aside/core": readVersion("../node_modules/@cache-aside/core/package.json"),
      "@cache-aside/redis": readVersion("../node_modules/@cache-aside/redis/package.json"),
      effect: readVersion("../node_modules/effect/package.json"),
      ioredis: readVersion("../node_modules/ioredis/package.json")
    }
    console.log(
      `hit-miss: ${SEQUENTIAL_OPS} ops per sequential run, ${OPS} per concurrent run, ${ROUNDS} rounds ` +
        `(+1 warm-up run of a quarter), ` +
        `redis ${redisVersion} at ${server.spawned ? `${server.url} (spawned)` : "REDIS_URL"}`
    )

    const results: Array<ScenarioResult> = []
    for (const scenario of scenarios) {
      if (scenario.kind === "hit") { for (const c of contenders) await c.prewarm() }
      // warm-up (not measured): JIT, connection buffers
      for (const c of contenders) await c.run(scenario, Math.floor(scenario.ops / 4))
      const perRound: Record<string, Array<number>> = Object.fromEntries(contenders.map((c) => [c.id, []]))
      const counters: Record<string, number> = {}
      for (let round = 0; round < ROUNDS; round++) {
        for (let j = 0; j < contenders.length; j++) {
          const c = contenders[(round + j) % contenders.length]!
          const start = performance.now()
          const result = await c.run(scenario, scenario.ops)
          const seconds = (performance.now() - start) / 1000
          if (result.expected !== scenario.ops && c.id === "cacheAside") {
            // e.g. a store timeout turned into a fallback: keep the numbers, flag them
            console.log(
              `    warning: ${c.label}, scenario ${scenario.id}, round ${round + 1}: ${result.expected} of ` +
                `${scenario.ops} gets took the expected path ${JSON.stringify(result.extra ?? {})}`
            )
          } else if (result.expected !== scenario.ops) {
            throw new Error(
              `${c.label}, scenario ${scenario.id}: expected ${scenario.ops} ${scenario.kind}s, got ${result.expected} ` +
                JSON.stringify(result.extra ?? {})
            )
          }
          perRound[c.id]!.push(scenario.ops / seconds)
          if (result.extra !== undefined) {
            for (const [k, v] of Object.entries(result.extra)) counters[k] = (counters[k] ?? 0) + v
          }
        }
      }
      const medians = Object.fromEntries(contenders.map((c) => [c.id, median(perRound[c.id]!)]))
      const ratio = medians["cacheAside"]! / medians["raw"]!
      results.push({
        id: scenario.id,
        label: scenario.label,
        ops: scenario.ops,
        perRound,
        median: medians,
        ratio,
        cacheAsideCounters: counters
      })
      console.log(
        `  ${scenario.label}: raw ${fmtOps(medians["raw"]!)} ops/s, CacheAside ${
          fmtOps(medians["cacheAside"]!)
        } ops/s` +
          ` (${fmtRatio(ratio)})` +
          (WITH_AUTOPIPELINE ? `, raw+autopipelining ${fmtOps(medians["rawAutoPipeline"]!)} ops/s` : "")
      )
      if ((counters["cacheErrors"] ?? 0) > 0 || (counters["fallbacks"] ?? 0) > 0) {
        console.log(`    warning: CacheAside saw cache errors/fallbacks: ${JSON.stringify(counters)}`)
      }
    }

    const notes = [
      "Medians of per-round ops/sec; rounds interleave the contenders in rotating order.",
      "raw ioredis: `new Redis(url)` with default options (no auto-pipelining); hit = GET + JSON.parse to a plain " +
      "object (createdAt stays a string); miss = GET (null) + lookup + SET key JSON EX 3600.",
      "CacheAside: RedisCacheStore.layer({ url }) with its defaults (commandTimeout 250ms; every read through the " +
      "bounded read script, a lone read sent at once and the others of a turn in one call; no ioredis " +
      "auto-pipelining; wrapped in ResilientCacheStore: breaker + invalidation queue) + Metrics.layer; it does more " +
      "per hit than raw: a JSON envelope ({v, x, d}), Schema decode of a Schema.Class User with a Date field (once " +
      "per distinct stored bytes), hit/miss metrics, in-flight coalescing; a miss's read takes its lease in the " +
      "same script, the load runs in a fiber of its own, the TTL is jittered and the fill is a compare-and-set " +
      "script (the fills of one phase of the event loop in one call).",
      "Scenario c: CacheAside coalesces concurrent gets of one key into one Redis read; raw sends every GET."
    ]

    // a run whose store calls failed (timeouts, open breaker) measured fallbacks to the lookup, not the cache
    const flag = (r: ScenarioResult): string => {
      const failed = r.cacheAsideCounters["cacheErrors"] ?? 0
      return failed > 0 ? ` (warning: ${failed} store errors, ${r.cacheAsideCounters["fallbacks"] ?? 0} fallbacks)` : ""
    }
    const rows = results.map((r) =>
      `| ${r.label} | ${fmtOps(r.median["raw"]!)} | ${fmtOps(r.median["cacheAside"]!)}${flag(r)} | ${
        fmtRatio(r.ratio)
      } |` +
      (WITH_AUTOPIPELINE ? ` ${fmtOps(r.median["rawAutoPipeline"]!)} |` : "")
    )
    const table = [
      "| scenario | raw ioredis ops/s | CacheAside ops/s | ratio (CacheAside/raw, >1 = faster) |" +
      (WITH_AUTOPIPELINE ? " raw ioredis + autopipelining ops/s |" : ""),
      "| --- | ---: | ---: | ---: |" + (WITH_AUTOPIPELINE ? " ---: |" : ""),
      ...rows
    ].join("\n")

    console.log("")
    console.log(table)
    console.log("")
    console.log(
      `machine: ${machine.cpu}, nproc ${machine.nproc}, ${machine.os}; Node ${machine.node}; ` +
        `redis-server ${redisVersion}${server.spawned ? " (spawned, same machine)" : " (REDIS_URL)"}`
    )
    console.log(`packages: ${Object.entries(packages).map(([k, v]) => `${k} ${v}`).join(", ")}`)
    console.log(
      `${SEQUENTIAL_OPS} ops per sequential run, ${OPS} per concurrent run (${CONCURRENCY} in flight), ` +
        `${ROUNDS} rounds, medians of per-round ops/s`
    )
    for (const note of notes) console.log(`- ${note}`)

    const json = {
      benchmark: "hit-miss",
      date: new Date().toISOString(),
      machine,
      redis: { version: redisVersion, spawned: server.spawned },
      packages,
      config: {
        sequentialOps: SEQUENTIAL_OPS,
        concurrentOps: OPS,
        rounds: ROUNDS,
        warmup: "one unmeasured run of a quarter of the ops per contender and scenario",
        concurrency: CONCURRENCY,
        distinctKeys: DISTINCT_KEYS
      },
      contenders: contenders.map((c) => ({ id: c.id, label: c.label })),
      notes,
      scenarios: results,
      durationSeconds: Math.round((performance.now() - startedAt) / 100) / 10
    }
    // a partial run (BENCH_ONLY) does not overwrite the full results
    const fileName = ONLY === undefined ? "hit-miss.json" : `hit-miss.only-${ONLY.join("")}.json`
    const out = new URL(`../results/${fileName}`, import.meta.url)
    Fs.mkdirSync(new URL(".", out), { recursive: true })
    Fs.writeFileSync(out, JSON.stringify(json, null, 2) + "\n")
    console.log(`\nwrote bench/results/${fileName} (${json.durationSeconds}s)`)
  } finally {
    for (const c of contenders) await c.close().catch(() => {})
    await server.stop()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
