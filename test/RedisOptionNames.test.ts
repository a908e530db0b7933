/**
 * The Redis layers check their options' names as `CacheAside.make` does, nested objects included
 * (`tls`, `resilience`, `bus`): a key that misspells an option is an `InvalidStoreOptions` naming
 * the option it probably meant, before anything connects (ignored, the option would silently keep
 * its default); any other key (a field of a larger config spread in) is logged once at WARN, by
 * name, and ignored. No message shows a value: URLs and passwords stay out.
 */
import { Metrics } from "@cache-aside/core"
import { CacheStore } from "@cache-aside/core/CacheStore"
import * as ResilientCacheStore from "@cache-aside/core/ResilientCacheStore"
import { RedisCacheBus, RedisCacheStore, RedisClient } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import {
  Cause,
  Config,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Exit,
  Layer,
  Logger,
  Option,
  Redacted,
  Schedule
} from "effect"
import { Redis } from "ioredis"
import { RedisServer, type RedisServerService } from "./utils/RedisServer.js"
import { certificates } from "./utils/Tls.js"

/** A password in the URLs and a secret in a spread-in value: neither may appear in a message or a log line. */
const secret = "s3cr3t-Pa55"
const appConfig = { enabled: true, databaseUrl: `postgres://app:${secret}@db:5432/app` }

/** Log lines, captured; `ignored` are the "does not know" warnings. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })
  return {
    lines,
    ignored: () => lines.filter((line) => line.includes("does not know, ignored")),
    layer: Logger.replace(Logger.defaultLogger, logger)
  }
}

/** Builds a layer (with Metrics) in the current scope and returns the exit. */
const buildExit = <A, E>(layer: Layer.Layer<A, E, Metrics.Metrics>) =>
  Effect.exit(Layer.build(Layer.provide(layer, Metrics.layer)))

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

/** Connections the server accepted: each `info` opens one of its own. */
const connections = (server: RedisServerService) =>
  Effect.map(server.info("stats"), (stats) => Number(stats.get("total_connections_received")))

/** The server's URL with a password in it (the server has none: a connection would be refused). */
const withPassword = (server: RedisServerService) =>
  Redacted.make(server.url.replace("redis://", `redis://app:${secret}@`))

/** Any of the layers under test, for a table of them (a layer's outputs are contravariant). */
type AnyLayer = Layer.Layer<never, unknown, Metrics.Metrics>

type Case = readonly [
  name: string,
  layer: (server: RedisServerService) => AnyLayer,
  message: string
]

