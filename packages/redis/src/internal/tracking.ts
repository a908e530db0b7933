/**
 * The ioredis side of `RedisCacheBus`: a subscriber connection, and Redis client-side caching
 * (`CLIENT TRACKING`) on the data connection. Besides `RedisClient.ts`, this is the only module of
 * the package that talks to ioredis; `RedisCacheBus` sees it through the narrow `Tracker` interface.
 *
 * The subscriber connection (a duplicate of the data connection, without its `keyPrefix`) is
 * subscribed to `__redis__:invalidate` and to one channel per watched namespace. After each connect
 * of the subscriber it reads its `CLIENT ID`, subscribes, and, while a namespace is watched, enables
 * on the data connection
 *
 *     CLIENT TRACKING on REDIRECT <subscriber id> NOLOOP
 *
 * again after every reconnect of either connection. The default tracking mode, not `BCAST`: Redis
 * remembers the keys this connection reads (reads inside scripts count for the connection that ran
 * the script) and reports a later write to any of them by any other client. `NOLOOP` keeps this
 * connection's own writes from coming back, scripts included (in `BCAST` mode Redis records a
 * script's writes as made by the script's own client, so every fill's compare-and-set came back and
 * evicted what it had just cached). An own write also ends the tracking of its key: the fill script
 * reads the key after writing it (`scripts.compareAndSet`), so what a fill puts in a near cache stays
 * tracked. A near cache holds only what this connection read or filled, so every key it holds is
 * tracked: tracking is on before a near cache exists (its `subscribe`, in `make`, returns after
 * `watch` turned it on) and before the bus turns healthy again after a reconnect (`establish`), and
 * the near caches flush on every change of health, so nothing read while it was off is served.
 *
 * Namespaces are reference-counted (`watch` is a scoped resource): when the last subscriber of one
 * is released, its channel is unsubscribed at once; when no namespace is left, tracking is turned
 * off. Tracking holds nothing per namespace (no `BCAST` prefixes), so releasing one never touches the
 * tracking of the others: no gap in which a write goes unnoticed. Turning it off with nothing watched
 * cannot lose an invalidation anyone needs, and the next `watch` turns it on again before it returns.
 * Every command is sent synchronously with the change that calls for it, and Redis runs a
 * connection's commands in order, so the last one sent wins: a release and an immediate re-watch
 * leave the channel subscribed, the `SUBSCRIBE` answered after the `UNSUBSCRIBE`. Releases send and
 * do not wait (a hung Redis must not hang a scope's close); a refused `UNSUBSCRIBE` (an ACL without
 * `+unsubscribe`) leaves a channel nobody listens to, which costs traffic, never coherence.
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

/**
 * The largest bus message read. Anyone allowed to `PUBLISH` can send one: a message of megabytes (a
 * pattern, a key list) would take seconds and gigabytes to parse, compile and match against every
 * near-cache entry, in every process. The bus's own messages name one key or one pattern; a larger
 * one is not read, and its namespace's near caches are flushed instead (nothing stale is kept).
 *
 * @internal
 */
export const maxMessageBytes = 64 * 1024

/** How often the event loop's progress past its I/O poll is noted (see `Connection.pollWatch`). */
const pollTickMillis = 20

/**
 * A loop that has not got past its I/O poll for this long may hold unread invalidations: the near
 * cache is bypassed until it has (counted in `nearBypasses`).
 */
const pollSlackMillis = 60

/** The channel Redis sends client-side caching invalidations to (RESP2 redirect). */
export const invalidationChannel = "__redis__:invalidate"

/** The prefix of every namespace channel. @internal */
export const channelPrefix = "cache-aside-bus:"

/** @internal */
export interface Handlers {
  /**
   * A message on a namespace channel (`namespace` is the bus namespace, without the client's
   * keyPrefix); `undefined`: larger than any message the bus sends (`maxMessageBytes`), not read.
   */
  readonly onMessage: (namespace: string, payload: string | undefined) => void
  /** Keys written by another client (without the client's keyPrefix); `null`: the database was flushed. */
  readonly onKeys: (keys: ReadonlyArray<string> | null) => void
  /** Health changed. */
  readonly onHealth: (healthy: boolean) => void
}

