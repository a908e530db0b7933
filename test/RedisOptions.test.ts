/**
 * Every bad option of the Redis layers is a typed error, never a defect and never a client that
 * silently fails every command: `InvalidStoreOptions` through `layer`, a `ConfigError` through
 * `layerConfig`. And a client without a time limit of its own (`layerFromClient(new Redis(url))`)
 * gets the resilient wrapper's timer: a paused Redis falls back and opens the breaker.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import { CacheStore, InvalidStoreOptions } from "@cache-aside/core/CacheStore"
import { RedisCacheBus, RedisCacheStore, RedisClient } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import { Cause, ConfigError, ConfigProvider, Duration, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import { Redis } from "ioredis"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { RedisServer } from "./utils/RedisServer.js"

/** The password in the URLs below: it must appear in no error message. */
const secret = "s3cr3t-Pa55"

/** Builds a layer (with Metrics) in the current scope and returns the exit. */
const buildExit = <E>(layer: Layer.Layer<CacheStore, E, Metrics.Metrics>) =>
  Effect.exit(Layer.build(Layer.provide(layer, Metrics.layer)))

/** Nothing listens on port 1 (privileged): a valid layer must still build, an invalid one must fail. */
const deadPort = 1

const bad: ReadonlyArray<readonly [string, RedisCacheStore.Options, string]> = [
  ["commandTimeout: banana", { commandTimeout: "banana" as Duration.DurationInput }, "commandTimeout"],
  ["commandTimeout: Infinity", { commandTimeout: Infinity }, "commandTimeout"],
  ["commandTimeout: Duration.infinity", { commandTimeout: Duration.infinity }, "commandTimeout"],
  ["commandTimeout: NaN", { commandTimeout: NaN }, "commandTimeout"],
  ["commandTimeout: 0", { commandTimeout: 0 }, "commandTimeout"],
  ["commandTimeout: -5", { commandTimeout: -5 }, "commandTimeout"],
  ["commandTimeout: 30 days (beyond Node's timers)", { commandTimeout: "30 days" }, "commandTimeout"],
  ["connectTimeout: -5", { connectTimeout: -5 }, "connectTimeout"],
  ["connectTimeout: Infinity", { connectTimeout: Infinity }, "connectTimeout"],
  ["port: 99999", { port: 99999 }, "port"],
  ["port: 0", { port: 0 }, "port"],
  ["port: 6379.5", { port: 6379.5 }, "port"],
  ["db: -1", { db: -1 }, "db"],
  ["db: 1.5", { db: 1.5 }, "db"],
  ["maxEntryBytes: 0", { maxEntryBytes: 0 }, "maxEntryBytes"],
  ["maxEntryBytes: Infinity", { maxEntryBytes: Infinity }, "maxEntryBytes"],
  ["maxEntryBytes: 1 TiB", { maxEntryBytes: 2 ** 40 }, "maxEntryBytes"],
  ["host: empty", { host: "" }, "host"],
  ["url: port 99999, with a password", { url: Redacted.make(`redis://user:${secret}@localhost:99999`) }, "url"],
  ["url: not a URL, with a password", { url: Redacted.make(`${secret}@@::nope`) }, "url"],
  ["url: http://", { url: Redacted.make(`http://user:${secret}@localhost:6379`) }, "url"],
  ["url: path not a db", { url: Redacted.make(`redis://:${secret}@localhost:6379/abc`) }, "url"],
  ["url: query parameters", { url: Redacted.make(`redis://:${secret}@localhost:6379?password=x`) }, "url"],
  ["url: not Redacted", { url: `redis://:${secret}@localhost` as unknown as Redacted.Redacted<string> }, "url"],
  ["tls: cert without key", { tls: { cert: "-----BEGIN CERTIFICATE-----" } }, "tls"],
  ["tls: CA that is not PEM", { tls: { ca: "not a certificate" } }, "tls"],
  [
    "tls: key that does not load",
    { tls: { cert: "garbage", key: Redacted.make(`-----BEGIN PRIVATE KEY-----\n${secret}\n`) } },
    "tls"
  ],
  ["tls: servername empty", { tls: { servername: "" } }, "tls.servername"],
  ["tls: rejectUnauthorized not a boolean", { tls: { rejectUnauthorized: "no" as unknown as boolean } }, "tls"],
  // a JavaScript caller (or an `as any`): each was a TypeError (a defect) when a field was read
  ["resilience: null", { resilience: null as unknown as false }, "resilience must be an object, got null"],
  ["resilience: a string", { resilience: "on" as unknown as false }, "resilience must be an object, got string"]
]

