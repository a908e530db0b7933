/**
 * The coherence port of the near cache (L1): how one process tells the others that keys changed,
 * and how it learns that its own copies may be stale.
 *
 * - `publish` sends an invalidation for one namespace, stamped with this instance's id, so that a
 *   process skips its own messages; this instance's own subscribers of the namespace (other caches
 *   of the process: another version, another handle) get it synchronously, before `publish` returns.
 * - `subscribe` registers a near cache for a namespace: it is told which keys to evict, and to
 *   `flush` everything when the bus loses (or regains) its connection, since invalidations may
 *   have been missed meanwhile.
 * - `healthy` is read on the hit path: while it is `false` every near cache is bypassed (no L1
 *   answers, no L1 writes), so a lost connection can never serve stale values.
 *
 * Implementations: `memory` / `layerMemory` (this module: one process, or several instances on one
 * in-process hub for tests) and `RedisCacheBus` in `@cache-aside/redis` (Redis pub/sub plus Redis
 * client-side caching, so that a write by any client evicts).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"

/**
 * What a message names. Keys and patterns are full keys (`prefix:namespace:version:key`).
 *
 * - `Keys`: `invalidate` (or writes seen by Redis client-side caching)
 * - `Set`: `set` wrote a new value for the key
 * - `Pattern`: `invalidatePattern` (a Redis glob over full keys)
 * - `All`: `invalidateAll`, or a `FLUSHDB` seen by Redis
 *
 * @since 0.1.0
 */
export const Invalidation = Schema.Union(
  Schema.TaggedStruct("Keys", { keys: Schema.Array(Schema.String) }),
  Schema.TaggedStruct("Set", { key: Schema.String }),
  Schema.TaggedStruct("Pattern", { pattern: Schema.String }),
  Schema.TaggedStruct("All", {})
)

/**
 * @since 0.1.0
 */
export type Invalidation = typeof Invalidation.Type

/**
 * A message on the bus: the sender's instance id, the namespace (its full key prefix,
 * `prefix:namespace:`) and what changed.
 *
 * @since 0.1.0
 */
export const Message = Schema.Struct({
  sender: Schema.String,
  namespace: Schema.String,
  invalidation: Invalidation
})

/**
 * @since 0.1.0
 */
export type Message = typeof Message.Type

const MessageJson = Schema.parseJson(Message)
const decodeMessageJson = Schema.decodeUnknownEither(MessageJson)
const encodeMessageJson = Schema.encodeSync(MessageJson)

/**
 * A message as JSON (what goes on a Redis channel).
 *
 * @example
 * ```ts
 * import { CacheBus } from "@cache-aside/core"
 *
 * const json = CacheBus.encodeMessage({ sender: "a", namespace: "cache:user:", invalidation: { _tag: "All" } })
 * ```
 *
 * @since 0.1.0
 */
export const encodeMessage = (message: Message): string => encodeMessageJson(message)

/**
 * Decodes a message from untrusted text; anything malformed is `undefined` (the caller counts or
 * ignores it, and never formats the offending text).
 *
 * @example
 * ```ts
 * import { CacheBus } from "@cache-aside/core"
 *
 * CacheBus.decodeMessage("not json") // undefined
 * ```
 *
 * @since 0.1.0
 */
export const decodeMessage = (text: string): Message | undefined => {
  const decoded = decodeMessageJson(text)
  return Either.isRight(decoded) ? decoded.right : undefined
}

/**
 * A near cache's side of a subscription. Both callbacks are synchronous and must not throw.
 *
 * @since 0.1.0
 */
export interface Subscriber {
  /** Another instance (or another Redis client) changed what `invalidation` names. */
  readonly evict: (invalidation: Invalidation) => void
  /**
   * The bus lost its connection, or got it back: invalidations may have been missed, so every
   * entry may be stale. Called on both transitions.
   */
  readonly flush: () => void
}

/**
 * The port.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheBus } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const bus = yield* CacheBus.CacheBus
 *   yield* bus.subscribe("cache:user:", { evict: (i) => console.log(i._tag), flush: () => {} })
 *   yield* bus.publish("cache:user:", { _tag: "Keys", keys: ["cache:user:1:42"] })
 * }).pipe(Effect.scoped, Effect.provide(CacheBus.layerMemory))
 * ```
 *
 * @since 0.1.0
 */
export class CacheBus extends Context.Tag("@cache-aside/core/CacheBus")<CacheBus, {
  /** This instance's id: messages it sent come back with it and are skipped. */
  readonly instanceId: string
  /** `true` while invalidations are known to arrive. Synchronous: it is read on the hit path. */
  readonly healthy: () => boolean
  /**
   * Tells this instance's subscribers of `namespace` (a full key prefix, `prefix:namespace:`),
   * synchronously, and the other instances that `invalidation` happened. Never fails: a message
   * that cannot be sent is logged (the other instances lost the same connection, and flushed).
   */
  readonly publish: (namespace: string, invalidation: Invalidation) => Effect.Effect<void>
  /**
   * Registers `subscriber` for `namespace` for the scope's lifetime (on Redis: the namespace's
   * channel, counted per namespace and unsubscribed when its last subscriber is released).
   */
  readonly subscribe: (namespace: string, subscriber: Subscriber) => Effect.Effect<void, never, Scope.Scope>
}>() {}

