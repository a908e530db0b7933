/**
 * The Redis client as a narrow service: the few commands the Redis store needs, each failing with
 * `CacheUnavailable`. This is the only module of the package that talks to `ioredis`, so another
 * client (node-redis, a cluster client) can be added behind the same service later.
 *
 * Building the layer never fails when Redis is down: the client keeps reconnecting in the
 * background and each operation fails fast with `CacheUnavailable` until Redis is back. Options
 * are validated first: a value that cannot make a working client, or an option name that
 * misspells one (`comandTimeout`), is an `InvalidStoreOptions` (a `ConfigError` through `Config`),
 * never a defect; other keys the options do not know are logged at WARN, by name, and ignored.
 *
 * Secrets never leave: the URL is parsed here (ioredis never sees it), errors are reduced to their
 * message with the password removed (ioredis errors carry the command's arguments, AUTH's
 * password included), and a refused password or a failed TLS handshake is logged once at ERROR and
 * kept as a health state (`health`), not only seen as an open circuit breaker.
 *
 * @since 0.1.0
 */
import { CacheUnavailable, InvalidStoreOptions } from "@cache-aside/core/CacheStore"
import { Metrics } from "@cache-aside/core/Metrics"
import type { StoreRecorder } from "@cache-aside/core/Metrics"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Redis, ReplyError } from "ioredis"
import * as Fs from "node:fs"
import * as commands from "./internal/commands.js"
import { fillBatcher } from "./internal/fillBatcher.js"
import * as health from "./internal/health.js"
import * as internalOptions from "./internal/options.js"
import { readBatcher } from "./internal/readBatcher.js"
import type { Answer, Lease, Reader } from "./internal/readBatcher.js"
import * as scripts from "./internal/scripts.js"

/**
 * The `ioredis` client type accepted by `fromClient` / `layerFromClient`.
 *
 * @since 0.1.0
 */
export type IORedis = Redis

/**
 * The connection's health: `"healthy"` (connected), `"connecting"` (not connected, for a reason
 * that may pass: Redis down, network), `"unhealthy: auth"` (the server refused the credentials),
 * `"unhealthy: tls"` (the TLS handshake failed), `"unhealthy: acl"` (the user may not run a command
 * the store needs, until the next connection).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const misconfigured = Effect.flatMap(RedisClient.RedisClient, (redis) => redis.health).pipe(
 *   Effect.map((health) => health.startsWith("unhealthy"))
 * )
 * ```
 *
 * @since 0.1.0
 */
export type Health = health.Health

/**
 * A failed Redis command as the cause of a `CacheUnavailable`: the error's message only (never the
 * command's arguments, which hold keys, values and AUTH's password), with the password removed.
 * `reply` is `true` when Redis answered with an error reply (`OOM`, `READONLY`, `NOPERM`, ...).
 *
 * @example
 * ```ts
 * import { CacheStore } from "@cache-aside/core"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const isOutOfMemory = (error: CacheStore.CacheUnavailable) =>
 *   error.cause instanceof RedisClient.RedisError && error.cause.message.startsWith("OOM")
 * ```
 *
 * @since 0.1.0
 */
export class RedisError extends Schema.TaggedError<RedisError>("@cache-aside/redis/RedisError")("RedisError", {
  message: Schema.String,
  reply: Schema.Boolean
}) {}