describe("RedisCacheStore options", () => {
  for (const [name, options, option] of bad) {
    it.scoped(`${name} -> InvalidStoreOptions naming ${option}`, () =>
      Effect.gen(function*() {
        const exit = yield* buildExit(
          RedisCacheStore.layer({ port: deadPort, connectTimeout: "50 millis", ...options })
        )
        assert.isTrue(Exit.isFailure(exit), "the layer was built")
        if (Exit.isSuccess(exit)) return
        assert.isFalse(Cause.isDie(exit.cause), `a defect: ${Cause.pretty(exit.cause)}`)
        const error = Cause.failureOption(exit.cause)
        assertSome(Option.map(error, (e) => e._tag), "InvalidStoreOptions")
        const failure = Option.getOrThrow(error)
        assert.instanceOf(failure, InvalidStoreOptions)
        assert.include(failure.message, option)
        const everything = `${failure.message} ${JSON.stringify(failure)} ${Cause.pretty(exit.cause)}`
        assert.notInclude(everything, secret)
      }))
  }

  it.scoped("options that are not an object (null, a string, an array) -> InvalidStoreOptions, not a defect", () =>
    Effect.gen(function*() {
      const layers = (options: unknown) => [
        RedisCacheStore.layer(options as RedisCacheStore.Options),
        Layer.map(RedisCacheBus.layer(options as RedisCacheStore.Options), (context) => context),
        Layer.effect(
          CacheStore,
          Effect.flatMap(RedisClient.RedisClient, () => Effect.dieMessage("the client was built"))
        ).pipe(
          Layer.provide(RedisClient.layer(options as RedisClient.Options))
        )
      ]
      for (const [given, shown] of [[null, "null"], ["redis://localhost", "string"], [[], "an array"]] as const) {
        for (const layer of layers(given)) {
          const exit = yield* buildExit(layer)
          assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause), `built, or a defect, for ${shown}`)
          const failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
          assert.instanceOf(failure, InvalidStoreOptions)
          assert.include(failure?.message, `options must be an object, got ${shown}`)
        }
      }
    }))

  it.scoped("RedisCacheBus: a bus or heartbeat that cannot work -> InvalidStoreOptions naming it", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [null, "bus must be an object, got null"],
        [{ heartbeat: "banana" }, "bus.heartbeat"],
        [{ heartbeat: 0 }, "bus.heartbeat"],
        [{ heartbeat: 1 }, "bus.heartbeat"], // pings every half of it: 0 ms
        [{ heartbeat: "30 days" }, "bus.heartbeat"], // beyond Node's timers
        [{ heartbeat: Number.NaN }, "bus.heartbeat"]
      ]
      for (const [bus, option] of cases) {
        const exit = yield* buildExit(
          RedisCacheBus.layer({ port: deadPort, connectTimeout: "50 millis", bus: bus as RedisCacheBus.Options })
        )
        assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause), `built, or a defect, for ${option}`)
        const failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.instanceOf(failure, InvalidStoreOptions)
        assert.include(failure?.message, option)
      }
    }))

  it.scoped("valid options build even with Redis down", () =>
    Effect.gen(function*() {
      const exit = yield* buildExit(RedisCacheStore.layer({
        url: Redacted.make(`redis://user:${secret}@127.0.0.1:${deadPort}/3`),
        connectTimeout: "50 millis",
        commandTimeout: "100 millis",
        maxEntryBytes: 1024,
        db: 2
      }))
      assert.isTrue(Exit.isSuccess(exit))
    }))

  it.scoped("layerFromClient: maxEntryBytes is validated too", () =>
    Effect.gen(function*() {
      const client = new Redis({ port: deadPort, lazyConnect: true })
      const exit = yield* buildExit(RedisCacheStore.layerFromClient(client, { maxEntryBytes: -1 }))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assertSome(Option.map(Cause.failureOption(exit.cause), (e) => e._tag), "InvalidStoreOptions")
      }
      client.disconnect()
    }))
})

/** Builds `layerConfig` from these environment variables and returns the exit. */
const fromEnv = (env: Record<string, string>) =>
  buildExit(RedisCacheStore.layerConfig).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
  )

const missingFile = Path.join(Os.tmpdir(), `cache-aside-missing-${process.pid}.pem`)

