/**
 * The ioredis side of `RedisCacheBus`: a subscriber connection, and Redis client-side caching
 * (`CLIENT TRACKING`) on the data connection. Besides `RedisClient.ts`, this is the only module of
 * the package that talks to ioredis; `RedisCacheBus` sees it through the narrow `Tracker` interface.
 *
 * The subscriber connection (a duplicate of the data connection, without its `keyPrefix`) is
 * subscribed to `__redis__:invalidate` and to one channel per namespace. After each connect of
 * the subscriber it reads its `CLIENT ID`, subscribes, and enables on the data connection
 *
 *     CLIENT TRACKING on REDIRECT <subscriber id> BCAST PREFIX <keyPrefix><prefix:namespace:> ... NOLOOP
 *
 * (one `PREFIX` per watched namespace, never an empty one), again after every reconnect of either
 * connection. `NOLOOP`: the data connection's own writes (this process's fills) are not reported
 * back to it; every other client's writes to a watched key are.
 *
 * Health: `healthy` is `false` from the moment either connection closes, or the subscriber misses
 * a heartbeat (a paused server), until both are back, subscribed and tracking again. Each change
 * is reported, so that near caches flush: invalidations may have been missed meanwhile.
 *
 * Currency: the subscriber is pinged every half heartbeat, and `healthy` is also `false` while
 * nothing was heard from it for a whole heartbeat. After this process stalls (a long GC pause, a
 * starved CPU), Node runs due timers before it reads sockets: reads would otherwise be answered
 * from the near cache before the invalidations that arrived meanwhile are applied. Nothing was
 * lost, so this only bypasses (no flush) until the subscriber's data has been read.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Redis } from "ioredis"

/** The channel Redis sends client-side caching invalidations to (RESP2 redirect). */
export const invalidationChannel = "__redis__:invalidate"

/** The prefix of every namespace channel. @internal */
export const channelPrefix = "cache-aside-bus:"

/** @internal */
export interface Handlers {
  /** A message on a namespace channel (`namespace` is the bus namespace, without the client's keyPrefix). */
  readonly onMessage: (namespace: string, payload: string) => void
  /** Keys written by another client (without the client's keyPrefix); `null`: the database was flushed. */
  readonly onKeys: (keys: ReadonlyArray<string> | null) => void
  /** Health changed. */
  readonly onHealth: (healthy: boolean) => void
}

/** @internal */
export interface Tracker {
  readonly healthy: () => boolean
  /** Subscribes to a namespace's channel and tracks its key prefix; done (or failed and re-establishing) when it returns. */
  readonly watch: (namespace: string) => Effect.Effect<void>
  /** Publishes on a namespace's channel; `false` when it could not be sent. */
  readonly publish: (namespace: string, payload: string) => Effect.Effect<boolean>
}

/** @internal */
export interface Options {
  /** How often the subscriber is pinged, and how long a ping may take, before the bus counts as lost. */
  readonly heartbeat: Duration.Duration
}

const toText = (value: unknown): string => Buffer.isBuffer(value) ? value.toString("utf8") : String(value)

/** Drops prefixes that another one covers (Redis refuses overlapping prefixes). */
const minimal = (prefixes: Iterable<string>): Array<string> => {
  const sorted = Array.from(new Set(prefixes)).filter((p) => p.length > 0).sort()
  const kept: Array<string> = []
  for (const prefix of sorted) {
    if (!kept.some((k) => prefix.startsWith(k))) kept.push(prefix)
  }
  return kept
}

/**
 * Starts the subscriber connection and tracking for the scope's lifetime. Never fails: while Redis
 * is unreachable the tracker is unhealthy and keeps trying.
 *
 * @internal
 */
