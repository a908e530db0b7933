/**
 * Secrets never leave: with a wrong password (by option, by URL, and on a caller-built client), a
 * malformed URL holding credentials, and a TLS failure, everything the program emits is captured
 * (every log line at every level with its annotations and cause, serialised with `JSON.stringify`
 * and `util.inspect`; every span with its attributes and events; every metric with its labels; the
 * layer's own failure) and the password appears nowhere. Authentication and TLS failures are one
 * ERROR line each and a counted store event, however many times the client reconnects.
 */
import { CacheAside, DataSource, Metrics } from "@cache-aside/core"
import type { CacheStore } from "@cache-aside/core/CacheStore"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import {
  Cause,
  Duration,
  Effect,
  Exit,
  HashMap,
  Layer,
  List,
  Logger,
  LogLevel,
  Metric,
  Redacted,
  Schema,
  Tracer
} from "effect"
import { Redis } from "ioredis"
import * as Util from "node:util"
import { certificates, startServer } from "./utils/Tls.js"

/** The secret under test: it must appear in nothing the program emits. */
const secret = "Sup3r-S3cret-P4ss"
/** The server's real password (the client never knows it). */
const serverPassword = "the-servers-own-password"

/** Long enough for several reconnect attempts (backoff 100 ms, 200 ms, 400 ms, ...). */
const reconnectAttempts = Duration.millis(1500)

const inspect = (value: unknown): string => Util.inspect(value, { depth: Infinity, showHidden: true, getters: true })

const json = (value: unknown): string => {
  const seen = new WeakSet<object>()
  try {
    return JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === "bigint") return v.toString()
      if (v instanceof Error) return { ...v, name: v.name, message: v.message, stack: v.stack }
      if (typeof v === "object" && v !== null) {
        if (seen.has(v)) return "[circular]"
        seen.add(v)
      }
      return v
    }) ?? ""
  } catch (error) {
    return `unserialisable: ${String(error)}`
  }
}

interface Line {
  readonly level: string
  readonly message: string
  readonly everything: string
}

/** Captures every log line (all levels) and span of `self`, and the metrics afterwards. */
const captured = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<Line> = []
    const logger = Logger.make<unknown, void>((options) => {
      const message = inspect(options.message)
      lines.push({
        level: options.logLevel.label,
        message,
        everything: [
          message,
          json(options.message),
          json(HashMap.toEntries(options.annotations)),
          inspect(options.annotations),
          json(List.toArray(options.spans)),
          Cause.pretty(options.cause, { renderErrorCause: true }),
          json(options.cause),
          inspect(options.cause)
        ].join("\n")
      })
    })
    const spans: Array<Tracer.Span> = []
    const base = yield* Effect.tracer
    const tracer = Tracer.make({
      span: (...args) => {
        const span = base.span(...args)
        spans.push(span)
        return span
      },
      context: base.context
    })
    const exit = yield* self.pipe(
      Effect.withSpan("request"),
      Effect.withTracer(tracer),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.All),
      Effect.exit
    )
    const metrics = yield* Metric.snapshot
    const emitted = [
      ...lines.map((line) => line.everything),
      ...spans.map((span) => `${inspect(span)}\n${json(span)}`),
      inspect(metrics),
      json(metrics),
      inspect(exit),
      Exit.isFailure(exit) ? Cause.pretty(exit.cause, { renderErrorCause: true }) : ""
    ].join("\n")
    return { exit, lines, spans, emitted }
  })

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
const one = new User({ id: 1, name: "one" })

/** Gets through a cache on `store`, each answered by the lookup (Redis refuses us); returns the store figures. */
const getsAndWait = <E>(store: Layer.Layer<CacheStore, E, Metrics.Metrics>) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(Layer.provideMerge(store, Metrics.layer))
    const source = yield* DataSource.memory<number, User>([[1, one]])
    const cache = yield* CacheAside.make({ namespace: "s", key: String, schema: User, lookup: source, ttl: "1 minute" })
      .pipe(Effect.provide(context))
    for (let i = 0; i < 5; i++) {
      assertSome(yield* cache.get(1), one)
      yield* Effect.sleep(Duration.times(reconnectAttempts, 0.2))
    }
    return yield* Effect.flatMap(Metrics.Metrics, (m) => m.storeSnapshot()).pipe(Effect.provide(context))
  }).pipe(Effect.scoped)

