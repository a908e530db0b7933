/**
 * The Redis client as a narrow service: the few commands the Redis store needs, each failing with
 * `CacheUnavailable`. This is the only module of the package that talks to `ioredis`, so another
 * client (node-redis, a cluster client) can be added behind the same service later.
 *
 * Building the layer never fails when Redis is down: the client keeps reconnecting in the
 * background and each operation fails fast with `CacheUnavailable` until Redis is back.
 *
 * @since 0.1.0
 */
import { CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { Redis, ReplyError } from "ioredis"
import type { RedisOptions } from "ioredis"

/**
 * The `ioredis` client type accepted by `fromClient` / `layerFromClient`.
 *
 * @since 0.1.0
 */
export type IORedis = Redis

/**
 * The operations the Redis store needs. Keys are given without the client's `keyPrefix`: the
 * client adds it, except for `scan`'s `match` pattern and the keys `scan` returns (Redis does not
 * know about the prefix there), which is why `keyPrefix` is exposed.
 *
 * @since 0.1.0
 */
export interface Service {
  /** The prefix the client adds to every key (`""` when none). */
  readonly keyPrefix: string
  /**
   * The ioredis connection behind the service, for `RedisCacheBus` (which enables client-side
   * caching on it and duplicates it for its subscriber). Not for application code.
   */
  readonly connection?: IORedis | undefined
  /** `GET key` as bytes. */
  readonly getBuffer: (key: string) => Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>
  /** `MGET keys...` as bytes, aligned with `keys`. An empty list makes no round-trip. */
  readonly mgetBuffer: (
    keys: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<Option.Option<Uint8Array>>, CacheUnavailable>
  /** `SET key value PX millis`. */
  readonly setPx: (key: string, value: Uint8Array, millis: number) => Effect.Effect<void, CacheUnavailable>
  /** `SET key value PX millis NX`; `true` when written. */
  readonly setNxPx: (key: string, value: Uint8Array, millis: number) => Effect.Effect<boolean, CacheUnavailable>
  /**
   * Sets `key` to `value` with `PX millis` only if its current value's SHA-1 is `expectedSha1`
   * (hex), atomically in a Lua script; `true` when written.
   */
  readonly compareAndSetPx: (
    key: string,
    expectedSha1: string,
    value: Uint8Array,
    millis: number
  ) => Effect.Effect<boolean, CacheUnavailable>
  /** Deletes `key` only if its current value's SHA-1 is `expectedSha1` (hex), atomically; `true` when deleted. */
  readonly compareAndDelete: (key: string, expectedSha1: string) => Effect.Effect<boolean, CacheUnavailable>
  /** `UNLINK keys...`; returns how many existed. An empty list makes no round-trip. */
  readonly unlink: (keys: ReadonlyArray<string>) => Effect.Effect<number, CacheUnavailable>
  /**
   * `SCAN cursor MATCH match COUNT count`. `match` is sent as is (the client's `keyPrefix` is not
   * added to it) and the returned keys include the prefix.
   */
  readonly scan: (
    cursor: string,
    match: string,
    count: number
  ) => Effect.Effect<readonly [cursor: string, keys: ReadonlyArray<string>], CacheUnavailable>
}

/**
 * The Redis client service.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const program = Effect.gen(function* () {
 *   const redis = yield* RedisClient.RedisClient
 *   return yield* redis.getBuffer("key")
 * })
 * ```
 *
 * @since 0.1.0
 */
export class RedisClient extends Context.Tag("@cache-aside/redis/RedisClient")<RedisClient, Service>() {}

/**
 * Connection options. Defaults are chosen for a cache, where a slow answer is worse than none:
 * commands time out after `commandTimeout`, commands are not queued while disconnected (they fail
 * at once with `CacheUnavailable`), and the client reconnects forever with a backoff capped at 1s.
 *
 * @since 0.1.0
 */
export interface Options {
  /** A `redis://` or `rediss://` URL. Fields given below override the URL's. */
  readonly url?: Redacted.Redacted<string> | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly db?: number | undefined
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  /** Prepended to every key by the client. Default: none. */
  readonly keyPrefix?: string | undefined
  /** How long a command may take before it fails with `CacheUnavailable`. Default 250 millis. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /**
   * How long to wait for the first connection (the layer is built anyway when Redis is down), and
   * the socket connect timeout. Default 1 second.
   */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** An error reply (`OOM`, `READONLY`, ...) means Redis is up and answering: `replied` says so. */
/** ioredis rejects a command that passed `commandTimeout` with a plain `Error("Command timed out")`. */
const isCommandTimeout = (cause: unknown): boolean => cause instanceof Error && cause.message === "Command timed out"

const unavailable = (operation: string) => (cause: unknown) =>
  new CacheUnavailable({
    operation,
    cause: isCommandTimeout(cause)
      ? new Cause.TimeoutException(`Redis did not answer ${operation} within the command timeout`)
      : cause,
    replied: cause instanceof ReplyError
  })

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * Waits until `promise` settles or `millis` pass (on a real timer, so that a `TestClock` cannot
 * stall it), ignoring the outcome. Interruptible.
 */
const settledWithin = (millis: number, promise: () => Promise<unknown>): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    const done = () => {
      clearTimeout(timer)
      resume(Effect.void)
    }
    try {
      promise().then(done, done)
    } catch {
      done()
    }
    return Effect.sync(() => clearTimeout(timer))
  })

/** Waits until the client is ready, fails to connect, gives up, or `millis` pass. Never fails. */
const readyWithin = (client: Redis, millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (client.status === "ready") return resume(Effect.void)
    const cleanup = () => {
      clearTimeout(timer)
      client.off("ready", done)
      client.off("end", done)
      client.off("error", done)
    }
    const done = () => {
      cleanup()
      resume(Effect.void)
    }
    const timer = setTimeout(done, millis)
    client.on("ready", done)
    client.on("end", done)
    // a refused connection: Redis is down, the client keeps reconnecting in the background
    client.on("error", done)
    return Effect.sync(cleanup)
  })