const misspelled: ReadonlyArray<Case> = [
  [
    "RedisClient.layer: comandTimeout",
    (server) => RedisClient.layer({ url: withPassword(server), comandTimeout: 100 } as RedisClient.Options),
    "RedisClient: unknown option \"comandTimeout\"; did you mean \"commandTimeout\"?"
  ],
  [
    "RedisClient.layer: tls.servrname",
    (server) => RedisClient.layer({ url: withPassword(server), tls: { servrname: "x" } as RedisClient.TlsOptions }),
    "RedisClient: unknown option \"tls.servrname\"; did you mean \"tls.servername\"?"
  ],
  [
    "RedisCacheStore.layer: keyprefix (another case)",
    (server) => RedisCacheStore.layer({ url: withPassword(server), keyprefix: "app:" } as RedisCacheStore.Options),
    "RedisCacheStore: unknown option \"keyprefix\"; did you mean \"keyPrefix\"?"
  ],
  [
    "RedisCacheStore.layer: resilence",
    (server) => RedisCacheStore.layer({ url: withPassword(server), resilence: {} } as RedisCacheStore.Options),
    "did you mean \"resilience\"?"
  ],
  [
    "RedisCacheStore.layer: resilience.failureTreshold",
    (server) =>
      RedisCacheStore.layer({
        url: withPassword(server),
        resilience: { failureTreshold: 3 } as ResilientCacheStore.Options
      }),
    "RedisCacheStore: unknown option \"resilience.failureTreshold\"; did you mean \"resilience.failureThreshold\"?"
  ],
  [
    "RedisCacheStore.layer: tls.rejectUnauthorised",
    (server) =>
      RedisCacheStore.layer({
        url: withPassword(server),
        tls: { rejectUnauthorised: false } as RedisClient.TlsOptions
      }),
    "did you mean \"tls.rejectUnauthorized\"?"
  ],
  [
    "RedisCacheBus.layer: bus.hearbeat",
    (server) =>
      RedisCacheBus.layer({ url: withPassword(server), bus: { hearbeat: "1 second" } as RedisCacheBus.Options }),
    "RedisCacheBus: unknown option \"bus.hearbeat\"; did you mean \"bus.heartbeat\"?"
  ],
  [
    "RedisCacheBus.layer: buss",
    (server) => RedisCacheBus.layer({ url: withPassword(server), buss: {} } as RedisCacheStore.Options),
    "did you mean \"bus\"?"
  ],
  [
    "RedisCacheBus.layer: resilience.timout",
    (server) =>
      RedisCacheBus.layer({ url: withPassword(server), resilience: { timout: 100 } as ResilientCacheStore.Options }),
    "did you mean \"resilience.timeout\"?"
  ],
  [
    "RedisCacheBus.layer: a client option (connectTimeout) misspelled",
    (server) => RedisCacheBus.layer({ url: withPassword(server), conectTimeout: 100 } as RedisCacheStore.Options),
    "did you mean \"connectTimeout\"?"
  ],
  [
    "ResilientCacheStore.layer over a Redis store: timout",
    (server) =>
      ResilientCacheStore.layer(
        Layer.provide(RedisCacheStore.layerWithClient, RedisClient.layer({ url: withPassword(server) })),
        { timout: 100 } as ResilientCacheStore.Options
      ),
    "unknown option \"timout\"; did you mean \"timeout\"?"
  ]
]

describe("misspelled option names: InvalidStoreOptions, before anything connects", () => {
  for (const [name, layer, message] of misspelled) {
    it.scoped(name, () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const before = yield* connections(server)
        const exit = yield* buildExit(layer(server))
        const failure = failureOf(exit)
        assert.isFalse(Exit.isFailure(exit) && Cause.isDie(exit.cause), "a defect")
        assert.strictEqual((failure as { readonly _tag?: unknown } | undefined)?._tag, "InvalidStoreOptions")
        assert.include((failure as { readonly message: string }).message, message)
        assert.notInclude(`${JSON.stringify(failure)} ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""}`, secret)
        // one more: the count's own connection
        assert.strictEqual(yield* connections(server), before + 1, "a connection was made")
      }))
  }

  it.scoped("over a client the caller owns: layerFromClient (store and client)", () =>
    Effect.gen(function*() {
      const client = new Redis({ port: 1, lazyConnect: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const store = failureOf(
        yield* buildExit(
          RedisCacheStore.layerFromClient(client, { maxEntryByte: 10 } as RedisCacheStore.FromClientOptions)
        )
      )
      assert.strictEqual(store?._tag, "InvalidStoreOptions")
      assert.include(
        store?.message,
        "RedisCacheStore: unknown option \"maxEntryByte\"; did you mean \"maxEntryBytes\"?"
      )
      const nested = failureOf(
        yield* buildExit(RedisCacheStore.layerFromClient(client, {
          resilience: { overflowPatern: "cache:*" } as ResilientCacheStore.Options
        }))
      )
      assert.include(nested?.message, "did you mean \"resilience.overflowPattern\"?")
      const bare = failureOf(
        yield* buildExit(RedisClient.layerFromClient(client, { nmae: "x" } as RedisClient.FromClientOptions))
      )
      assert.strictEqual(bare?._tag, "InvalidStoreOptions")
      assert.include(bare?.message, "RedisClient: unknown option \"nmae\"; did you mean \"name\"?")
    }))

  it.scoped("RedisCacheBus.layerWithClient: heartbeet", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const exit = yield* buildExit(
        RedisCacheBus.layerWithClient({ heartbeet: "1 second" } as RedisCacheBus.Options).pipe(
          Layer.provide(RedisClient.layer({ url: Redacted.make(server.url) }))
        )
      )
      const failure = failureOf(exit)
      assert.strictEqual(failure?._tag, "InvalidStoreOptions")
      assert.include(
        failure?.message,
        "RedisCacheBus: unknown option \"bus.heartbeet\"; did you mean \"bus.heartbeat\"?"
      )
    }))

  it.scoped("from Config: a ConfigError naming the option meant", () =>
    Effect.gen(function*() {
      const config = {
        url: Config.redacted("CACHE_URL"),
        comandTimeout: Config.duration("CACHE_TIMEOUT")
      } as Config.Config.Wrap<RedisClient.Options>
      const env = ConfigProvider.fromMap(
        new Map([["CACHE_URL", `redis://app:${secret}@127.0.0.1:1`], ["CACHE_TIMEOUT", "100 millis"]])
      )
      for (
        const layer of [
          RedisCacheStore.layerFromConfig(config),
          RedisCacheBus.layerFromConfig(config),
          RedisClient.layerFromConfig(config)
        ] as ReadonlyArray<AnyLayer>
      ) {
        const exit = yield* buildExit(layer).pipe(Effect.withConfigProvider(env))
        const failure = failureOf(exit)
        assert.strictEqual((failure as { readonly _tag?: unknown } | undefined)?._tag, "ConfigError")
        assert.include(String(failure), "did you mean \"commandTimeout\"?")
        assert.notInclude(String(failure), secret)
      }
    }))
})

