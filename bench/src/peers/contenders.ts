/**
 * The peers benchmark's contenders, each a get-or-load of a `Row` by key on the same Redis:
 * hand-written cache-aside on raw ioredis, BentoCache (Redis only; memory L1 + Redis + bus),
 * cache-manager 7 with @keyv/redis, CacheAside (Redis only; with its near cache; through Promises
 * by `PromiseCache`, as a non-Effect caller uses it), and the floor:
 * `runPromise` of a bare `Effect.succeed`, the cost of entering the Effect runtime per call.
 */
import * as CacheAside from "@cache-aside/core/CacheAside"
import * as Metrics from "@cache-aside/core/Metrics"
import type * as NearCache from "@cache-aside/core/NearCache"
import * as PromiseCache from "@cache-aside/core/PromiseCache"
import * as RedisCacheBus from "@cache-aside/redis/RedisCacheBus"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import KeyvRedis from "@keyv/redis"
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis"
import { createCache } from "cache-manager"
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
import { makeScoped } from "../scoped.js"
import { type Row, rowOf } from "./workloads.js"

/** Time-to-live of every cached row (long: no workload waits for an expiry). */
export const TTL_MILLIS = 3_600_000
/** Entries an in-process L1 (BentoCache's memory driver, CacheAside's near cache) may hold. */
export const L1_ENTRIES = 10_000

/**
 * The near-cache contender's option, passed to `CacheAside.make` as `nearCache`. ONE LINE to
 * switch it: `undefined` drops the contender. Should a near cache answer nothing from memory, the
 * report flags the contender ("INACTIVE": about one Redis command per hit on A).
 */
export const NEAR_CACHE: NearCache.Options | undefined = {
  maxEntries: L1_ENTRIES,
  ttl: "1 minute"
}

/** The data store behind every cache: answers `rowOf(key)` after `delayMillis`, and counts its loads. */
export class Database {
  delayMillis = 0
  loads = 0

  readonly load = (key: string): Promise<Row> => {
    this.loads++
    const row = rowOf(key)
    return this.delayMillis === 0
      ? Promise.resolve(row)
      : new Promise((resolve) => setTimeout(() => resolve(row), this.delayMillis))
  }

  /** The lookup as an Effect user writes it: synchronous when instant, else the driver's promise. */
  readonly loadEffect = (key: string): Effect.Effect<Option.Option<Row>> =>
    this.delayMillis === 0
      ? Effect.sync(() => {
        this.loads++
        return Option.some(rowOf(key))
      })
      : Effect.map(Effect.promise(() => this.load(key)), Option.some)
}

export interface Contender {
  readonly id: string
  readonly label: string
  readonly db: Database
  /** A get through Promises, as a non-Effect caller makes it. */
  readonly get: (key: string) => Promise<Row | undefined>
  /** A get inside an Effect program; `undefined`: the contender does not run in that mode. */
  readonly getEffect: ((key: string) => Effect.Effect<Row | undefined, unknown>) | undefined
  /** The library's own counters (CacheAside's Metrics snapshot), to spot store errors. */
  readonly counters?: (() => Promise<Record<string, number>>) | undefined
  readonly close: () => Promise<void>
}

/** How an Effect user wraps a Promise-based cache. */
const wrapped = (get: (key: string) => Promise<Row | undefined>) => (key: string) => Effect.promise(() => get(key))

const hostPort = (url: string) => {
  const parsed = new URL(url)
  return { host: parsed.hostname, port: Number(parsed.port) }
}

/** Hand-written cache-aside on ioredis with its default options: GET + JSON.parse; miss: lookup + SET PX. */
export const raw = (url: string): Contender => {
  const db = new Database()
  const redis = new Redis(url)
  const get = async (key: string): Promise<Row> => {
    const cached = await redis.get(`raw:${key}`)
    if (cached !== null) return JSON.parse(cached) as Row
    const row = await db.load(key)
    await redis.set(`raw:${key}`, JSON.stringify(row), "PX", TTL_MILLIS)
    return row
  }
  return {
    id: "raw",
    label: "raw ioredis",
    db,
    get,
    getEffect: wrapped(get),
    close: async () => void (await redis.quit())
  }
}

