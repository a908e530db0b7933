/**
 * RedisCacheBus lets go of a namespace when its last near cache closes, on a real redis-server:
 * the namespace's channel is unsubscribed (counted on the server: `PUBSUB CHANNELS`, `PUBSUB
 * NUMSUB`, the subscriber's `sub=` in `CLIENT LIST`), tracking is off once no namespace is left,
 * and the namespaces still in use, or subscribed again, stay coherent (stale reads counted: 0).
 * Waits are bounds against hangs; what is asserted is counted.
 */
import { CacheAside, CacheBus, Metrics } from "@cache-aside/core"
import { RedisCacheBus, RedisCacheStore, RedisClient } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertTrue, deepStrictEqual, strictEqual } from "@effect/vitest/utils"
import { Context, type Duration, Effect, Exit, Fiber, Layer, Option, Redacted, Schedule, Schema, Scope } from "effect"
import { Redis } from "ioredis"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

const channelPrefix = "cache-aside-bus:"

/** The store and the bus on one client (in context too: its data connection is looked at), and metrics. */
const storeAndBus = (server: RedisServer["Type"], heartbeat: Duration.DurationInput = "1 minute") =>
  Layer.build(
    Layer.merge(RedisCacheStore.layerWithClient, RedisCacheBus.layerWithClient({ heartbeat })).pipe(
      Layer.provideMerge(RedisClient.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" })),
      Layer.provideMerge(Metrics.layer)
    )
  )

/** Another process's bus (and its data client), over its own connections. */
const otherInstance = (server: RedisServer["Type"]) =>
  Effect.map(
    Layer.build(
      RedisCacheBus.layerWithClient({ heartbeat: "1 minute" }).pipe(
        Layer.provideMerge(RedisClient.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }))
      )
    ),
    (context) => ({
      bus: Context.get(context, CacheBus.CacheBus),
      client: Context.get(context, RedisClient.RedisClient)
    })
  )

type Built = Effect.Effect.Success<ReturnType<typeof storeAndBus>>

/** A near cache of `namespace` whose lookup answers `version()`. */
const nearCache = (context: Built, namespace: string, version: () => number) =>
  CacheAside.make({
    namespace,
    key: (key: string) => key,
    schema: Schema.Number,
    lookup: () => Effect.sync(() => Option.some(version())),
    ttl: "1 minute",
    nearCache: { maxEntries: 100, ttl: "1 minute" }
  }).pipe(Effect.provide(context))

/** The bus namespace of a cache made by `nearCache` (its full key prefix). */
const busNamespace = (namespace: string) => `cache:${namespace}:`

/** A subscriber that records what it is told. */
const recorder = () => {
  const evicted: Array<CacheBus.Invalidation> = []
  let flushes = 0
  const subscriber: CacheBus.Subscriber = { evict: (i) => evicted.push(i), flush: () => flushes++ }
  return { subscriber, evicted, flushes: () => flushes }
}

/** Polls (every 5 ms, at most `polls` times: 5 seconds) until `done` holds; `false` if it never did. */
const within = (done: Effect.Effect<boolean>, polls = 1000) =>
  done.pipe(
    Effect.flatMap((ok) => ok ? Effect.void : Effect.fail("not yet")),
    Effect.retry(Schedule.intersect(Schedule.spaced("5 millis"), Schedule.recurs(polls))),
    Effect.as(true),
    Effect.orElseSucceed(() => false)
  )

/** Like `within`, and fails the test with `what` when it never held. */
const eventually = (what: string, done: Effect.Effect<boolean>) =>
  Effect.flatMap(within(done), (ok) => Effect.sync(() => assert.isTrue(ok, what)))

/** The bus channels the server has subscribers for, sorted, as bus namespaces. */
const busChannels = (raw: Redis) =>
  Effect.map(
    Effect.promise(() => raw.pubsub("CHANNELS", `${channelPrefix}*`) as Promise<Array<string>>),
    (channels) => channels.map((c) => c.slice(channelPrefix.length)).sort()
  )