describe("keys that misspell no option: logged once at WARN, by name only, and ignored", () => {
  it.scoped("RedisCacheStore.layer: spread-in keys, top level and in resilience", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const logs = capture()
      const context = yield* Layer.build(
        Layer.provide(
          RedisCacheStore.layer({
            ...appConfig,
            url: Redacted.make(server.url),
            resilience: { name: "main", ...{ retries: 3 } }
          }),
          Metrics.layer
        )
      ).pipe(Effect.provide(logs.layer))
      const store = Context.get(context, CacheStore)
      yield* store.set("k", new Uint8Array([7]), Duration.minutes(1))
      assertSome(Option.map(yield* store.get("k"), (bytes) => bytes[0]), 7)
      const ignored = logs.ignored()
      assert.strictEqual(ignored.length, 1, logs.lines.join("\n"))
      assert.include(
        ignored[0]!,
        "WARN cache-aside: options RedisCacheStore.layer does not know, ignored: \"enabled\", \"databaseUrl\", \"resilience.retries\""
      )
      assert.notInclude(logs.lines.join("\n"), secret)
    }))

  it.scoped("RedisCacheBus.layer: spread-in keys, top level, in tls and in bus", () =>
    Effect.gen(function*() {
      const logs = capture()
      const exit = yield* buildExit(
        RedisCacheBus.layer({
          ...appConfig,
          port: 1,
          connectTimeout: "50 millis",
          tls: { ...{ minVersion: "TLSv1.2" } } as RedisClient.TlsOptions,
          bus: { heartbeat: "1 second", ...{ channel: "x" } }
        })
      ).pipe(Effect.provide(logs.layer))
      assert.isTrue(Exit.isSuccess(exit))
      const ignored = logs.ignored()
      assert.strictEqual(ignored.length, 1, logs.lines.join("\n"))
      assert.include(
        ignored[0]!,
        "RedisCacheBus.layer does not know, ignored: \"enabled\", \"databaseUrl\", \"tls.minVersion\", \"bus.channel\""
      )
      assert.notInclude(logs.lines.join("\n"), secret)
    }))

  it.scoped("RedisClient.layer, RedisClient.layerFromClient, RedisCacheStore.layerFromClient, RedisCacheBus.make", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const client = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const cases: ReadonlyArray<readonly [AnyLayer, string]> = [
        [RedisClient.layer({ ...appConfig, url: Redacted.make(server.url) }), "RedisClient.make"],
        [RedisClient.layerFromClient(client, { ...appConfig, name: "own" }), "RedisClient.fromClient"],
        [
          RedisCacheStore.layerFromClient(client, { ...appConfig, resilience: { name: "own", ...{ retries: 1 } } }),
          "RedisCacheStore.layerFromClient"
        ],
        [
          RedisCacheBus.layerWithClient({ heartbeat: "1 second", ...{ channel: "x" } }).pipe(
            Layer.provide(RedisClient.layerFromClient(client))
          ),
          "RedisCacheBus.make"
        ]
      ]
      for (const [layer, what] of cases) {
        const logs = capture()
        const exit = yield* buildExit(layer).pipe(Effect.provide(logs.layer))
        assert.isTrue(Exit.isSuccess(exit), what)
        const ignored = logs.ignored()
        assert.strictEqual(ignored.length, 1, `${what}: ${logs.lines.join("\n")}`)
        assert.include(ignored[0]!, `options ${what} does not know, ignored: `)
        assert.notInclude(logs.lines.join("\n"), secret)
      }
    }))

  it.scoped("a long unknown key is clipped", () =>
    Effect.gen(function*() {
      const longKey = "abcdefghij".repeat(20)
      const logs = capture()
      const exit = yield* buildExit(
        RedisCacheStore.layer({ port: 1, connectTimeout: "50 millis", ...{ [longKey]: 1 } })
      ).pipe(Effect.provide(logs.layer))
      assert.isTrue(Exit.isSuccess(exit))
      const ignored = logs.ignored()
      assert.strictEqual(ignored.length, 1)
      assert.include(ignored[0]!, `"${longKey.slice(0, 64)}…"`)
      assert.notInclude(ignored[0]!, longKey.slice(0, 65))
    }))
})