const compareAndSetScript = `
local current = redis.call("GET", KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
  return 1
end
return 0
`

const compareAndDeleteScript = `
local current = redis.call("GET", KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`

interface Scripts {
  readonly cacheAsideCompareAndSet: (
    key: string,
    expectedSha1: string,
    value: Buffer,
    millis: number
  ) => Promise<number>
  readonly cacheAsideCompareAndDelete: (key: string, expectedSha1: string) => Promise<number>
}

/** Defines the scripts on the client once (ioredis runs them with EVALSHA, falling back to EVAL after a SCRIPT FLUSH). */
const scripts = (client: Redis): Scripts => {
  const candidate = client as unknown as Partial<Scripts>
  if (typeof candidate.cacheAsideCompareAndSet !== "function") {
    client.defineCommand("cacheAsideCompareAndSet", { numberOfKeys: 1, lua: compareAndSetScript })
  }
  if (typeof candidate.cacheAsideCompareAndDelete !== "function") {
    client.defineCommand("cacheAsideCompareAndDelete", { numberOfKeys: 1, lua: compareAndDeleteScript })
  }
  return client as unknown as Scripts
}

type Read = (result: Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>) => void

const toOption = (buffer: Buffer | null | undefined): Option.Option<Uint8Array> =>
  buffer === null || buffer === undefined ? Option.none() : Option.some(buffer)

/**
 * Single-key reads, batched: the first `GET` of a turn goes out at once; every other one asked for
 * while the current batch of fibers runs goes out as ONE `MGET` when they yield (a microtask), so
 * 64 concurrent gets cost two commands instead of 64, and a lone get adds no delay. This is what ioredis'
 * auto-pipelining does for any command, but without its per-batch pipeline object and its
 * `setImmediate` delay, which double the cost of a sequential get.
 */