/** Polls until the server's bus channels are exactly `expected`, then asserts it. */
const channelsBecome = (raw: Redis, expected: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const want = [...expected].sort()
    yield* within(Effect.map(busChannels(raw), (now) => now.join("\n") === want.join("\n")))
    deepStrictEqual(yield* busChannels(raw), want)
  })

/** `CLIENT LIST` (of one type, or one id) as field maps. */
const clientList = (raw: Redis, ...filter: ReadonlyArray<string>) =>
  Effect.map(
    Effect.promise(() => raw.call("CLIENT", "LIST", ...filter) as Promise<string>),
    (text) =>
      text.split("\n").filter((line) => line.length > 0).map((line) =>
        new Map(
          line.trim().split(" ").map((field) => {
            const eq = field.indexOf("=")
            return [field.slice(0, eq), field.slice(eq + 1)] as const
          })
        )
      )
  )

/** The bus's subscriber connection as the server sees it (the only one named `cache-aside-bus`). */
const subscriberOf = (raw: Redis) =>
  Effect.map(clientList(raw, "TYPE", "pubsub"), (clients) => {
    const mine = clients.filter((c) => c.get("name") === "cache-aside-bus")
    strictEqual(mine.length, 1, "one bus subscriber connection")
    return { id: mine[0]!.get("id")!, channels: Number(mine[0]!.get("sub")) }
  })

/** Whether the data connection tracks, and where it redirects (`CLIENT LIST ID`: flag `t`, `redir`). */
const trackingOf = (raw: Redis, dataId: string) =>
  Effect.map(clientList(raw, "ID", dataId), ([client]) => ({
    on: client!.get("flags")!.includes("t"),
    redirect: client!.get("redir")!
  }))

/** The data connection's client id. */
const dataIdOf = (context: Built) =>
  Effect.promise(() => Context.get(context, RedisClient.RedisClient).connection!.client("ID").then(String))

/**
 * A fresh redis-server with the store and bus of this process over it, and a plain client of the
 * server (for PUBSUB, CLIENT LIST and writes by "another client").
 */
const fixture = (heartbeat?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const server = yield* RedisServer.make
    const context = yield* storeAndBus(server, heartbeat)
    const raw = yield* plainClient(server)
    return {
      server,
      context,
      raw,
      bus: Context.get(context, CacheBus.CacheBus),
      client: Context.get(context, RedisClient.RedisClient)
    }
  })

const snapshotOf = (context: Built, namespace: string) =>
  Effect.provide(Effect.flatMap(Metrics.Metrics, (metrics) => metrics.snapshot(namespace)), context)

const nearEvictions = (context: Built, namespace: string) =>
  Effect.map(snapshotOf(context, namespace), (snapshot) => Number(snapshot.nearEvictions))

/**
 * Gets `key` until the near cache answers it (counted in `nearHits`): on a loaded machine a stall
 * of this process bypasses the near cache for a moment, and a fill made then is not held.
 */
const heldInNear = <A, E>(context: Built, namespace: string, get: Effect.Effect<A, E>) =>
  eventually(
    `${namespace}: a near hit`,
    Effect.gen(function*() {
      const before = Number((yield* snapshotOf(context, namespace)).nearHits)
      yield* Effect.orDie(get)
      return Number((yield* snapshotOf(context, namespace)).nearHits) > before
    })
  )