/**
 * The operations the Redis store needs. Keys are given without the client's `keyPrefix`: the
 * client adds it, except for `scan`'s `match` pattern and the keys `scan` returns (Redis does not
 * know about the prefix there), which is why `keyPrefix` is exposed.
 *
 * Reads are bounded: an entry longer than `maxEntryBytes` is never transferred; the server
 * checks the length in the same round trip, removes the entry and the read answers `None`
 * (counted as `oversizedEntries`, logged at WARN without the key).
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
  /** The largest entry a read returns, in bytes. */
  readonly maxEntryBytes: number
  /**
   * The time limit the client itself puts on every command (its `commandTimeout`), if it has one:
   * without one, a wrapper must bound each call (a caller-built `new Redis(url)` has none).
   */
  readonly commandTimeout: Option.Option<Duration.Duration>
  /** The connection's health now. */
  readonly health: Effect.Effect<Health>
  /** `GET key` as bytes, bounded by `maxEntryBytes`. */
  readonly getBuffer: (key: string) => Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>
  /**
   * `GET key` as bytes, bounded by `maxEntryBytes`, and when the key is absent (or was removed by
   * the bound), `SET key lease PX millis NX` in the same script: one round trip, batched with the
   * single-key reads of the same turn. `None`: the key now holds `lease` (the caller's). `Some`:
   * what the key holds, unchanged (another caller's lease, or a value). A refused lease (`OOM`,
   * `NOPERM`, `READONLY`) fails this call only, with operation `setIfAbsent`: the key was read and
   * found absent, and the lease was not written.
   */
  readonly getOrLeaseBuffer: (
    key: string,
    lease: Uint8Array,
    millis: number
  ) => Effect.Effect<Option.Option<Uint8Array>, CacheUnavailable>
  /** `MGET keys...` as bytes, aligned with `keys`, bounded by `maxEntryBytes`. An empty list makes no round-trip. */
  readonly mgetBuffer: (
    keys: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<Option.Option<Uint8Array>>, CacheUnavailable>
  /** `SET key value PX millis`. */
  readonly setPx: (key: string, value: Uint8Array, millis: number) => Effect.Effect<void, CacheUnavailable>
  /** `SET key value PX millis NX`; `true` when written. */
  readonly setNxPx: (key: string, value: Uint8Array, millis: number) => Effect.Effect<boolean, CacheUnavailable>
  /**
   * Sets `key` to `value` with `PX millis` only if its current value's SHA-1 is `expectedSha1`
   * (hex), atomically in a Lua script; `true` when written. The calls of one phase of the event loop
   * (the fills of concurrent misses) go out together when it ends, as one script call, where a
   * write Redis refuses (`OOM`, `WRONGTYPE`) fails its own call only.
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
 * TLS settings: PEM file contents for the CA (to trust a private CA), the client certificate and
 * its key (`Redacted`), the server name to verify (default: the host), and whether to reject a
 * server whose certificate does not verify (default `true`; turn it off only in tests). Giving
 * `tls` turns TLS on, as a `rediss://` URL does.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * // the PEM file contents
 * const RedisLive = (caPem: string, clientPem: string, clientKeyPem: string) =>
 *   RedisClient.layer({
 *     host: "cache.internal",
 *     port: 6380,
 *     tls: { ca: caPem, cert: clientPem, key: Redacted.make(clientKeyPem), servername: "cache.internal" }
 *   })
 * ```
 *
 * @since 0.1.0
 */
export interface TlsOptions {
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  readonly cert?: string | Uint8Array | undefined
  readonly key?: Redacted.Redacted<string | Uint8Array> | undefined
  readonly servername?: string | undefined
  readonly rejectUnauthorized?: boolean | undefined
}

/**
 * Connection options. Defaults are chosen for a cache, where a slow answer is worse than none:
 * commands time out after `commandTimeout`, commands are not queued while disconnected (they fail
 * at once with `CacheUnavailable`), and the client reconnects forever with a backoff capped at 1s.
 *
 * @since 0.1.0
 */
export interface Options {
  /** A `redis://` or `rediss://` URL (`redis://[[username]:password@]host[:port][/db]`). Fields given below override the URL's. */
  readonly url?: Redacted.Redacted<string> | undefined
  readonly host?: string | undefined
  /** 1 to 65535. */
  readonly port?: number | undefined
  /** A database number, 0 or more. */
  readonly db?: number | undefined
  /** An ACL user (Redis 6+). */
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  /** Prepended to every key by the client. Default: none. */
  readonly keyPrefix?: string | undefined
  /** How long a command may take before it fails with `CacheUnavailable` (1 ms to 24 days). Default 250 millis. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /**
   * How long to wait for the first connection (the layer is built anyway when Redis is down), and
   * the socket connect timeout (1 ms to 24 days). Default 1 second.
   */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * The largest entry a read returns, in bytes (1 to 512 MiB). A longer entry is removed on the
   * server without being transferred and read as absent. Default 16 MiB.
   */
  readonly maxEntryBytes?: number | undefined
  /** TLS (see `TlsOptions`); a `rediss://` URL turns it on with the defaults. */
  readonly tls?: TlsOptions | undefined
  /** Names the store in logs and metrics (the `store` label). Default `"default"`. */
  readonly name?: string | undefined
}

/**
 * The default command timeout: a hung Redis fails a command after this.
 *
 * @since 0.1.0
 */
export const defaultCommandTimeout: Duration.Duration = internalOptions.defaultCommandTimeout

/**
 * The default `maxEntryBytes`: 16 MiB.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const RedisLive = RedisClient.layer({ maxEntryBytes: RedisClient.defaultMaxEntryBytes / 4 })
 * ```
 *
 * @since 0.1.0
 */
export const defaultMaxEntryBytes: number = internalOptions.defaultMaxEntryBytes

const quitTimeoutMillis = 1000

/**
 * A command that passed `commandTimeout` is rejected with a plain `Error("Command timed out")`: by
 * this library's deadline queue for its own commands (decided after the next poll for I/O, see
 * `internal/commands.ts`), by ioredis for any other.
 */
const isCommandTimeout = (cause: unknown): boolean =>
  cause instanceof Error && cause.message === commands.commandTimedOut

/** Everything the wrapped client needs besides the client. */
interface Settings {
  readonly maxEntryBytes: number
  readonly secrets: ReadonlyArray<string>
  readonly tracker: health.Tracker
  readonly recorder: StoreRecorder | undefined
  readonly report: health.Report
}

const failureOf = (settings: Settings, operation: string) => (cause: unknown): CacheUnavailable => {
  if (isCommandTimeout(cause)) {
    return new CacheUnavailable({
      operation,
      cause: new Cause.TimeoutException(`Redis did not answer ${operation} within the command timeout`)
    })
  }
  const replied = cause instanceof ReplyError
  if (replied) settings.tracker.onCommandError(cause)
  return new CacheUnavailable({
    operation,
    // the message only: ioredis errors carry `command.args` (keys, values, AUTH's password)
    cause: new RedisError({
      message: isNotConnected(cause) ? notConnected : health.safeMessage(cause, settings.secrets),
      reply: replied
    }),
    replied
  })
}

/**
 * ioredis's refusal of a command while disconnected names its own option ("Stream isn't writeable
 * and enableOfflineQueue options is false"), which invites turning the offline queue on: a cache
 * wants the opposite (fail fast, fall back to the lookup). Said plainly instead.
 */
const isNotConnected = (cause: unknown): boolean =>
  cause instanceof Error && cause.message.includes("enableOfflineQueue options is false")

const notConnected = "Redis is not connected: the command was not sent (the client reconnects in the background)"

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * Bytes as an argument: a string when they are ASCII (the library's leases are), which keeps a
 * command all strings, so ioredis writes it as one string instead of assembling a buffer; its
 * UTF-8 encoding is the same bytes. Anything else stays bytes.
 */
const asciiOrBuffer = (bytes: Uint8Array): Buffer | string => {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return toBuffer(bytes)
  return toBuffer(bytes).toString("latin1")
}

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

const readScript = commands.script(scripts.read)
const compareAndSetScript = commands.script(scripts.compareAndSet)
const compareAndSetManyScript = commands.script(scripts.compareAndSetMany)
const compareAndDeleteScript = commands.script(scripts.compareAndDelete)

const plural = (count: number, one: string, many: string): string => `${count} ${count === 1 ? one : many}`

/** Logs (and counts, for over-limit entries) the keys a read removed instead of reading them. */
const reportRemoved = (settings: Settings) => (oversized: number, wrongType: number): void => {
  if (oversized > 0) {
    settings.recorder?.increment("oversizedEntries", oversized)
    settings.report(
      "warn",
      `cache-aside: removed ${
        plural(oversized, "entry", "entries")
      } over maxEntryBytes (${settings.maxEntryBytes} bytes) without reading them (store ${settings.tracker.store})`
    )
  }
  if (wrongType > 0) {
    settings.report(
      "warn",
      `cache-aside: removed ${
        plural(wrongType, "key", "keys")
      } holding another type than a string under cache keys (store ${settings.tracker.store})`
    )
  }
}

/** One element of the read script's reply: a value, nil, a removed key's integer, a refused lease's error. */
type ReadReply = Buffer | number | Error | null | undefined

/** `true` when no key failed on its own (only a lease-read can). */
const allValues = (answers: ReadonlyArray<Answer>): answers is ReadonlyArray<Option.Option<Uint8Array>> =>
  answers.every((answer) => !(answer instanceof Error))

/** The answers of plain reads: a key's own error (a lease's) cannot be one; rejects if it were. */
const plainValues = (answers: ReadonlyArray<Answer>): ReadonlyArray<Option.Option<Uint8Array>> => {
  if (allValues(answers)) return answers
  throw answers.find((answer) => answer instanceof Error)
}

/**
 * The read script's arguments for `keys[start, end)`, in one array built once:
 * `[sha, key count, ...keys, max, ...(lease, millis) pairs]`; `leases` belong to the last
 * `leases.length` of `keys` (so they are the last ones of any chunk too).
 */
const readArgs = (
  keys: ReadonlyArray<string>,
  leases: ReadonlyArray<Lease>,
  start: number,
  end: number,
  maxBytes: number
): Array<commands.Arg> => {
  const firstLeased = keys.length - leases.length
  const leaseStart = Math.max(start, firstLeased)
  const leased = Math.max(0, end - leaseStart)
  const count = end - start
  const args = new Array<commands.Arg>(count + 3 + 2 * leased)
  args[0] = readScript.sha
  args[1] = count
  for (let i = 0; i < count; i++) args[i + 2] = keys[start + i]!
  args[count + 2] = maxBytes
  for (let j = 0; j < leased; j++) {
    const lease = leases[leaseStart - firstLeased + j]!
    args[count + 3 + 2 * j] = lease.value
    args[count + 4 + 2 * j] = lease.millis
  }
  return args
}

/**
 * Reads keys through the bounded read script, in chunks of at most `readBatchLimit` keys, leasing
 * the absent ones a lease-read asks for; an over-limit entry or a key of another type (removed by
 * the script) reads as absent and is logged here (over-limit entries are also counted).
 */
const boundedRead = (send: commands.Sender, settings: Settings): Reader => {
  const maxBytes = settings.maxEntryBytes
  const removed = reportRemoved(settings)
  const decode = (reply: unknown): Array<Answer> => {
    let oversized = 0
    let wrongType = 0
    const out = (reply as ReadonlyArray<ReadReply>).map((reply): Answer => {
      if (reply === null || reply === undefined) return Option.none()
      if (typeof reply === "number") {
        if (reply < 0) wrongType++
        else oversized++
        return Option.none()
      }
      return reply instanceof Error ? reply : Option.some(reply)
    })
    if (oversized > 0 || wrongType > 0) removed(oversized, wrongType)
    return out
  }
  const decodeOne = (reply: unknown): Answer => {
    const value = (reply as ReadonlyArray<ReadReply>)[0]
    if (value === null || value === undefined) return Option.none()
    if (typeof value === "number") {
      removed(value < 0 ? 0 : 1, value < 0 ? 1 : 0)
      return Option.none()
    }
    return value instanceof Error ? value : Option.some(value)
  }
  const readChunk = (keys: ReadonlyArray<string>, leases: ReadonlyArray<Lease>, start: number, end: number) =>
    send.evalScript(readScript, readArgs(keys, leases, start, end, maxBytes), true, decode)
  return {
    one: (key, lease) =>
      send.evalScript(
        readScript,
        lease === undefined
          ? [readScript.sha, 1, key, maxBytes]
          : [readScript.sha, 1, key, maxBytes, lease.value, lease.millis],
        true,
        decodeOne
      ),
    many: (keys, leases) => {
      if (keys.length <= scripts.readBatchLimit) return readChunk(keys, leases, 0, keys.length)
      const chunks: Array<Promise<Array<Answer>>> = []
      for (let i = 0; i < keys.length; i += scripts.readBatchLimit) {
        chunks.push(readChunk(keys, leases, i, Math.min(keys.length, i + scripts.readBatchLimit)))
      }
      return Promise.all(chunks).then((parts) => parts.flat())
    }
  }
}

const wrap = (client: Redis, settings: Settings): Service => {
  const prefix = client.options.keyPrefix ?? ""
  const unavailable = (operation: string) => failureOf(settings, operation)
  const send = commands.sender(client)
  const read = boundedRead(send, settings)
  // a refused lease is a failed lease write (`setIfAbsent`): the read worked and found the key absent
  const batcher = readBatcher(read, unavailable("get"), unavailable("getOrLease"), unavailable("setIfAbsent"))
  const fills = fillBatcher(send, compareAndSetScript, compareAndSetManyScript, unavailable("compareAndSet"))
  return {
    keyPrefix: prefix,
    connection: client,
    maxEntryBytes: settings.maxEntryBytes,
    commandTimeout: internalOptions.ownTimeout(client.options.commandTimeout),
    health: Effect.sync(() => settings.tracker.health),
    getBuffer: batcher.get,
    getOrLeaseBuffer: (key, lease, millis) => batcher.getOrLease(key, { value: asciiOrBuffer(lease), millis }),
    mgetBuffer: (keys) =>
      keys.length === 0
        ? Effect.succeed([])
        : Effect.tryPromise({ try: () => read.many(keys, []).then(plainValues), catch: unavailable("getMany") }),
    setPx: (key, value, millis) =>
      Effect.tryPromise({
        try: () => send.send("set", [key, toBuffer(value), "PX", millis], false),
        catch: unavailable("set")
      }).pipe(Effect.asVoid),
    setNxPx: (key, value, millis) =>
      Effect.tryPromise({
        try: () => send.send("set", [key, toBuffer(value), "PX", millis, "NX"], false),
        catch: unavailable("setIfAbsent")
      }).pipe(Effect.map((reply) => reply === "OK")),
    compareAndSetPx: (key, expectedSha1, value, millis) =>
      fills.compareAndSet(key, expectedSha1, toBuffer(value), millis),
    compareAndDelete: (key, expectedSha1) =>
      Effect.tryPromise({
        try: () =>
          send.evalScript(
            compareAndDeleteScript,
            [compareAndDeleteScript.sha, 1, key, expectedSha1],
            false,
            commands.isOne
          ),
        catch: unavailable("compareAndDelete")
      }),
    unlink: (keys) =>
      keys.length === 0
        ? Effect.succeed(0)
        : Effect.tryPromise({
          try: () => send.send("unlink", [...keys], false) as Promise<number>,
          catch: unavailable("delete")
        }),
    scan: (cursor, match, count) =>
      Effect.tryPromise({
        try: () =>
          send.send("scan", [cursor, "MATCH", match, "COUNT", count], false) as Promise<
            readonly [string, Array<string>]
          >,
        catch: unavailable("deletePattern")
      })
  }
}

/** Logging, metrics and health of one client, from the current runtime and the `Metrics` in context (if any). */
const makeSettings = (
  name: string,
  secrets: ReadonlyArray<string>,
  maxEntryBytes: number
): Effect.Effect<Settings> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const metrics = yield* Effect.serviceOption(Metrics)
    const recorder = Option.isSome(metrics) ? metrics.value.storeRecorder(name) : undefined
    const run = Runtime.runFork(runtime)
    const report = (level: "error" | "warn" | "info" | "debug", message: string) => {
      const log = level === "error"
        ? Effect.logError(message)
        : level === "warn"
        ? Effect.logWarning(message)
        : level === "info"
        ? Effect.logInfo(message)
        : Effect.logDebug(message)
      run(Effect.annotateLogs(log, "store", name))
    }
    const tracker = new health.Tracker(name, secrets, report, recorder)
    return { maxEntryBytes, secrets, tracker, recorder, report }
  })

