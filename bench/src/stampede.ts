/**
 * Lookups per expiry of one hot key under a steady load from several processes, on one Redis, in
 * one run: CacheAside with and without the lock, a hand-written cache-aside on raw ioredis,
 * BentoCache (Redis L2 only) and cache-manager (Keyv + @keyv/redis). See bench/README.md.
 *
 * The parent spawns a redis-server (or uses `REDIS_URL`), then, for each contender in turn,
 * flushes Redis and spawns `BENCH_PROCESSES` children (this same file, `child` argument). Each
 * child runs `BENCH_LOOPS` request loops of getOrSet on the hot key until a shared deadline. The
 * lookup takes `BENCH_LOOKUP_MS` and records its start time in Redis (`RPUSH`, next to an `INCR`
 * counter); the parent groups lookup start times into bursts (a new burst starts more than half
 * a TTL after the previous one began): one burst per expiry.
 *
 * Environment: `REDIS_URL`, `BENCH_PROCESSES` (4), `BENCH_LOOPS` (50), `BENCH_SECONDS` (6),
 * `BENCH_TTL_MS` (1000), `BENCH_LOOKUP_MS` (50), `BENCH_THINK_MS` (10: pause between two
 * requests of one loop), `BENCH_ONLY` (contender ids, comma-separated).
 */
// module paths, not the packages' index: every contender starts 4 child processes through tsx
import * as CacheAside from "@cache-aside/core/CacheAside"
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import KeyvRedis from "@keyv/redis"
import { BentoCache, bentostore } from "bentocache"
import { redisDriver } from "bentocache/drivers/redis"
import { createCache } from "cache-manager"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { Keyv } from "keyv"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { redisVersion as readRedisVersion, startRedis } from "./redis-server.js"
import { makeScoped } from "./scoped.js"

// ---------------------------------------------------------------------------------------------
// configuration

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name]
  const parsed = raw === undefined ? Number.NaN : Number.parseInt(raw, 10)
  return Number.isFinite(parsed) && parsed >= 0 ? parsed : fallback
}

interface Settings {
  readonly processes: number
  readonly loops: number
  readonly seconds: number
  readonly ttlMillis: number
  readonly lookupMillis: number
  readonly thinkMillis: number
}

const settings: Settings = {
  processes: envInt("BENCH_PROCESSES", 4),
  loops: envInt("BENCH_LOOPS", 50),
  seconds: envInt("BENCH_SECONDS", 6),
  ttlMillis: envInt("BENCH_TTL_MS", 1000),
  lookupMillis: envInt("BENCH_LOOKUP_MS", 50),
  thinkMillis: envInt("BENCH_THINK_MS", 10)
}

const HOT_KEY = "hot"
const COUNTER_KEY = "bench:lookups"
const TIMES_KEY = "bench:lookup-times"
const GO_KEY = "bench:go"
const MARKER = "@@ "
/** Latencies a child keeps (a reservoir sample when it serves more). */
const SAMPLE = 20_000

const contenders = [
  { id: "cache-aside-lock", label: "CacheAside, lock on" },
  { id: "cache-aside", label: "CacheAside, lock off" },
  { id: "raw", label: "raw ioredis (GET; miss: lookup + SET PX)" },
  { id: "bentocache", label: "bentocache (Redis L2 only)" },
  { id: "cache-manager", label: "cache-manager + @keyv/redis" }
] as const

type ContenderId = typeof contenders[number]["id"]

const ONLY = process.env["BENCH_ONLY"]?.split(",").map((s) => s.trim()).filter((s) => s.length > 0)

// ---------------------------------------------------------------------------------------------
// child: one process of the fleet

interface Row {
  readonly id: string
  readonly name: string
}

const RowSchema = Schema.Struct({ id: Schema.String, name: Schema.String })

interface ChildConfig {
  readonly contender: ContenderId
  readonly url: string
  readonly settings: Settings
}

interface ChildResult {
  readonly requests: number
  readonly errors: number
  readonly wrong: number
  readonly latencies: ReadonlyArray<number>
  readonly extra: Record<string, number>
}