const readBatcher = (client: Redis) => {
  let keys: Array<string> = []
  let waiters: Array<Read> = []
  const fail = (batch: ReadonlyArray<Read>) => (cause: unknown) => {
    const error = Effect.fail(unavailable("get")(cause))
    for (const waiter of batch) waiter(error)
  }
  const flush = () => {
    const batchKeys = keys
    const batch = waiters
    keys = []
    waiters = []
    if (batch.length === 1) {
      client.getBuffer(batchKeys[0]!).then((buffer) => batch[0]!(Effect.succeed(toOption(buffer))), fail(batch))
      return
    }
    client.mgetBuffer(...batchKeys).then((buffers) => {
      for (let i = 0; i < batch.length; i++) batch[i]!(Effect.succeed(toOption(buffers[i])))
    }, fail(batch))
  }
  let scheduled = false
  const flushLater = () => {
    scheduled = false
    if (waiters.length > 0) flush()
  }
  return (key: string): Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable> =>
    Effect.async((resume) => {
      if (!scheduled) {
        // the first read of a turn goes out at once (no added latency for a lone get); reads that
        // follow in the same turn gather into one MGET sent when the turn yields
        scheduled = true
        queueMicrotask(flushLater)
        client.getBuffer(key).then((buffer) => resume(Effect.succeed(toOption(buffer))), fail([resume]))
        return
      }
      keys.push(key)
      waiters.push(resume)
    })
}

/**
 * Wraps an `ioredis` client as the service. Does not own the client: closing it is the caller's job.
 *
 * @example
 * ```ts
 * import { Redis, ReplyError } from "ioredis"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const service = RedisClient.fromClient(new Redis(process.env.REDIS_URL!))
 * ```
 *
 * @since 0.1.0
 */
export const fromClient = (client: IORedis): Service => {
  const prefix = client.options.keyPrefix ?? ""
  return {
    keyPrefix: prefix,
    connection: client,
    getBuffer: readBatcher(client),
    mgetBuffer: (keys) =>
      keys.length === 0
        ? Effect.succeed([])
        : Effect.tryPromise({
          try: () => client.mgetBuffer(...keys),
          catch: unavailable("getMany")
        }).pipe(Effect.map((buffers) =>
          keys.map((_, i) => {
            const buffer = buffers[i]
            return toOption(buffer)
          })
        )),
    setPx: (key, value, millis) =>
      Effect.tryPromise({
        try: () => client.set(key, toBuffer(value), "PX", millis),
        catch: unavailable("set")
      }).pipe(Effect.asVoid),
    setNxPx: (key, value, millis) =>
      Effect.tryPromise({
        try: () => client.set(key, toBuffer(value), "PX", millis, "NX"),
        catch: unavailable("setIfAbsent")
      }).pipe(Effect.map((reply) => reply === "OK")),
    compareAndSetPx: (key, expectedSha1, value, millis) =>
      Effect.tryPromise({
        try: () => scripts(client).cacheAsideCompareAndSet(key, expectedSha1, toBuffer(value), millis),
        catch: unavailable("compareAndSet")
      }).pipe(Effect.map((written) => written === 1)),
    compareAndDelete: (key, expectedSha1) =>
      Effect.tryPromise({
        try: () => scripts(client).cacheAsideCompareAndDelete(key, expectedSha1),
        catch: unavailable("compareAndDelete")
      }).pipe(Effect.map((deleted) => deleted === 1)),
    unlink: (keys) =>
      keys.length === 0
        ? Effect.succeed(0)
        : Effect.tryPromise({
          try: () => client.unlink(...keys),
          catch: unavailable("delete")
        }),
    scan: (cursor, match, count) =>
      Effect.tryPromise({
        try: () => client.scan(cursor, "MATCH", match, "COUNT", count),
        catch: unavailable("deletePattern")
      })
  }
}

/**
 * The default command timeout: a hung Redis fails a command after this.
 *
 * @since 0.1.0
 */
export const defaultCommandTimeout: Duration.Duration = Duration.millis(250)
const defaultConnectTimeout = Duration.seconds(1)
const quitTimeoutMillis = 1000