/** @internal */
export interface Tracker {
  readonly healthy: () => boolean
  /**
   * Watches a namespace for the scope's lifetime: its channel subscribed (and tracking on) when it
   * returns, or the bus unhealthy until an `establish` has covered it. Counted per namespace: the
   * last release unsubscribes the channel (and turns tracking off when no namespace is left).
   */
  readonly watch: (namespace: string) => Effect.Effect<void, never, Scope.Scope>
  /** Publishes on a namespace's channel; `false` when it could not be sent. */
  readonly publish: (namespace: string, payload: string) => Effect.Effect<boolean>
}

/** @internal */
export interface Options {
  /** How often the subscriber is pinged, and how long a ping may take, before the bus counts as lost. */
  readonly heartbeat: Duration.Duration
}

const toText = (value: unknown): string => Buffer.isBuffer(value) ? value.toString("utf8") : String(value)

/** A watched namespace: how many subscribers hold it, and when its channel is in place. */
interface Watched {
  refs: number
  /** Settles when the channel is subscribed and tracking on (or the bus went unhealthy trying). */
  ready: Promise<void>
}

const settled = Promise.resolve()

/**
 * The state of one bus connection: the namespaces watched, whether tracking is on on the data
 * connection, the subscriber's id and health. `generation` abandons an `establish` overtaken by a
 * newer connect or close; `changes` makes an `establish` that saw another set of namespaces run again.
 */
class Connection {
  readonly namespaces = new Map<string, Watched>()
  /** Bumped by every namespace added or removed. */
  changes = 0
  /** The namespaces whose channel a `SUBSCRIBE` was sent for on the current subscriber connection. */
  readonly channels = new Set<string>()
  /** The last tracking command sent on the data connection since it connected was `on`. */
  tracking = false
  /** The reply to that `on`: a namespace's watchers wait for it. */
  trackingOn: Promise<void> = settled
  healthyNow = false
  /** When the subscriber last delivered anything (a message, a PING reply). */
  lastHeard = 0
  generation = 0
  subscriberId: number | undefined = undefined
  /** The current subscriber connection is in subscriber mode (its id is `subscriberId`). */
  subscribed = false
  readonly keyPrefix: string
  // real time: a TestClock must not stall the connection's heartbeat
  readonly live = Clock.make()

  constructor(
    readonly data: Redis,
    readonly subscriber: Redis,
    readonly handlers: Handlers,
    readonly heartbeatMillis: number
  ) {
    this.keyPrefix = data.options.keyPrefix ?? ""
  }

  /** When the event loop last got past its poll for I/O (see `pollWatch`). */
  lastPoll = 0

  heard(): void {
    this.lastHeard = this.live.unsafeCurrentTimeMillis()
  }

  healthy = (): boolean => {
    const now = this.live.unsafeCurrentTimeMillis()
    return this.healthyNow && now - this.lastHeard <= this.heartbeatMillis && now - this.lastPoll <= pollSlackMillis
  }

  /**
   * Notes, every `pollTickMillis`, when the event loop gets past its poll for I/O (a `setImmediate`
   * runs right after it). After a stall (a long GC pause, a starved CPU, a CPU-bound handler) Node
   * runs the due timers before it reads the sockets: a get started by one would answer from the near
   * cache before the invalidations that arrived during the stall are read. Until the loop has polled
   * again, `healthy` is false (the near cache is bypassed, not flushed: nothing was lost).
   */
  pollWatch(): () => void {
    let immediate: ReturnType<typeof setImmediate> | undefined
    const polled = () => {
      immediate = undefined
      this.lastPoll = this.live.unsafeCurrentTimeMillis()
    }
    polled()
    const timer = setInterval(() => {
      if (immediate === undefined) immediate = setImmediate(polled)
    }, pollTickMillis)
    timer.unref()
    return () => {
      clearInterval(timer)
      if (immediate !== undefined) clearImmediate(immediate)
    }
  }

  setHealthy(next: boolean): void {
    if (next === this.healthyNow) return
    this.healthyNow = next
    this.handlers.onHealth(next)
  }

  channelOf(namespace: string): string {
    return `${channelPrefix}${this.keyPrefix}${namespace}`
  }

  /** Turns tracking on (once: later callers wait for the same reply). */
  trackOn(id: number): Promise<void> {
    if (!this.tracking) {
      this.tracking = true
      this.trackingOn = this.data.call("CLIENT", "TRACKING", "on", "REDIRECT", String(id), "NOLOOP").then(() => {})
    }
    return this.trackingOn
  }

