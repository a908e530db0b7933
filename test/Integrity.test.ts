/**
 * Entry integrity (issue 9, item 9) on a real redis-server: an attacker with write access to Redis
 * (a plain ioredis client here) plants well-formed entries, signs them with a key of its own, or
 * copies signed entries between keys; a cache with a signing key answers each from the lookup,
 * counts it (`integrityErrors`) and replaces the planted bytes. Two caches on two connections (two
 * processes) with the same key read each other's entries as hits, compressed ones too. The signing
 * key reaches neither Redis nor a log line.
 */
import { CacheAside, Codec, DataSource, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertTrue } from "@effect/vitest/utils"
import { Clock, Effect, Either, Layer, Logger, LogLevel, Redacted, Schema } from "effect"
import { Redis } from "ioredis"
import * as crypto from "node:crypto"
import * as util from "node:util"
import { RedisServer } from "./utils/RedisServer.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

/** Names long enough that every entry is gzipped (above the default `compressAbove`) for odd ids. */
const user = (id: number) => new User({ id, name: id % 2 === 1 ? `user ${id} `.repeat(400) : `user ${id}` })

const secret = "redis-integrity-signing-key-0123456789"
const ids = [1, 2, 3, 4, 5, 6]

/** A store on its own connection (as another process has) with metrics, and a signed cache of users. */
const instance = (url: string, namespace: string, source: DataSource.Memory<number, User>, key = secret) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.provideMerge(RedisCacheStore.layer({ url: Redacted.make(url), commandTimeout: "2 seconds" }), Metrics.layer)
    )
    const users = yield* CacheAside.make({
      namespace,
      key: (id: number) => String(id),
      schema: User,
      lookup: source,
      ttl: "10 minutes",
      decodeCacheSize: 0,
      signingKey: Redacted.make(key)
    }).pipe(Effect.provide(context))
    const snapshot = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace)).pipe(Effect.provide(context))
    return { users, snapshot }
  })

const rawClient = (url: string) =>
  Effect.acquireRelease(Effect.sync(() => new Redis(url)), (raw) => Effect.sync(() => raw.disconnect()))

const wellFormed = (value: User) =>
  Effect.map(
    Clock.currentTimeMillis,
    (now) =>
      Buffer.from(
        Either.getOrThrow(Codec.make(User).encode({ _tag: "Value", value, expiresAt: now + 600_000, delta: 0 }))
      )
  )

/** The signed layout, with the attacker's own key. */
const signWith = (key: string, full: string, payload: Uint8Array): Buffer => {
  const name = Buffer.from(full, "utf8")
  const length = Buffer.alloc(4)
  length.writeUInt32BE(name.length)
  const mac = crypto.createHmac("sha256", key).update(length).update(name).update(payload).digest()
  return Buffer.concat([Buffer.from([1, 1]), mac, payload])
}

describe("entry integrity (Redis)", () => {
  it.scopedLive(
    "forged entries written with a plain client are counted, evicted misses answered by the lookup",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const source = yield* DataSource.memory<number, User>(ids.map((id) => [id, user(id)] as const))
        const { snapshot, users } = yield* instance(server.url, "forged", source)
        const raw = yield* rawClient(server.url)
        yield* users.getMany(ids)
        const loads = yield* source.loads
        const forgedOf = (id: number) => new User({ id, name: "mallory" })
        const planted = new Map<number, Buffer>()
        planted.set(1, yield* wellFormed(forgedOf(1))) // unsigned
        planted.set(2, signWith("the-attackers-own-key-0123456789", users.keyOf(2), yield* wellFormed(forgedOf(2))))
        for (const [id, bytes] of planted) yield* Effect.promise(() => raw.set(users.keyOf(id), bytes, "PX", 600_000))
        // a signed (and gzipped) entry copied from another key
        const copied = yield* Effect.promise(() => raw.getBuffer(users.keyOf(5)))
        assertTrue(copied !== null)
        yield* Effect.promise(() => raw.set(users.keyOf(3), copied, "PX", 600_000))
        planted.set(3, copied)
        assertSome(yield* users.get(1), user(1))
        const many = yield* users.getMany(ids)
        for (const [i, id] of ids.entries()) assertSome(many[i]!, user(id))
        assert.strictEqual((yield* source.loads) - loads, 3, "one lookup per planted entry, none for the others")
        assert.strictEqual((yield* snapshot).integrityErrors, 3)
        for (const [id, bytes] of planted) {
          const now = yield* Effect.promise(() => raw.getBuffer(users.keyOf(id)))
          assertTrue(now !== null && !now.equals(bytes), `planted entry ${id} was not replaced`)
        }
        // the replacements are the cache's own: hits
        for (const id of ids) assertSome(yield* users.get(id), user(id))
        assert.strictEqual((yield* source.loads) - loads, 3)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "two processes with the same key read each other's entries; another key's are misses",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const source = yield* DataSource.memory<number, User>(ids.map((id) => [id, user(id)] as const))
        const a = yield* instance(server.url, "shared", source)
        const b = yield* instance(server.url, "shared", source)
        const c = yield* instance(server.url, "shared", source, "a-different-signing-key-9876543210")
        const raw = yield* rawClient(server.url)
        const many = yield* a.users.getMany(ids)
        for (const [i, id] of ids.entries()) assertSome(many[i]!, user(id))
        for (const id of ids) assertSome(yield* b.users.get(id), user(id))
        assert.strictEqual(yield* source.loads, ids.length, "b hits what a wrote")
        assert.strictEqual((yield* b.snapshot).hits, ids.length)
        // odd ids are compressed: the MAC covers the gzip stream (signed bytes, then gzip's magic)
        const odd = yield* Effect.promise(() => raw.getBuffer(a.users.keyOf(1)))
        assertTrue(odd !== null && odd[0] === 1 && odd[1] === 1 && odd[34] === 0x1f && odd[35] === 0x8b)
        assertSome(yield* c.users.get(1), user(1))
        assert.strictEqual(yield* source.loads, ids.length + 1)
        assert.strictEqual((yield* c.snapshot).integrityErrors, 1)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("the signing key reaches neither Redis nor a log line", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => {
        lines.push(util.inspect(options, { depth: 20 }))
      })
      const server = yield* RedisServer.make
      const source = yield* DataSource.memory<number, User>(ids.map((id) => [id, user(id)] as const))
      const raw = yield* rawClient(server.url)
      yield* Effect.gen(function*() {
        const { snapshot, users } = yield* instance(server.url, "leak", source)
        yield* users.getMany(ids)
        yield* Effect.promise(() => raw.set(users.keyOf(1), "garbage", "PX", 600_000))
        yield* Effect.promise(async () => raw.set(users.keyOf(2), await Effect.runPromise(wellFormed(user(2)))))
        yield* users.getMany(ids)
        lines.push(JSON.stringify(yield* snapshot))
      }).pipe(Effect.provide(Logger.add(capture)), Logger.withMinimumLogLevel(LogLevel.All))
      assert.isAtLeast(lines.length, 3)
      assertTrue(lines.join("\n").includes("Integrity"))
      const stored = yield* Effect.promise(async () => {
        const keys = await raw.keys("*")
        const values = await Promise.all(keys.map((key) => raw.getBuffer(key)))
        return Buffer.concat([Buffer.from(keys.join("\n")), ...values.filter((v) => v !== null)])
      })
      assert.isAbove(stored.length, 0)
      assertTrue(!stored.includes(secret), "the key is in Redis")
      assertTrue(!lines.join("\n").includes(secret), "the key is in a log line")
    }), { timeout: 60_000 })
})