const toRedisOptions = (options: Options): RedisOptions => {
  const commandTimeout = Duration.toMillis(Duration.decode(options.commandTimeout ?? defaultCommandTimeout))
  const connectTimeout = Duration.toMillis(Duration.decode(options.connectTimeout ?? defaultConnectTimeout))
  const redisOptions: RedisOptions = {
    // safe defaults for a cache first
    lazyConnect: false,
    // writes (lease, fill, set) are auto-pipelined; reads are batched into MGET by `readBatcher`,
    // which costs less per command and adds no setImmediate delay to a lone get
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: ["get", "mget"],
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: Math.max(1, Math.ceil(commandTimeout)),
    connectTimeout: Math.max(1, Math.ceil(connectTimeout)),
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000)
  }
  if (options.host !== undefined) redisOptions.host = options.host
  if (options.port !== undefined) redisOptions.port = options.port
  if (options.db !== undefined) redisOptions.db = options.db
  if (options.username !== undefined) redisOptions.username = options.username
  if (options.password !== undefined) redisOptions.password = Redacted.value(options.password)
  if (options.keyPrefix !== undefined && options.keyPrefix !== "") redisOptions.keyPrefix = options.keyPrefix
  return redisOptions
}

/**
 * Creates a client owned by the scope. Waits for the first connection at most `connectTimeout`,
 * and succeeds even when Redis is down. On release: `QUIT`, bounded by one second, then
 * `disconnect()`, so a hung Redis never hangs shutdown.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const program = Effect.gen(function* () {
 *   const redis = yield* RedisClient.make({ url: Redacted.make("redis://localhost:6379") })
 *   return yield* redis.getBuffer("key")
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const redisOptions = toRedisOptions(options)
    const connectTimeout = redisOptions.connectTimeout ?? 1000
    const runtime = yield* Effect.runtime<never>()
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = options.url === undefined
          ? new Redis(redisOptions)
          : new Redis(Redacted.value(options.url), redisOptions)
        // Errors surface per operation as CacheUnavailable; an unhandled "error" event would crash the process.
        client.on("error", (error: unknown) => {
          Runtime.runFork(runtime)(Effect.logDebug("redis client error", error))
        })
        return client
      }),
      (client) =>
        Effect.gen(function*() {
          if (client.status === "ready") {
            yield* settledWithin(quitTimeoutMillis, () => client.quit())
          }
          client.disconnect(false)
        })
    )
    yield* readyWithin(client, connectTimeout)
    return fromClient(client)
  })

/**
 * A layer with a client owned by the layer.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const RedisLive = RedisClient.layer({ url: Redacted.make("redis://localhost:6379"), keyPrefix: "app:" })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<RedisClient> => Layer.scoped(RedisClient, make(options))

/**
 * A layer reading its options from `Config`.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const RedisLive = RedisClient.layerFromConfig({
 *   url: Config.redacted("CACHE_REDIS_URL"),
 *   commandTimeout: Config.duration("CACHE_REDIS_TIMEOUT").pipe(Config.withDefault("250 millis"))
 * })
 * ```
 *
 * @since 0.1.0
 */
export const layerFromConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<RedisClient, ConfigError.ConfigError> =>
  Layer.scoped(RedisClient, Effect.flatMap(Config.unwrap(config), make))

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/**
 * Options from the environment: `REDIS_URL` (required), and optionally `REDIS_KEY_PREFIX`,
 * `REDIS_COMMAND_TIMEOUT` and `REDIS_CONNECT_TIMEOUT` (durations such as `500 millis`).
 *
 * @example
 * ```ts
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const RedisLive = RedisClient.layerFromConfig(RedisClient.config)
 * ```
 *
 * @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.redacted("REDIS_URL"),
  keyPrefix: optional(Config.string("REDIS_KEY_PREFIX")),
  commandTimeout: optional(Config.duration("REDIS_COMMAND_TIMEOUT")),
  connectTimeout: optional(Config.duration("REDIS_CONNECT_TIMEOUT"))
})

/**
 * `layerFromConfig(config)`: a client configured from `REDIS_URL` and friends (see `config`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const main = Effect.void.pipe(Effect.provide(RedisClient.layerConfig))
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<RedisClient, ConfigError.ConfigError> = layerFromConfig(config)

/**
 * A layer over a client the caller owns: it is never closed by this library.
 *
 * @example
 * ```ts
 * import { Redis, ReplyError } from "ioredis"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const redis = new Redis("redis://localhost:6379")
 * const RedisLive = RedisClient.layerFromClient(redis)
 * ```
 *
 * @since 0.1.0
 */
export const layerFromClient = (client: IORedis): Layer.Layer<RedisClient> =>
  Layer.sync(RedisClient, () => fromClient(client))