/** The password is nowhere; the capture itself saw the client's logs (so it could have seen the password). */
const assertClean = (emitted: string, lines: ReadonlyArray<Line>) => {
  assert.isAbove(lines.length, 0, "nothing was captured")
  assert.notInclude(emitted, secret)
  assert.notInclude(emitted, encodeURIComponent(secret))
}

const errorLines = (lines: ReadonlyArray<Line>, about: string) =>
  lines.filter((line) => line.level === "ERROR" && line.message.includes(about))

describe("secrets never leave", () => {
  it.scopedLive("wrong password (option): nowhere in logs, spans, metrics; one ERROR line; authFailures 1", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ args: ["--requirepass", serverPassword] })
      const { emitted, exit, lines } = yield* captured(
        getsAndWait(RedisCacheStore.layer({ host: server.host, port: server.port, password: Redacted.make(secret) }))
      )
      assert.isTrue(Exit.isSuccess(exit), inspect(exit))
      assertClean(emitted, lines)
      if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.authFailures, 1)
      assert.strictEqual(errorLines(lines, "credentials").length, 1, "one ERROR line per episode")
    }))

  it.scopedLive("wrong password (URL with user and password)", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ args: ["--requirepass", serverPassword] })
      const url = Redacted.make(`redis://someone:${encodeURIComponent(secret)}@${server.host}:${server.port}/0`)
      const { emitted, exit, lines } = yield* captured(getsAndWait(RedisCacheStore.layer({ url })))
      assert.isTrue(Exit.isSuccess(exit), inspect(exit))
      assertClean(emitted, lines)
      assert.strictEqual(errorLines(lines, "credentials").length, 1)
    }))

  it.scopedLive("wrong password on a caller-built client (layerFromClient)", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ args: ["--requirepass", serverPassword] })
      const client = new Redis({ host: server.host, port: server.port, password: secret, lazyConnect: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const { emitted, exit, lines } = yield* captured(
        Effect.zipRight(
          Effect.sync(() => client.connect().catch(() => undefined)),
          getsAndWait(RedisCacheStore.layerFromClient(client))
        )
      )
      assert.isTrue(Exit.isSuccess(exit), inspect(exit))
      assertClean(emitted, lines)
      assert.strictEqual(errorLines(lines, "credentials").length, 1)
    }))

  const malformed: ReadonlyArray<string> = [
    `redis://user:${secret}@localhost:99999`,
    `redis://user:${secret}@local host:6379`,
    `redis//user:${secret}@localhost`,
    `http://user:${secret}@localhost:6379`,
    `redis://user:${secret}@localhost:6379/not-a-db`
  ]
  for (const [i, url] of malformed.entries()) {
    it.scoped(`malformed URL with credentials #${i + 1}: a typed error, the URL nowhere`, () =>
      Effect.gen(function*() {
        const { emitted, exit, lines } = yield* captured(
          Effect.gen(function*() {
            yield* Effect.logDebug("building the layer") // the capture works
            return yield* Layer.build(Layer.provide(RedisCacheStore.layer({ url: Redacted.make(url) }), Metrics.layer))
          })
        )
        assert.isTrue(Exit.isFailure(exit), "the layer was built")
        if (Exit.isFailure(exit)) {
          assert.isFalse(Cause.isDie(exit.cause), Cause.pretty(exit.cause))
          assert.strictEqual([...Cause.failures(exit.cause)].map((e) => e._tag).join(","), "InvalidStoreOptions")
        }
        assertClean(emitted, lines)
      }))
  }

  it.scopedLive("TLS failure with a password: one ERROR line, tlsFailures 1, the password nowhere", () =>
    Effect.gen(function*() {
      const certs = yield* certificates
      const server = yield* startServer({
        tls: { certificates: certs, requireClientCert: false },
        args: ["--requirepass", serverPassword]
      })
      const { emitted, exit, lines } = yield* captured(getsAndWait(RedisCacheStore.layer({
        host: server.host,
        port: server.tlsPort,
        password: Redacted.make(secret),
        tls: { ca: certs.otherCa }
      })))
      assert.isTrue(Exit.isSuccess(exit), inspect(exit))
      assertClean(emitted, lines)
      if (Exit.isSuccess(exit)) {
        assert.strictEqual(exit.value.tlsFailures, 1)
        assert.strictEqual(exit.value.authFailures, 0)
      }
      assert.strictEqual(errorLines(lines, "TLS").length, 1, "one ERROR line per episode")
    }))
})