/** Listens to the client's events for health and logs (never letting an "error" event go unhandled); returns the undo. */
const listen = (client: Redis, tracker: health.Tracker): () => void => {
  const onError = (error: unknown) => tracker.onError(error)
  const onReady = () => tracker.onReady()
  const onClose = () => tracker.onClose()
  client.on("error", onError)
  client.on("ready", onReady)
  client.on("close", onClose)
  if (client.status === "ready") tracker.onReady()
  return () => {
    client.off("error", onError)
    client.off("ready", onReady)
    client.off("close", onClose)
  }
}

const resolveOptions = (options: Options): Effect.Effect<internalOptions.Resolved, InvalidStoreOptions> =>
  Effect.suspend(() => {
    const resolved = internalOptions.resolve(options)
    return Either.isLeft(resolved)
      ? Effect.fail(new InvalidStoreOptions({ message: `RedisClient: ${resolved.left}` }))
      : Effect.succeed(resolved.right)
  })

/**
 * Creates a client owned by the scope. Validates the options first (`InvalidStoreOptions`), then
 * waits for the first connection at most `connectTimeout`, and succeeds even when Redis is down.
 * On release: `QUIT`, bounded by one second, then `disconnect()`, so a hung Redis never hangs
 * shutdown. Reads the `Metrics` in context, if any, for its store events.
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
export const make = (options: Options = {}): Effect.Effect<Service, InvalidStoreOptions, Scope.Scope> =>
  Effect.gen(function*() {
    yield* internalOptions.checkNames("RedisClient.make", options, internalOptions.clientShape)
    const resolved = yield* resolveOptions(options)
    const settings = yield* makeSettings(resolved.name, resolved.secrets, resolved.maxEntryBytes)
    const client = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const client = new Redis(resolved.redis)
          // errors surface per operation as CacheUnavailable; an unhandled "error" event would crash the process
          listen(client, settings.tracker)
          return client
        },
        catch: (cause) =>
          new InvalidStoreOptions({
            message: `RedisClient: ioredis refused the options: ${health.safeMessage(cause, resolved.secrets)}`
          })
      }),
      (client) =>
        Effect.gen(function*() {
          if (client.status === "ready") {
            yield* settledWithin(quitTimeoutMillis, () => client.quit())
          }
          client.disconnect(false)
        })
    )
    yield* readyWithin(client, resolved.connectTimeoutMillis)
    return wrap(client, settings)
  })

/**
 * Options for a client the caller owns: `maxEntryBytes` and `name` as in `Options`; the connection
 * settings are the client's own.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * // over your client, e.g. new Redis({ commandTimeout: 250 })
 * const RedisLive = (redis: Redis) => RedisClient.layerFromClient(redis, { maxEntryBytes: 1024 * 1024, name: "sessions" })
 * ```
 *
 * @since 0.1.0
 */