  /** Turns tracking off, when nothing is watched. Not waited for: a failure leaves it on (harmless). */
  trackOff(): void {
    if (!this.tracking) return
    this.tracking = false
    this.data.call("CLIENT", "TRACKING", "off").catch(() => {})
  }

  /** Subscribes channels on the subscriber connection, noting them at once (a release may follow before the reply). */
  subscribeChannels(namespaces: ReadonlyArray<string>, extra: ReadonlyArray<string> = []): Promise<unknown> {
    for (const namespace of namespaces) this.channels.add(namespace)
    return this.subscriber.subscribe(...extra, ...namespaces.map((n) => this.channelOf(n)))
  }

  /**
   * Unsubscribes a namespace's channel if the current subscriber connection has it. Not waited
   * for; on a connection that is not ready there is nothing to do (it closes, and the next one
   * subscribes only what is watched then).
   */
  unsubscribeChannel(namespace: string): void {
    if (!this.channels.delete(namespace) || this.subscriber.status !== "ready") return
    this.subscriber.unsubscribe(this.channelOf(namespace)).catch(() => {})
  }

  /**
   * Subscribes and enables tracking from scratch; becomes healthy when both connections are up.
   * Abandoned when another connect or close happened since (`generation`).
   */
  establish = async (): Promise<void> => {
    const mine = ++this.generation
    this.setHealthy(false)
    if (this.subscriber.status !== "ready" || this.data.status !== "ready") return
    try {
      // CLIENT ID is refused once the connection is in subscriber mode: asked once per connection
      const id = this.subscribed && this.subscriberId !== undefined
        ? this.subscriberId
        : Number(await this.subscriber.client("ID"))
      const changes = this.changes
      const watched = Array.from(this.namespaces.keys())
      await this.subscribeChannels(watched, [invalidationChannel])
      // facts about this connection, whichever attempt learnt them (a close resets them)
      this.subscriberId = id
      this.subscribed = true
      if (mine !== this.generation) return
      this.tracking = false
      await this.data.call("CLIENT", "TRACKING", "off")
      if (mine !== this.generation) return
      if (watched.length > 0) await this.trackOn(id)
      if (mine !== this.generation) return
      // a namespace watched or released meanwhile is not accounted for: once more
      if (this.changes !== changes) return this.establish()
      this.heard()
      this.setHealthy(true)
    } catch {
      // a failed step: start over on a fresh subscriber connection
      if (mine === this.generation && this.subscriber.status === "ready") this.subscriber.disconnect(true)
    }
  }

  onReady = (): void => void this.establish()

  lost = (): void => {
    this.generation++
    this.tracking = false
    this.setHealthy(false)
  }

  onClose = (): void => {
    this.subscribed = false
    this.channels.clear()
    this.lost()
  }

  /** Counts a lost connection and reconnects the subscriber (the reconnect re-establishes). */
  drop(): void {
    this.lost()
    this.subscriber.disconnect(true)
  }

  onMessage = (channel: unknown, message: unknown): void => {
    this.heard()
    const name = toText(channel)
    if (name === invalidationChannel) {
      if (message === null || message === undefined) return this.handlers.onKeys(null)
      const keys: Array<string> = []
      for (const key of Array.isArray(message) ? message : [message]) {
        const text = toText(key)
        if (text.startsWith(this.keyPrefix)) keys.push(text.slice(this.keyPrefix.length))
      }
      if (keys.length > 0) this.handlers.onKeys(keys)
      return
    }
    const prefix = channelPrefix + this.keyPrefix
    if (!name.startsWith(prefix)) return
    const size = Buffer.isBuffer(message) ? message.length : typeof message === "string" ? message.length : 0
    this.handlers.onMessage(name.slice(prefix.length), size > maxMessageBytes ? undefined : toText(message))
  }

  /**
   * One PING within the heartbeat: `false` when it failed or did not answer in time. A time-out is
   * decided after the event loop's next poll for I/O (`setImmediate` runs after it): when this
   * process stalled past the heartbeat, Node runs the due timer before it reads the sockets, and
   * an answer that arrived during the stall must count (it was not lost, only not yet read).
   */
  ping(): Effect.Effect<boolean> {
    return Effect.async<boolean>((resume) => {
      let answered: boolean | undefined
      let immediate: ReturnType<typeof setImmediate> | undefined
      const settle = (ok: boolean) => {
        if (answered !== undefined) return
        answered = ok
        clearTimeout(timer)
        if (immediate !== undefined) clearImmediate(immediate)
        resume(Effect.succeed(ok))
      }
      const timer = setTimeout(() => {
        immediate = setImmediate(() => settle(false))
      }, this.heartbeatMillis)
      this.subscriber.ping().then(
        () => {
          this.heard()
          settle(true)
        },
        () => settle(false)
      )
      return Effect.sync(() => {
        answered = false
        clearTimeout(timer)
        if (immediate !== undefined) clearImmediate(immediate)
      })
    })
  }