/** BentoCache: Redis only (L2), or with a memory L1 kept coherent by its Redis bus. */
export const bentocache = (url: string, withL1: boolean): Contender => {
  const db = new Database()
  const connection = hostPort(url)
  const store = withL1
    ? bentostore({ prefix: "bento-l1" })
      .useL1Layer(memoryDriver({ maxItems: L1_ENTRIES }))
      .useL2Layer(redisDriver({ connection }))
      .useBus(redisBusDriver({ connection }))
    : bentostore({ prefix: "bento-l2" }).useL2Layer(redisDriver({ connection }))
  const bento = new BentoCache({ default: "store", stores: { store } })
  const get = (key: string) => bento.getOrSet({ key, factory: () => db.load(key), ttl: TTL_MILLIS })
  return {
    id: withL1 ? "bentocache-l1" : "bentocache",
    label: withL1 ? "BentoCache (memory L1 + Redis + bus)" : "BentoCache (Redis only)",
    db,
    get,
    getEffect: wrapped(get),
    close: () => bento.disconnectAll()
  }
}

/** cache-manager 7 over Keyv and @keyv/redis (node-redis); `wrap` coalesces concurrent loads. */
export const cacheManager = (url: string): Contender => {
  const db = new Database()
  const cache = createCache({ stores: [new Keyv({ store: new KeyvRedis(url), namespace: "cm" })] })
  const get = (key: string) => cache.wrap(key, () => db.load(key), TTL_MILLIS)
  return {
    id: "cache-manager",
    label: "cache-manager 7 + @keyv/redis",
    db,
    get,
    getEffect: wrapped(get),
    close: async () => void (await cache.disconnect())
  }
}

const RowSchema = Schema.Struct({ id: Schema.String, name: Schema.String, email: Schema.String, score: Schema.Number })

/**
 * `CacheAside.make` with its defaults, built once in a `ManagedRuntime`, on
 * `RedisCacheStore.layer({ url })`; with a near cache on `RedisCacheBus.layer({ url })` (the store
 * and the bus that keeps near caches coherent: pub/sub and Redis client-side caching). The handle
 * lives in a `Scope` of its own that `close` closes.
 */
export const cacheAside = async (url: string, nearCache: NearCache.Options | undefined): Promise<Contender> => {
  const db = new Database()
  const store = nearCache === undefined
    ? RedisCacheStore.layer({ url: Redacted.make(url) })
    : RedisCacheBus.layer({ url: Redacted.make(url) })
  const runtime = ManagedRuntime.make(
    Layer.provideMerge(store, Metrics.layer).pipe(Layer.merge(Logger.minimumLogLevel(LogLevel.Error)))
  )
  const namespace = nearCache === undefined ? "peers" : "peers-near"
  const scoped = await makeScoped(
    runtime,
    CacheAside.make({
      namespace,
      key: (key: string) => key,
      schema: RowSchema,
      lookup: db.loadEffect,
      ttl: `${TTL_MILLIS} millis`,
      nearCache: nearCache ?? false
    })
  )
  const cache = scoped.value
  const metrics = await runtime.runPromise(Metrics.Metrics)
  const getEffect = (key: string) => Effect.map(cache.get(key), Option.getOrUndefined)
  const promises = PromiseCache.make(cache, await runtime.runtime())
  return {
    id: nearCache === undefined ? "cache-aside" : "cache-aside-near",
    label: nearCache === undefined ? "CacheAside (Redis only)" : "CacheAside + near cache",
    db,
    // as a non-Effect caller calls it: `PromiseCache.get` (near hits and joins start no fiber; every
    // other get is a `runPromise`), or with `BENCH_RUN_PROMISE=1` a `runPromise` of every get
    get: process.env["BENCH_RUN_PROMISE"] === "1"
      ? (key) => runtime.runPromise(getEffect(key))
      : (key) => promises.get(key).then(Option.getOrUndefined),
    getEffect,
    counters: async () => {
      const snapshot = await runtime.runPromise(metrics.snapshot(namespace))
      const numbers: Record<string, number> = {}
      // counts only: a run's change of `hitRatio` (a ratio over the cache's life) means nothing
      for (const [name, value] of Object.entries(snapshot)) {
        if (typeof value === "number" && name !== "hitRatio") numbers[name] = value
      }
      return numbers
    },
    close: scoped.close
  }
}

/** The floor: `runPromise` of a bare `Effect.succeed` per call, on a `ManagedRuntime`, no cache and no I/O. */
export const floor = (): Contender => {
  const db = new Database()
  const runtime = ManagedRuntime.make(Layer.empty)
  return {
    id: "floor",
    label: "floor: runPromise(Effect.succeed)",
    db,
    get: (key) => runtime.runPromise(Effect.succeed(rowOf(key))),
    getEffect: undefined,
    close: () => runtime.dispose()
  }
}