export interface FromClientOptions {
  readonly maxEntryBytes?: number | undefined
  readonly name?: string | undefined
}

/**
 * Wraps an `ioredis` client as the service, for the scope's lifetime. Does not own the client:
 * closing it is the caller's job; the listeners added for health and logs are removed with the
 * scope. A client without its own finite `commandTimeout` (the ioredis default) has no time
 * limit: `commandTimeout` is `None`, and the store layers then bound each call themselves.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Redis } from "ioredis"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * // over your client, e.g. new Redis(process.env.REDIS_URL!)
 * const program = (yours: Redis) =>
 *   Effect.gen(function* () {
 *     const redis = yield* RedisClient.fromClient(yours)
 *     return yield* redis.getBuffer("key")
 *   }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
export const fromClient = (
  client: IORedis,
  options: FromClientOptions = {}
): Effect.Effect<Service, InvalidStoreOptions, Scope.Scope> =>
  Effect.gen(function*() {
    yield* internalOptions.checkNames("RedisClient.fromClient", options, internalOptions.fromClientShape)
    const resolved = yield* resolveOptions({ maxEntryBytes: options.maxEntryBytes, name: options.name })
    const password = client.options.password
    const secrets = typeof password === "string" && password !== "" ? [password] : []
    const settings = yield* makeSettings(resolved.name, secrets, resolved.maxEntryBytes)
    yield* Effect.acquireRelease(Effect.sync(() => listen(client, settings.tracker)), (undo) => Effect.sync(undo))
    return wrap(client, settings)
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
export const layer = (options: Options = {}): Layer.Layer<RedisClient, InvalidStoreOptions> =>
  Layer.scoped(RedisClient, make(options))

const invalidData = (error: InvalidStoreOptions): ConfigError.ConfigError => ConfigError.InvalidData([], error.message)

/**
 * A layer reading its options from `Config`. Invalid values are a `ConfigError`.
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
  Layer.scoped(
    RedisClient,
    Effect.flatMap(Config.unwrap(config), (options) => Effect.mapError(make(options), invalidData))
  )

/**
 * Client options read from `Config` and validated as `make` validates them: a value that cannot make
 * a working client (a port out of range, a malformed URL, an infinite timeout, ...) is a
 * `ConfigError` whose message never contains the URL or a password. The layers built from `Config`
 * use it.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * const options = RedisClient.validatedConfig({ url: Config.redacted("CACHE_REDIS_URL") })
 * ```
 *
 * @since 0.1.0
 */