export const make = (
  data: Redis,
  handlers: Handlers,
  options: Options
): Effect.Effect<Tracker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const keyPrefix = data.options.keyPrefix ?? ""
    const namespaces = new Set<string>()
    /** Prefixes enabled on the data connection since it last connected. */
    let tracked: Array<string> = []
    let healthy = false
    // real time: a TestClock must not stall the connection's heartbeat
    const live = Clock.make()
    /** When the subscriber last delivered anything (a message, a PING reply). */
    let lastHeard = 0
    const heard = () => {
      lastHeard = live.unsafeCurrentTimeMillis()
    }
    let generation = 0

    const subscriber = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const sub = data.duplicate({
          keyPrefix: "",
          autoResubscribe: false,
          enableOfflineQueue: true,
          lazyConnect: true,
          connectionName: "cache-aside-bus"
        })
        sub.on("error", () => {}) // surfaces as "close" and health; never an unhandled error event
        return sub
      }),
      (sub) =>
        Effect.sync(() => {
          generation++
          sub.disconnect(false)
        })
    )

    const setHealthy = (next: boolean) => {
      if (next === healthy) return
      healthy = next
      handlers.onHealth(next)
    }

    const channelOf = (namespace: string) => `${channelPrefix}${keyPrefix}${namespace}`
    const enableTracking = (id: number, prefixes: ReadonlyArray<string>) =>
      prefixes.length === 0
        ? Promise.resolve()
        : data.call(
          "CLIENT",
          "TRACKING",
          "on",
          "REDIRECT",
          String(id),
          "BCAST",
          ...prefixes.flatMap((prefix) => ["PREFIX", prefix]),
          "NOLOOP"
        ).then(() => {
          tracked = minimal([...tracked, ...prefixes])
        })

    let subscriberId: number | undefined
    /** The current subscriber connection is in subscriber mode (its id is `subscriberId`). */
    let subscribed = false

    /**
     * Subscribes and enables tracking from scratch; becomes healthy when both connections are up.
     * Abandoned when another connect or close happened since (`generation`).
     */
    const establish = async (): Promise<void> => {
      const mine = ++generation
      setHealthy(false)
      if (subscriber.status !== "ready" || data.status !== "ready") return
      try {
        // CLIENT ID is refused once the connection is in subscriber mode: asked once per connection
        const id = subscribed && subscriberId !== undefined ? subscriberId : Number(await subscriber.client("ID"))
        const watched = Array.from(namespaces)
        await subscriber.subscribe(invalidationChannel, ...watched.map(channelOf))
        // facts about this connection, whichever attempt learnt them (a close resets them)
        subscriberId = id
        subscribed = true
        if (mine !== generation) return
        tracked = []
        await data.call("CLIENT", "TRACKING", "off")
        await enableTracking(id, minimal(watched.map((n) => keyPrefix + n)))
        if (mine !== generation) return
        // a namespace watched meanwhile is not covered yet: once more
        if (namespaces.size !== watched.length) return establish()
        heard()
        setHealthy(true)
      } catch {
        // a failed step: start over on a fresh subscriber connection
        if (mine === generation && subscriber.status === "ready") subscriber.disconnect(true)
      }
    }
    const onReady = () => void establish()
    const lost = () => {
      generation++
      tracked = []
      setHealthy(false)
    }
    const onMessage = (channel: unknown, message: unknown) => {
      heard()
      const name = toText(channel)
      if (name === invalidationChannel) {
        if (message === null || message === undefined) return handlers.onKeys(null)
        const keys: Array<string> = []
        for (const key of Array.isArray(message) ? message : [message]) {
          const text = toText(key)
          if (text.startsWith(keyPrefix)) keys.push(text.slice(keyPrefix.length))
        }
        if (keys.length > 0) handlers.onKeys(keys)
        return
      }
      const prefix = channelPrefix + keyPrefix
      if (name.startsWith(prefix)) handlers.onMessage(name.slice(prefix.length), toText(message))
    }
    subscriber.on("ready", onReady)
    subscriber.on("close", () => {
      subscribed = false
      lost()
    })
    subscriber.on("messageBuffer", onMessage)
    data.on("ready", onReady)
    data.on("close", lost)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        data.off("ready", onReady)
        data.off("close", lost)
      })
    )

    // A paused server keeps connections open and answers nothing: ping the subscriber on a real
    // clock, and count a missed answer as a lost connection (the reconnect re-establishes).
    const heartbeatMillis = Math.max(1, Duration.toMillis(options.heartbeat))
    const ping = Effect.async<boolean>((resume) => {
      const timer = setTimeout(() => resume(Effect.succeed(false)), heartbeatMillis)
      subscriber.ping().then(
        () => {
          clearTimeout(timer)
          heard()
          resume(Effect.succeed(true))
        },
        () => {
          clearTimeout(timer)
          resume(Effect.succeed(false))
        }
      )
      return Effect.sync(() => clearTimeout(timer))
    })
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          Effect.sleep(Duration.millis(heartbeatMillis / 2)),
          Effect.suspend(() => subscriber.status === "ready" ? ping : Effect.succeed(true)).pipe(
            Effect.flatMap((answered) =>
              Effect.sync(() => {
                if (answered || subscriber.status !== "ready") return
                lost()
                subscriber.disconnect(true)
              })
            )
          )
        )
      ).pipe(Effect.withClock(live))
    )

    yield* Effect.sync(() => {
      subscriber.connect().catch(() => {})
    })

    const watch = (namespace: string): Effect.Effect<void> =>
      Effect.promise(async () => {
        if (namespace.length === 0 || namespaces.has(namespace)) return
        namespaces.add(namespace)
        if (!healthy || subscriberId === undefined) return // the next establish covers it
        const mine = generation
        const prefix = keyPrefix + namespace
        try {
          await subscriber.subscribe(channelOf(namespace))
          if (tracked.some((p) => prefix.startsWith(p))) return
          if (tracked.some((p) => p.startsWith(prefix))) {
            // a broader prefix than one already tracked: Redis refuses overlaps, start over
            void establish()
            return
          }
          await enableTracking(subscriberId, [prefix])
        } catch {
          if (mine === generation) {
            lost()
            subscriber.disconnect(true)
          }
        }
      })

    const publish = (namespace: string, payload: string): Effect.Effect<boolean> =>
      Effect.promise(() => data.publish(channelOf(namespace), payload).then(() => true, () => false))

    return {
      healthy: () => healthy && live.unsafeCurrentTimeMillis() - lastHeard <= heartbeatMillis,
      watch,
      publish
    }
  })