/** A getOrSet on the hot key, with the process' shared lookup. */
interface Driver {
  readonly get: () => Promise<Row>
  readonly close: () => Promise<void>
  readonly extra?: () => Promise<Record<string, number>>
}

const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

const makeLookup = (counter: Redis, lookupMillis: number) => async (): Promise<Row> => {
  await counter.multi().incr(COUNTER_KEY).rpush(TIMES_KEY, String(Date.now())).exec()
  await sleep(lookupMillis)
  return { id: HOT_KEY, name: "hot row" }
}

const makeDriver = async (config: ChildConfig, lookup: () => Promise<Row>): Promise<Driver> => {
  const { ttlMillis } = config.settings
  switch (config.contender) {
    case "cache-aside-lock":
    case "cache-aside": {
      const layer = Layer.provideMerge(
        // a generous command timeout: a timed-out read falls back to the lookup, which would
        // count against CacheAside here (the table reports cacheErrors)
        RedisCacheStore.layer({ url: Redacted.make(config.url), commandTimeout: "1 second" }),
        Metrics.layer
      )
      const runtime = ManagedRuntime.make(layer)
      const scoped = await makeScoped(
        runtime,
        CacheAside.make({
          namespace: "bench",
          key: (key: string) => key,
          schema: RowSchema,
          lookup: () => Effect.map(Effect.promise(lookup), Option.some),
          ttl: Duration.millis(ttlMillis),
          jitter: 0,
          lock: config.contender === "cache-aside-lock"
        })
      )
      const cache = scoped.value
      const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("bench"))
      const quiet = Logger.withMinimumLogLevel(LogLevel.Error)
      return {
        get: () => runtime.runPromise(quiet(cache.get(HOT_KEY))).then((value) => Option.getOrThrow(value)),
        close: scoped.close,
        extra: async () => {
          const s = await runtime.runPromise(snapshot)
          return {
            loads: s.loads,
            coalesced: s.coalesced,
            lockWaits: s.lockWaits,
            lockTimeouts: s.lockTimeouts,
            cacheErrors: s.cacheErrors,
            fallbacks: s.fallbacks
          }
        }
      }
    }
    case "raw": {
      const redis = new Redis(config.url)
      return {
        get: async () => {
          const cached = await redis.get(`raw:${HOT_KEY}`)
          if (cached !== null) return JSON.parse(cached) as Row
          const row = await lookup()
          await redis.set(`raw:${HOT_KEY}`, JSON.stringify(row), "PX", ttlMillis)
          return row
        },
        close: async () => {
          await redis.quit()
        }
      }
    }
    case "bentocache": {
      const url = new URL(config.url)
      const bento = new BentoCache({
        default: "redis",
        stores: {
          redis: bentostore().useL2Layer(
            redisDriver({ connection: { host: url.hostname, port: Number(url.port) } })
          )
        }
      })
      return {
        get: () => bento.getOrSet({ key: HOT_KEY, factory: lookup, ttl: ttlMillis, grace: false }),
        close: () => bento.disconnectAll()
      }
    }
    case "cache-manager": {
      const cache = createCache({ stores: [new Keyv({ store: new KeyvRedis(config.url), namespace: "cm" })] })
      return {
        get: () => cache.wrap(HOT_KEY, lookup, ttlMillis),
        close: async () => {
          await cache.disconnect()
        }
      }
    }
  }
}

/** Writes one event line for the parent; resolves once it is flushed (the child exits right after). */
const emit = (event: object) =>
  new Promise<void>((resolve) => process.stdout.write(`${MARKER}${JSON.stringify(event)}\n`, () => resolve()))