describe("every option name is known", () => {
  it.scoped("RedisCacheBus.layer with every option, tls, resilience and bus field: no warning", () =>
    Effect.gen(function*() {
      const certs = yield* certificates
      const logs = capture()
      const exit = yield* buildExit(RedisCacheBus.layer({
        url: Redacted.make("redis://127.0.0.1:1/1"),
        host: "127.0.0.1",
        port: 1,
        db: 2,
        username: "app",
        password: Redacted.make(secret),
        keyPrefix: "app:",
        commandTimeout: "100 millis",
        connectTimeout: "50 millis",
        maxEntryBytes: 1024,
        tls: {
          ca: certs.ca,
          cert: certs.clientCert,
          key: Redacted.make(certs.clientKey),
          servername: "localhost",
          rejectUnauthorized: true
        },
        name: "all",
        resilience: {
          name: "all",
          timeout: "100 millis",
          storeEnforcesTimeout: false,
          deletePatternTimeout: "1 second",
          failureThreshold: 3,
          cooldown: "1 second",
          maxCooldown: "2 seconds",
          cooldownJitter: 0.1,
          readRetry: Schedule.recurs(1),
          writeRetry: false,
          invalidationRetry: ResilientCacheStore.defaultRetry,
          maxQueuedInvalidations: 10,
          replayInterval: "1 second",
          overflowPattern: "cache:*"
        },
        bus: { heartbeat: "1 second" }
      })).pipe(Effect.provide(logs.layer))
      assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
      assert.strictEqual(logs.ignored().length, 0, logs.lines.join("\n"))
    }))

  it.scoped("layerFromConfig with resilience and bus: the spread of Config and options is all known", () =>
    Effect.gen(function*() {
      const logs = capture()
      const env = ConfigProvider.fromMap(
        new Map([["REDIS_URL", "redis://127.0.0.1:1"], ["REDIS_CONNECT_TIMEOUT", "50 millis"]])
      )
      const exit = yield* buildExit(
        RedisCacheBus.layerFromConfig(RedisClient.config, {
          resilience: { failureThreshold: 3 },
          bus: { heartbeat: "1 second" }
        })
      ).pipe(Effect.withConfigProvider(env), Effect.provide(logs.layer))
      assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
      assert.strictEqual(logs.ignored().length, 0, logs.lines.join("\n"))
    }))
})