const badEnv: ReadonlyArray<readonly [string, Record<string, string>]> = [
  ["REDIS_COMMAND_TIMEOUT=banana", { REDIS_COMMAND_TIMEOUT: "banana" }],
  ["REDIS_COMMAND_TIMEOUT=0 millis", { REDIS_COMMAND_TIMEOUT: "0 millis" }],
  ["REDIS_CONNECT_TIMEOUT=-5 millis", { REDIS_CONNECT_TIMEOUT: "-5 millis" }],
  ["REDIS_URL with port 99999 and a password", { REDIS_URL: `redis://user:${secret}@localhost:99999` }],
  ["REDIS_URL not a URL", { REDIS_URL: `::${secret}::` }],
  ["REDIS_DB=-1", { REDIS_DB: "-1" }],
  ["REDIS_DB=one", { REDIS_DB: "one" }],
  ["REDIS_MAX_ENTRY_BYTES=0", { REDIS_MAX_ENTRY_BYTES: "0" }],
  ["REDIS_TLS_CA_FILE missing", { REDIS_TLS_CA_FILE: missingFile }],
  ["REDIS_TLS_REJECT_UNAUTHORIZED=maybe", { REDIS_TLS_REJECT_UNAUTHORIZED: "maybe" }],
  ["REDIS_TLS_CERT_FILE without a key", { REDIS_TLS_CERT_FILE: "/etc/hostname" }]
]

describe("RedisCacheStore.layerConfig", () => {
  for (const [name, env] of badEnv) {
    it.scoped(`${name} -> ConfigError`, () =>
      Effect.gen(function*() {
        const exit = yield* fromEnv({
          REDIS_URL: `redis://127.0.0.1:${deadPort}`,
          REDIS_CONNECT_TIMEOUT: "50 millis",
          ...env
        })
        assert.isTrue(Exit.isFailure(exit), "the layer was built")
        if (Exit.isSuccess(exit)) return
        assert.isFalse(Cause.isDie(exit.cause), `a defect: ${Cause.pretty(exit.cause)}`)
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        assert.isTrue(ConfigError.isConfigError(error), `not a ConfigError: ${String(error)}`)
        assert.notInclude(`${String(error)} ${Cause.pretty(exit.cause)}`, secret)
      }))
  }

  it.scoped("every variable read: username, password, db, TLS files, servername", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "cache-aside-config-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const ca = Path.join(dir, "ca.pem")
      Fs.writeFileSync(ca, "not a certificate")
      // the file is read (no ConfigError), and its content is checked: a CA that is not PEM fails
      const exit = yield* fromEnv({
        REDIS_URL: `redis://127.0.0.1:${deadPort}`,
        REDIS_CONNECT_TIMEOUT: "50 millis",
        REDIS_USERNAME: "cache",
        REDIS_PASSWORD: secret,
        REDIS_DB: "3",
        REDIS_TLS_CA_FILE: ca,
        REDIS_TLS_SERVERNAME: "redis.internal"
      })
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        assert.isTrue(ConfigError.isConfigError(error))
        assert.include(String(error), "tls")
      }
      const good = yield* fromEnv({
        REDIS_URL: `redis://127.0.0.1:${deadPort}`,
        REDIS_CONNECT_TIMEOUT: "50 millis",
        REDIS_USERNAME: "cache",
        REDIS_PASSWORD: secret,
        REDIS_DB: "3",
        REDIS_MAX_ENTRY_BYTES: "1048576"
      })
      assert.isTrue(Exit.isSuccess(good))
    }))
})

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

/** How long one get may wait on a hung Redis: the wrapper's timer is 250 ms; 8× that, against hangs. */
const fallbackBound = Duration.seconds(2)

describe("layerFromClient: a time limit only when the client has one", () => {
  it.scopedLive("a caller-built client (no commandTimeout) with Redis paused: gets fall back, the breaker opens", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const client = new Redis(server.url) // ioredis defaults: no commandTimeout, offline queue on
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const context = yield* Layer.build(
        Layer.provideMerge(RedisCacheStore.layerFromClient(client, { resilience: { name: "caller" } }), Metrics.layer)
      )
      const source = yield* DataSource.memory<number, User>([[1, new User({ id: 1, name: "one" })]])
      const cache = yield* CacheAside.make({
        namespace: "u",
        key: String,
        schema: User,
        lookup: source,
        ttl: "1 minute"
      }).pipe(Effect.provide(context))
      assertSome(yield* cache.get(1), new User({ id: 1, name: "one" }))
      yield* server.pause
      let failed = 0
      for (let i = 0; i < 8; i++) {
        const exit = yield* Effect.exit(cache.get(1).pipe(Effect.timeout(fallbackBound)))
        if (Exit.isFailure(exit) || Option.isNone(exit.value)) failed++
      }
      yield* server.resume
      assert.strictEqual(failed, 0, "gets that did not answer from the lookup within the bound")
      const store = yield* Effect.flatMap(Metrics.Metrics, (m) => m.storeSnapshot("caller")).pipe(
        Effect.provide(context)
      )
      assert.isAtLeast(store.breakerOpened, 1, "the breaker never opened")
      assert.isAtLeast(store.timeouts, 1)
      assert.isAbove(store.rejected, 0, "no call was refused by the open breaker")
    }))
})