/**
 * Subscribers by namespace, with the fan-out every implementation needs. Not a service: a helper
 * for implementations of the port.
 *
 * @example
 * ```ts
 * import { CacheBus } from "@cache-aside/core"
 *
 * const registry = new CacheBus.Registry()
 * registry.flushAll()
 * ```
 *
 * @since 0.1.0
 */
export class Registry {
  private readonly byNamespace = new Map<string, Set<Subscriber>>()

  /**
   * Adds a subscriber; the returned function removes it.
   *
   * @since 0.1.0
   */
  add(namespace: string, subscriber: Subscriber): () => void {
    let set = this.byNamespace.get(namespace)
    if (set === undefined) {
      set = new Set()
      this.byNamespace.set(namespace, set)
    }
    set.add(subscriber)
    return () => {
      const current = this.byNamespace.get(namespace)
      if (current === undefined) return
      current.delete(subscriber)
      if (current.size === 0) this.byNamespace.delete(namespace)
    }
  }

  /**
   * The namespaces with at least one subscriber.
   *
   * @since 0.1.0
   */
  namespaces(): ReadonlyArray<string> {
    return Array.from(this.byNamespace.keys())
  }

  /**
   * Delivers an invalidation to the subscribers of one namespace.
   *
   * @since 0.1.0
   */
  deliver(namespace: string, invalidation: Invalidation): void {
    const set = this.byNamespace.get(namespace)
    if (set === undefined) return
    for (const subscriber of set) subscriber.evict(invalidation)
  }

  /**
   * Delivers eviction of full keys to the namespaces whose prefix they start with.
   *
   * @since 0.1.0
   */
  deliverKeys(keys: ReadonlyArray<string>): void {
    for (const [namespace, set] of this.byNamespace) {
      const matching = keys.filter((key) => key.startsWith(namespace))
      if (matching.length === 0) continue
      for (const subscriber of set) subscriber.evict({ _tag: "Keys", keys: matching })
    }
  }

  /**
   * Flushes every subscriber of every namespace.
   *
   * @since 0.1.0
   */
  flushAll(): void {
    for (const set of this.byNamespace.values()) {
      for (const subscriber of set) subscriber.flush()
    }
  }
}

/**
 * An in-process hub of memory buses: every instance made by `instance` sees the messages of the
 * others (not its own), and `setHealthy(false)` simulates a lost connection (every instance's
 * subscribers are flushed and `healthy()` is `false` until `setHealthy(true)`).
 *
 * @since 0.1.0
 */
export interface MemoryHub {
  readonly instance: () => CacheBus["Type"]
  readonly setHealthy: (healthy: boolean) => void
  /** Messages published so far (by all instances). */
  readonly published: () => number
}

/**
 * Makes an in-process hub (see `MemoryHub`).
 *
 * @example
 * ```ts
 * import { CacheBus } from "@cache-aside/core"
 *
 * const hub = CacheBus.makeMemoryHub()
 * const a = hub.instance()
 * const b = hub.instance()
 * ```
 *
 * @since 0.1.0
 */
export const makeMemoryHub = (): MemoryHub => {
  const registries = new Map<string, Registry>()
  let healthy = true
  let published = 0
  const instance = (): CacheBus["Type"] => {
    const instanceId = randomUUID()
    const registry = new Registry()
    registries.set(instanceId, registry)
    return CacheBus.of({
      instanceId,
      healthy: () => healthy,
      publish: (namespace, invalidation) =>
        Effect.sync(() => {
          registry.deliver(namespace, invalidation)
          if (!healthy) return
          published++
          for (const [id, other] of registries) {
            if (id !== instanceId) other.deliver(namespace, invalidation)
          }
        }),
      subscribe: (namespace, subscriber) =>
        Effect.asVoid(Effect.acquireRelease(
          Effect.sync(() => registry.add(namespace, subscriber)),
          (remove) => Effect.sync(remove)
        ))
    })
  }
  const setHealthy = (next: boolean) => {
    if (next === healthy) return
    healthy = next
    for (const registry of registries.values()) registry.flushAll()
  }
  return { instance, setHealthy, published: () => published }
}

/**
 * A bus for one process: always healthy, no other instance to tell. Near caches of one process
 * are coherent with each other through the read path itself (it evicts before a write returns).
 *
 * @example
 * ```ts
 * import { CacheBus } from "@cache-aside/core"
 *
 * const bus = CacheBus.memory()
 * ```
 *
 * @since 0.1.0
 */
export const memory = (): CacheBus["Type"] => makeMemoryHub().instance()

/**
 * The single-process memory bus as a layer.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { CacheBus, MemoryCacheStore } from "@cache-aside/core"
 *
 * const Live = Layer.merge(MemoryCacheStore.layer(), CacheBus.layerMemory)
 * ```
 *
 * @since 0.1.0
 */
export const layerMemory: Layer.Layer<CacheBus> = Layer.sync(CacheBus, memory)