export const validatedConfig = (config: Config.Config.Wrap<Options>): Config.Config<Options> =>
  Config.mapOrFail(Config.unwrap(config), (options) => {
    // a misspelled name fails here; other unknown names are logged when the layer is built
    const resolved = Either.flatMap(
      internalOptions.unknownNames(undefined, options, internalOptions.clientShape),
      () => internalOptions.resolve(options)
    )
    return Either.isLeft(resolved)
      ? Either.left(ConfigError.InvalidData([], `Redis: ${resolved.left}`))
      : Either.right(options)
  })

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/** A file's contents, read when the config is loaded; an unreadable file is a ConfigError naming the variable and path. */
const fileContents = (name: string): Config.Config<Buffer | undefined> =>
  optional(Config.mapOrFail(Config.string(name), (path) => {
    try {
      return Either.right(Fs.readFileSync(path))
    } catch (error) {
      const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "error"
      return Either.left(ConfigError.InvalidData([name], `${name}: cannot read ${JSON.stringify(path)} (${code})`))
    }
  }))

const tlsConfig: Config.Config<TlsOptions | undefined> = Config.map(
  Config.all({
    ca: fileContents("REDIS_TLS_CA_FILE"),
    cert: fileContents("REDIS_TLS_CERT_FILE"),
    key: fileContents("REDIS_TLS_KEY_FILE"),
    servername: optional(Config.string("REDIS_TLS_SERVERNAME")),
    rejectUnauthorized: optional(Config.boolean("REDIS_TLS_REJECT_UNAUTHORIZED"))
  }),
  ({ ca, cert, key, rejectUnauthorized, servername }): TlsOptions | undefined =>
    ca === undefined && cert === undefined && key === undefined && servername === undefined &&
      rejectUnauthorized === undefined
      ? undefined
      : { ca, cert, key: key === undefined ? undefined : Redacted.make(key), servername, rejectUnauthorized }
)