const runChild = async (config: ChildConfig) => {
  const counter = new Redis(config.url)
  const lookup = makeLookup(counter, config.settings.lookupMillis)
  const driver = await makeDriver(config, lookup)
  await counter.ping()
  await emit({ event: "ready" })
  let go: string | null = null
  while ((go = await counter.get(GO_KEY)) === null) await sleep(5)
  const start = Number(go)
  const deadline = start + config.settings.seconds * 1000
  await sleep(Math.max(0, start - Date.now()))

  let requests = 0
  let errors = 0
  let wrong = 0
  const latencies: Array<number> = []
  const record = (millis: number) => {
    requests++
    if (latencies.length < SAMPLE) latencies.push(millis)
    else {
      const i = Math.floor(Math.random() * requests)
      if (i < SAMPLE) latencies[i] = millis
    }
  }
  const loop = async () => {
    while (Date.now() < deadline) {
      const t0 = performance.now()
      try {
        const row = await driver.get()
        if (row.name !== "hot row") wrong++
        record(performance.now() - t0)
      } catch {
        errors++
      }
      if (config.settings.thinkMillis > 0) await sleep(config.settings.thinkMillis)
    }
  }
  await Promise.all(Array.from({ length: config.settings.loops }, loop))
  const extra = driver.extra === undefined ? {} : await driver.extra()
  const result: ChildResult = { requests, errors, wrong, latencies, extra }
  await emit({ event: "result", ...result })
  await driver.close()
  await counter.quit()
}

// ---------------------------------------------------------------------------------------------
// parent: redis-server, children, report

interface Spawned {
  readonly ready: Promise<void>
  readonly result: Promise<ChildResult>
}

const spawnChild = (config: ChildConfig): Spawned => {
  const file = fileURLToPath(import.meta.url)
  const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", file, "child", JSON.stringify(config)], {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["ignore", "pipe", "pipe"]
  })
  const stderr: Array<string> = []
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")))
  let onReady: () => void = () => {}
  let onResult: (result: ChildResult) => void = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  const result = new Promise<ChildResult>((resolve, reject) => {
    onResult = resolve
    child.once("close", (code) => reject(new Error(`${config.contender} child exited (${code}):\n${stderr.join("")}`)))
  })
  let buffered = ""
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    let end: number
    while ((end = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, end)
      buffered = buffered.slice(end + 1)
      if (!line.startsWith(MARKER)) continue
      const event = JSON.parse(line.slice(MARKER.length)) as { event: string } & ChildResult
      if (event.event === "ready") onReady()
      if (event.event === "result") onResult(event)
    }
  })
  // a child that dies before "ready" fails the run instead of hanging it
  return { ready: Promise.race([ready, result.then(() => {})]), result }
}

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

/** Groups lookup start times into bursts: one per expiry (the cold start included). */
const bursts = (times: ReadonlyArray<number>, ttlMillis: number): Array<number> => {
  const sorted = [...times].sort((a, b) => a - b)
  const sizes: Array<number> = []
  let burstStart = Number.NEGATIVE_INFINITY
  for (const t of sorted) {
    if (t - burstStart > ttlMillis / 2) {
      burstStart = t
      sizes.push(0)
    }
    sizes[sizes.length - 1]!++
  }
  return sizes
}

interface Measured {
  readonly id: ContenderId
  readonly label: string
  readonly lookups: number
  readonly expiries: number
  readonly lookupsPerExpiry: number
  readonly maxBurst: number
  readonly requests: number
  readonly errors: number
  readonly wrong: number
  readonly requestsPerSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly extra: Record<string, number>
}