  /**
   * A paused server keeps connections open and answers nothing: ping the subscriber on a real
   * clock, and count a missed answer as a lost connection.
   */
  heartbeat(): Effect.Effect<never> {
    return Effect.forever(
      Effect.zipRight(
        Effect.sleep(Duration.millis(this.heartbeatMillis / 2)),
        Effect.suspend(() => this.subscriber.status === "ready" ? this.ping() : Effect.succeed(true)).pipe(
          Effect.flatMap((answered) =>
            Effect.sync(() => {
              if (!answered && this.subscriber.status === "ready") this.drop()
            })
          )
        )
      )
    ).pipe(Effect.withClock(this.live))
  }

  /** One more subscriber of `namespace`; the first subscribes its channel. Settles when it is in place. */
  acquire(namespace: string): Promise<void> {
    if (namespace.length === 0) return settled
    const held = this.namespaces.get(namespace)
    if (held !== undefined) {
      held.refs++
      return held.ready
    }
    this.changes++
    const watched: Watched = { refs: 1, ready: settled }
    this.namespaces.set(namespace, watched)
    watched.ready = this.cover(namespace)
    return watched.ready
  }

  /** Subscribes a namespace's channel and turns tracking on, on a healthy bus; sends both before it returns. */
  async cover(namespace: string): Promise<void> {
    if (!this.healthyNow || this.subscriberId === undefined) return // the next establish covers it
    const mine = this.generation
    try {
      await Promise.all([this.subscribeChannels([namespace]), this.trackOn(this.subscriberId)])
    } catch {
      if (mine === this.generation) this.drop()
    }
  }

  /** One subscriber of `namespace` less; the last unsubscribes its channel, and the last of all turns tracking off. */
  release(namespace: string): void {
    const held = this.namespaces.get(namespace)
    if (held === undefined || --held.refs > 0) return
    this.namespaces.delete(namespace)
    this.changes++
    this.unsubscribeChannel(namespace)
    // while unhealthy, the establish to come sets tracking for what is watched then
    if (this.namespaces.size === 0 && this.healthyNow) this.trackOff()
  }

  watch = (namespace: string): Effect.Effect<void, never, Scope.Scope> =>
    Effect.flatMap(
      Effect.acquireRelease(
        Effect.sync(() => this.acquire(namespace)),
        () => Effect.sync(() => this.release(namespace))
      ),
      // waited for outside the acquisition: interruptible, and released if interrupted
      (ready) => Effect.promise(() => ready)
    )

  publish = (namespace: string, payload: string): Effect.Effect<boolean> =>
    Effect.promise(() => this.data.publish(this.channelOf(namespace), payload).then(() => true, () => false))
}

/** The subscriber connection, a duplicate of the data connection, disconnected with the scope. */
const subscriberOf = (data: Redis) =>
  Effect.acquireRelease(
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
    (sub) => Effect.sync(() => sub.disconnect(false))
  )

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
    const subscriber = yield* subscriberOf(data)
    const c = new Connection(data, subscriber, handlers, Math.max(1, Duration.toMillis(options.heartbeat)))
    subscriber.on("ready", c.onReady)
    subscriber.on("close", c.onClose)
    subscriber.on("messageBuffer", c.onMessage)
    data.on("ready", c.onReady)
    data.on("close", c.lost)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        data.off("ready", c.onReady)
        data.off("close", c.lost)
        c.generation++ // abandons an establish in progress, before the subscriber disconnects
      })
    )
    yield* Effect.forkScoped(c.heartbeat())
    yield* Effect.acquireRelease(Effect.sync(() => c.pollWatch()), (stop) => Effect.sync(stop))
    yield* Effect.sync(() => {
      subscriber.connect().catch(() => {})
    })
    return { healthy: c.healthy, watch: c.watch, publish: c.publish }
  })