describe("RedisCacheBus namespaces", () => {
  it.scopedLive("short-lived near caches in distinct namespaces: their channels go when they close, tracking once none is left", () =>
    Effect.gen(function*() {
      const { bus, context, raw } = yield* fixture()
      const dataId = yield* dataIdOf(context)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      const n = 20
      const names = Array.from({ length: n }, (_, i) => `tenant${i}`)
      // n near caches open at once, each read once
      yield* Effect.scoped(Effect.gen(function*() {
        const caches = yield* Effect.forEach(names, (name) => nearCache(context, name, () => 1))
        yield* Effect.forEach(caches, (cache) => cache.get("k"))
        yield* channelsBecome(raw, names.map(busNamespace))
        const subscriber = yield* subscriberOf(raw)
        strictEqual(subscriber.channels, n + 1, "the namespaces' channels and __redis__:invalidate")
        deepStrictEqual(yield* trackingOf(raw, dataId), { on: true, redirect: subscriber.id })
      }))
      yield* channelsBecome(raw, [])
      const counts = yield* Effect.promise(() =>
        raw.call("PUBSUB", "NUMSUB", ...names.map((name) => channelPrefix + busNamespace(name))) as Promise<
          Array<string | number>
        >
      )
      deepStrictEqual(counts.filter((_, i) => i % 2 === 1).map(Number), names.map(() => 0))
      strictEqual((yield* subscriberOf(raw)).channels, 1, "only __redis__:invalidate left")
      deepStrictEqual(yield* trackingOf(raw, dataId), { on: false, redirect: "-1" })
      // n more, one after another (a cache per request scope)
      for (const name of names) {
        yield* Effect.scoped(Effect.flatMap(nearCache(context, `again-${name}`, () => 1), (cache) => cache.get("k")))
      }
      yield* channelsBecome(raw, [])
      strictEqual((yield* subscriberOf(raw)).channels, 1)
      assertTrue(bus.healthy(), "the bus stays healthy throughout")
    }))

  it.scopedLive("a namespace in use keeps its channel and tracking, and sees every plain-client write, across the release of others", () =>
    Effect.gen(function*() {
      const { bus, context, raw } = yield* fixture()
      const dataId = yield* dataIdOf(context)
      let version = 0
      const keep = yield* nearCache(context, "keep", () => version)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      const subscriber = yield* subscriberOf(raw)
      const rounds = 8
      let missed = 0
      let stale = 0
      for (let round = 1; round <= rounds; round++) {
        yield* heldInNear(context, "keep", keep.get("k"))
        const evicted = yield* nearEvictions(context, "keep")
        // another namespace opened, read and released
        yield* Effect.scoped(Effect.flatMap(nearCache(context, `brief${round}`, () => 0), (cache) => cache.get("x")))
        // at once, a write by a plain client to the key the near cache holds
        version = round
        yield* Effect.promise(() => raw.del(keep.keyOf("k")))
        // bounded at 2 s: without the eviction, the read below is the stale one counted
        if (!(yield* within(Effect.map(nearEvictions(context, "keep"), (n) => n > evicted), 400))) missed++
        const read = yield* keep.get("k")
        if (Option.isSome(read) && read.value !== version) stale++
      }
      strictEqual(missed, 0, "writes whose eviction never came")
      strictEqual(stale, 0, "stale reads")
      yield* channelsBecome(raw, [busNamespace("keep")])
      deepStrictEqual(yield* subscriberOf(raw), { id: subscriber.id, channels: 2 }, "the same subscriber connection")
      deepStrictEqual(yield* trackingOf(raw, dataId), { on: true, redirect: subscriber.id })
    }))

  it.scopedLive("two near caches of one namespace: the channel stays until the second closes, and evictions reach the one left", () =>
    Effect.gen(function*() {
      const { bus, context, raw, server } = yield* fixture()
      let version = 1
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      const a = yield* Scope.extend(nearCache(context, "shared", () => version), first)
      const b = yield* Scope.extend(nearCache(context, "shared", () => version), second)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      assertSome(yield* a.get("k"), 1)
      yield* heldInNear(context, "shared", b.get("k"))
      yield* Scope.close(first, Exit.void)
      yield* channelsBecome(raw, [busNamespace("shared")])
      // another instance's message and a plain client's write both reach the cache left
      const other = yield* otherInstance(server)
      yield* eventually("the other instance healthy", Effect.sync(() => other.bus.healthy()))
      yield* other.bus.publish(busNamespace("shared"), { _tag: "Keys", keys: [b.keyOf("k")] })
      yield* eventually("the message's eviction", Effect.map(nearEvictions(context, "shared"), (n) => n === 1))
      yield* heldInNear(context, "shared", b.get("k")) // read again from Redis, held again
      version = 2
      yield* Effect.promise(() => raw.del(b.keyOf("k")))
      yield* eventually("the write's eviction", Effect.map(nearEvictions(context, "shared"), (n) => n === 2))
      assertSome(yield* b.get("k"), 2)
      yield* Scope.close(second, Exit.void)
      yield* channelsBecome(raw, [])
    }))

  it.scopedLive("a namespace subscribed again right after its release (UNSUBSCRIBE in flight) has its channel and evictions", () =>
    Effect.gen(function*() {
      const { bus, client, raw, server } = yield* fixture()
      const namespace = busNamespace("again")
      const before = recorder()
      const after = recorder()
      const first = yield* Scope.make()
      yield* Scope.extend(bus.subscribe(namespace, before.subscriber), first)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      yield* channelsBecome(raw, [namespace])
      // released and subscribed again with nothing in between: the UNSUBSCRIBE is not answered yet
      yield* Effect.zipRight(Scope.close(first, Exit.void), bus.subscribe(namespace, after.subscriber))
      const other = yield* otherInstance(server)
      yield* eventually("the other instance healthy", Effect.sync(() => other.bus.healthy()))
      yield* other.bus.publish(namespace, { _tag: "All" })
      yield* eventually("the message", Effect.sync(() => after.evicted.length === 1))
      yield* client.mgetBuffer([`${namespace}1:k`]) // read by this process: tracked
      yield* Effect.promise(() => raw.set(`${namespace}1:k`, "v"))
      yield* eventually("the write's eviction", Effect.sync(() => after.evicted.length === 2))
      deepStrictEqual(after.evicted, [{ _tag: "All" }, { _tag: "Keys", keys: [`${namespace}1:k`] }])
      deepStrictEqual(before.evicted, [], "the released subscriber is told nothing")
      deepStrictEqual(yield* busChannels(raw), [namespace])
    }))

  it.scopedLive("a near cache made again after the last one closed (tracking off, then on) is coherent", () =>
    Effect.gen(function*() {
      const { bus, context, raw } = yield* fixture()
      const dataId = yield* dataIdOf(context)
      let version = 1
      yield* Effect.scoped(Effect.gen(function*() {
        const cache = yield* nearCache(context, "phoenix", () => version)
        yield* eventually("healthy", Effect.sync(() => bus.healthy()))
        assertSome(yield* cache.get("k"), 1)
      }))
      yield* channelsBecome(raw, [])
      yield* eventually("tracking off", Effect.map(trackingOf(raw, dataId), (t) => !t.on))
      let missed = 0
      let stale = 0
      for (let round = 2; round <= 6; round++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const cache = yield* nearCache(context, "phoenix", () => version)
          yield* heldInNear(context, "phoenix", cache.get("k"))
          const evicted = yield* nearEvictions(context, "phoenix")
          version = round
          yield* Effect.promise(() => raw.del(cache.keyOf("k")))
          if (!(yield* within(Effect.map(nearEvictions(context, "phoenix"), (n) => n > evicted), 400))) missed++
          const read = yield* cache.get("k")
          if (Option.isSome(read) && read.value !== version) stale++
          deepStrictEqual(yield* busChannels(raw), [busNamespace("phoenix")])
        }))
      }
      strictEqual(missed, 0, "writes whose eviction never came")
      strictEqual(stale, 0, "stale reads")
    }))

  it.scopedLive("a subscription interrupted while its SUBSCRIBE waits for a paused server is released", () =>
    Effect.gen(function*() {
      const { bus, raw, server } = yield* fixture()
      yield* bus.subscribe(busNamespace("stays"), recorder().subscriber)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      yield* server.pause
      const fiber = yield* Effect.fork(Effect.scoped(bus.subscribe(busNamespace("brief"), recorder().subscriber)))
      yield* Effect.sleep("50 millis") // the SUBSCRIBE is sent, and not answered
      assert.isNull(fiber.unsafePoll(), "still waiting for the SUBSCRIBE")
      // the interruption does not wait for Redis (bounded: 1 s, while the server stays paused)
      const interrupting = yield* Effect.fork(Fiber.interrupt(fiber))
      assertTrue(yield* within(Effect.sync(() => interrupting.unsafePoll() !== null), 200), "interrupted at once")
      assertTrue(Exit.isInterrupted(yield* Fiber.join(interrupting)))
      yield* server.resume
      yield* channelsBecome(raw, [busNamespace("stays")])
      strictEqual((yield* subscriberOf(raw)).channels, 2)
    }))

  it.scopedLive("released and subscribed while the bus reconnects: once healthy, exactly the watched channels, and coherent", () =>
    Effect.gen(function*() {
      // a short heartbeat: a paused server counts as a lost bus, which stays unhealthy until it answers
      const { bus, client, context, raw, server } = yield* fixture("100 millis")
      const gone = yield* Scope.make()
      yield* Scope.extend(bus.subscribe(busNamespace("gone"), recorder().subscriber), gone)
      const stays = recorder()
      yield* bus.subscribe(busNamespace("stays"), stays.subscriber)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      yield* channelsBecome(raw, [busNamespace("gone"), busNamespace("stays")])
      const flushes = stays.flushes()
      yield* server.pause
      // the missed heartbeat: the bus counts as lost (a flush) and reconnects, in vain while paused
      yield* eventually("the loss", Effect.sync(() => stays.flushes() > flushes))
      yield* Scope.close(gone, Exit.void)
      const late = recorder()
      yield* bus.subscribe(busNamespace("late"), late.subscriber) // returns: the next establish covers it
      yield* server.resume
      yield* eventually("healthy again", Effect.sync(() => bus.healthy()))
      deepStrictEqual(yield* busChannels(raw), [busNamespace("late"), busNamespace("stays")])
      const subscriber = yield* subscriberOf(raw)
      strictEqual(subscriber.channels, 3)
      deepStrictEqual(yield* trackingOf(raw, yield* dataIdOf(context)), { on: true, redirect: subscriber.id })
      const key = `${busNamespace("late")}1:k`
      yield* client.mgetBuffer([key])
      yield* Effect.promise(() => raw.set(key, "v"))
      yield* eventually("the late namespace's eviction", Effect.sync(() => late.evicted.length === 1))
      deepStrictEqual(late.evicted, [{ _tag: "Keys", keys: [key] }])
    }))

  it.scopedLive("released and subscribed while an establish is under way (after the data connection's reconnect): the establish runs again", () =>
    Effect.gen(function*() {
      const { bus, client, context, raw } = yield* fixture()
      const gone = yield* Scope.make()
      const late = yield* Scope.make()
      yield* Scope.extend(bus.subscribe(busNamespace("gone"), recorder().subscriber), gone)
      yield* bus.subscribe(busNamespace("stays"), recorder().subscriber)
      yield* eventually("healthy", Effect.sync(() => bus.healthy()))
      const seen = recorder()
      // the bus's establish starts on the data connection's "ready", before this listener: it has
      // sent its SUBSCRIBE of the namespaces it saw, and waits for the reply
      const healthyThen: Array<boolean> = []
      client.connection!.once("ready", () => {
        healthyThen.push(bus.healthy())
        Effect.runSync(Scope.close(gone, Exit.void))
        Effect.runFork(Scope.extend(bus.subscribe(busNamespace("late"), seen.subscriber), late))
      })
      const dataId = yield* dataIdOf(context)
      yield* Effect.promise(() => raw.client("KILL", "ID", dataId))
      yield* eventually("healthy again", Effect.sync(() => healthyThen.length === 1 && bus.healthy()))
      deepStrictEqual(healthyThen, [false], "done while the bus re-established")
      yield* channelsBecome(raw, [busNamespace("late"), busNamespace("stays")])
      const subscriber = yield* subscriberOf(raw)
      deepStrictEqual(yield* trackingOf(raw, yield* dataIdOf(context)), { on: true, redirect: subscriber.id })
      const key = `${busNamespace("late")}1:k`
      yield* client.mgetBuffer([key])
      yield* Effect.promise(() => raw.set(key, "v"))
      yield* eventually("the late namespace's eviction", Effect.sync(() => seen.evicted.length === 1))
    }))

  for (const unsubscribe of [true, false]) {
    it.scopedLive(`as a user with the documented ACL${unsubscribe ? "" : " without +unsubscribe"}, under a keyPrefix: ${unsubscribe ? "a released namespace's channel goes" : "a refused UNSUBSCRIBE leaves the channel, and the bus as it was"}`, () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const acl = [
          ...["ACL", "SETUSER", "cache", "on", ">secret", "resetkeys", "~app:*", "resetchannels", "-@all"],
          // the store's (packages/redis/README.md, Minimal ACL) and the bus's (RedisCacheBus module doc)
          ...["+evalsha", "+eval", "+get", "+mget", "+strlen", "+set", "+del", "+unlink", "+scan", "+info"],
          ...["+publish", "+subscribe", "+ping", "+client|id", "+client|tracking"],
          ...(unsubscribe ? ["+unsubscribe"] : []),
          "&cache-aside-bus:*",
          "&__redis__:invalidate"
        ]
        strictEqual(yield* server.command(...acl), "+OK")
        const context = yield* Layer.build(
          RedisCacheBus.layerWithClient({ heartbeat: "1 minute" }).pipe(
            Layer.provideMerge(RedisClient.layer({
              url: Redacted.make(server.url),
              username: "cache",
              password: Redacted.make("secret"),
              keyPrefix: "app:",
              commandTimeout: "2 seconds"
            }))
          )
        )
        const bus = Context.get(context, CacheBus.CacheBus)
        const client = Context.get(context, RedisClient.RedisClient)
        const raw = yield* plainClient(server)
        const brief = yield* Scope.make()
        const stays = recorder()
        yield* Scope.extend(bus.subscribe(busNamespace("brief"), recorder().subscriber), brief)
        yield* bus.subscribe(busNamespace("stays"), stays.subscriber)
        yield* eventually("healthy", Effect.sync(() => bus.healthy()))
        yield* channelsBecome(raw, [`app:${busNamespace("brief")}`, `app:${busNamespace("stays")}`])
        const flushes = stays.flushes()
        yield* Scope.close(brief, Exit.void)
        // answered after the UNSUBSCRIBE (one connection, in order): it has been answered too
        yield* bus.subscribe(busNamespace("after"), recorder().subscriber)
        deepStrictEqual(
          yield* busChannels(raw),
          [
            ...(unsubscribe ? [] : [`app:${busNamespace("brief")}`]),
            `app:${busNamespace("after")}`,
            `app:${busNamespace("stays")}`
          ].sort()
        )
        strictEqual(stays.flushes(), flushes, "no flush: the bus did not count a lost connection")
        assertTrue(bus.healthy())
        yield* client.mgetBuffer([`${busNamespace("stays")}1:k`])
        yield* Effect.promise(() => raw.set(`app:${busNamespace("stays")}1:k`, "v"))
        yield* eventually("the eviction", Effect.sync(() => stays.evicted.length === 1))
      }))
  }
})