/**
 * Options from the environment: `REDIS_URL` (required), and optionally `REDIS_USERNAME`,
 * `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_KEY_PREFIX`, `REDIS_COMMAND_TIMEOUT` and
 * `REDIS_CONNECT_TIMEOUT` (durations such as `500 millis`), `REDIS_MAX_ENTRY_BYTES`, and TLS:
 * `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE` (paths, read when the config is
 * loaded), `REDIS_TLS_SERVERNAME`, `REDIS_TLS_REJECT_UNAUTHORIZED`. Any TLS variable turns TLS on.
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
  username: optional(Config.string("REDIS_USERNAME")),
  password: optional(Config.redacted("REDIS_PASSWORD")),
  db: optional(Config.integer("REDIS_DB")),
  keyPrefix: optional(Config.string("REDIS_KEY_PREFIX")),
  commandTimeout: optional(Config.duration("REDIS_COMMAND_TIMEOUT")),
  connectTimeout: optional(Config.duration("REDIS_CONNECT_TIMEOUT")),
  maxEntryBytes: optional(Config.integer("REDIS_MAX_ENTRY_BYTES")),
  tls: tlsConfig
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
 * import { Redis } from "ioredis"
 * import { RedisClient } from "@cache-aside/redis"
 *
 * // over your client: new Redis("redis://localhost:6379")
 * const RedisLive = (redis: Redis) => RedisClient.layerFromClient(redis)
 * ```
 *
 * @since 0.1.0
 */
export const layerFromClient = (
  client: IORedis,
  options: FromClientOptions = {}
): Layer.Layer<RedisClient, InvalidStoreOptions> => Layer.scoped(RedisClient, fromClient(client, options))