const measure = async (url: string, contender: typeof contenders[number]): Promise<Measured> => {
  const admin = new Redis(url)
  await admin.flushall()
  const children = Array.from(
    { length: settings.processes },
    () => spawnChild({ contender: contender.id, url, settings })
  )
  await Promise.all(children.map((c) => c.ready))
  await admin.set(GO_KEY, String(Date.now() + 200))
  const results = await Promise.all(children.map((c) => c.result))
  const lookups = Number(await admin.get(COUNTER_KEY) ?? 0)
  const times = (await admin.lrange(TIMES_KEY, 0, -1)).map(Number)
  await admin.quit()
  const sizes = bursts(times, settings.ttlMillis)
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b)
  const requests = results.reduce((n, r) => n + r.requests, 0)
  const extra: Record<string, number> = {}
  for (const r of results) {
    for (const [k, v] of Object.entries(r.extra)) extra[k] = (extra[k] ?? 0) + v
  }
  return {
    id: contender.id,
    label: contender.label,
    lookups,
    expiries: sizes.length,
    lookupsPerExpiry: sizes.length === 0 ? 0 : lookups / sizes.length,
    maxBurst: Math.max(0, ...sizes),
    requests,
    errors: results.reduce((n, r) => n + r.errors, 0),
    wrong: results.reduce((n, r) => n + r.wrong, 0),
    requestsPerSecond: requests / settings.seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    extra
  }
}

const readVersion = (pkg: string): string => {
  try {
    const path = fileURLToPath(new URL(`../node_modules/${pkg}/package.json`, import.meta.url))
    return (JSON.parse(Fs.readFileSync(path, "utf8")) as { version?: string }).version ?? "unknown"
  } catch {
    return "unknown"
  }
}

const main = async () => {
  const server = await startRedis({ allowEnv: true })
  try {
    const redisVersion = await readRedisVersion(server.url)
    const selected = ONLY === undefined ? contenders : contenders.filter((c) => ONLY.includes(c.id))
    const measured: Array<Measured> = []
    for (const contender of selected) {
      process.stderr.write(`running ${contender.id}...\n`)
      measured.push(await measure(server.url, contender))
    }
    const fmt = (n: number, digits = 1) => Number.isFinite(n) ? n.toFixed(digits) : "-"
    const lines = [
      `stampede: ${settings.processes} processes × ${settings.loops} request loops on one hot key, ` +
      `TTL ${settings.ttlMillis} ms, lookup ${settings.lookupMillis} ms, think ${settings.thinkMillis} ms, ` +
      `${settings.seconds} s per contender`,
      `Node ${process.version}, redis-server ${redisVersion}${
        server.spawned ? " (spawned, same machine)" : " (REDIS_URL)"
      }, ` +
      `${Os.availableParallelism()} CPUs; bentocache ${readVersion("bentocache")}, ` +
      `cache-manager ${readVersion("cache-manager")}, keyv ${readVersion("keyv")}, ` +
      `@keyv/redis ${readVersion("@keyv/redis")}, ioredis ${readVersion("ioredis")}`,
      "",
      "| contender | lookups | expiries | lookups / expiry | max burst | requests | req/s | errors | p50 ms | p99 ms |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...measured.map((m) =>
        `| ${m.label} | ${m.lookups} | ${m.expiries} | ${fmt(m.lookupsPerExpiry, 2)} | ${m.maxBurst} | ` +
        `${m.requests} | ${Math.round(m.requestsPerSecond)} | ${m.errors + m.wrong} | ${fmt(m.p50Ms, 2)} | ` +
        `${fmt(m.p99Ms, 1)} |`
      )
    ]
    for (const m of measured) {
      if (Object.keys(m.extra).length > 0) {
        lines.push("", `${m.label}: ${Object.entries(m.extra).map(([k, v]) => `${k} ${v}`).join(", ")}`)
      }
    }
    process.stdout.write(lines.join("\n") + "\n")
    const out = new URL("../results/stampede.json", import.meta.url)
    Fs.mkdirSync(new URL(".", out), { recursive: true })
    Fs.writeFileSync(
      out,
      JSON.stringify(
        { date: new Date().toISOString(), node: process.version, redisVersion, settings, measured },
        null,
        2
      ) +
        "\n"
    )
    process.stderr.write(`wrote ${fileURLToPath(out)}\n`)
  } finally {
    await server.stop()
  }
}

if (process.argv[2] === "child") {
  runChild(JSON.parse(process.argv[3] ?? "{}") as ChildConfig).then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`child failed: ${error instanceof Error ? error.stack : String(error)}\n`)
      process.exit(1)
    }
  )
} else {
  main().catch((error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  })
}
