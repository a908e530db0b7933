/**
 * An application's cache as a service: one definition declares the tag (a class, like
 * `Effect.Service`) and the layer that builds the cache once, with the key, value and error types
 * inferred from the options (`LookupTimeout` included when a hard `lookupTimeout` is set). A cache
 * is built once, in a layer, never per request: its single-flight map, its background refreshes
 * and its metrics live as long as the layer.
 *
 * `resolver` exposes a cache as an Effect `RequestResolver`, so that code written with
 * `Effect.request` gets batched cache reads (one `getMany` per batch).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Request from "effect/Request"
import * as RequestResolver from "effect/RequestResolver"
import type * as Scope from "effect/Scope"
import * as CacheAside from "./CacheAside.js"

/**
 * What `CacheAside.make` needs besides the lookup's own requirements (the store, and whatever the
 * read path asks for), without `Scope`: the layer owns the cache's scope.
 *
 * @since 0.1.0
 */
export type Requirements = Exclude<
  Effect.Effect.Context<ReturnType<typeof CacheAside.make<unknown, unknown, unknown, never, never>>>,
  Scope.Scope
>

/**
 * The class a cache definition produces: a tag for `CacheAside<K, A, E>` with the layer that makes it.
 *
 * @since 0.1.0
 */
export interface CacheServiceClass<Self, Id extends string, K, A, E, LE, LR>
  extends Context.TagClass<Self, Id, CacheAside.CacheAside<K, A, E>>
{
  /** Makes the cache once, for the lifetime of the layer (`CacheAside.make` within the layer's scope). */
  readonly layer: Layer.Layer<Self, LE, LR>
}

/**
 * Options, or an Effect that makes them (to read a `DataSource` or `Config` from the context).
 *
 * @since 0.1.0
 */
export type Definition<O, OE, OR> = O | Effect.Effect<O, OE, OR>

/**
 * The second step of `Tag`: give it the options of `CacheAside.make`, or an Effect that makes them.
 *
 * @since 0.1.0
 */
export interface Maker<Self, Id extends string> {
  <
    K,
    A,
    I,
    E = never,
    R = never,
    T extends CacheAside.LookupTimeouts | undefined = undefined,
    OE = never,
    OR = never
  >(
    definition: Definition<CacheAside.Options<K, A, I, E, R, T>, OE, OR>
  ): CacheServiceClass<
    Self,
    Id,
    K,
    A,
    CacheAside.ErrorOf<E, T>,
    CacheAside.InvalidOptions | OE,
    Requirements | Exclude<R | OR, Scope.Scope>
  >
}

/**
 * Declares an application's cache as a tagged service with its layer, in one definition.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheService, MemoryCacheStore, Metrics } from "@cache-aside/core"
 *
 * class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
 *
 * class UserCache extends CacheService.Tag("app/UserCache")<UserCache>()({
 *   namespace: "user",
 *   key: (id: number) => String(id),
 *   schema: User,
 *   lookup: (id: number) => Effect.succeed(Option.some(new User({ id, name: "Ada" }))),
 *   ttl: "1 hour"
 * }) {}
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* UserCache // CacheAside<number, User, never>
 *   return yield* users.get(42)
 * }).pipe(
 *   Effect.provide(UserCache.layer),
 *   Effect.provide(MemoryCacheStore.layer()),
 *   Effect.provide(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const Tag = <const Id extends string>(id: Id) => <Self>(): Maker<Self, Id> =>
  ((definition: Definition<CacheAside.Options<unknown, unknown, unknown, unknown, unknown>, unknown, unknown>) => {
    const TagClass = Context.Tag(id)<Self, CacheAside.CacheAside<unknown, unknown, unknown>>()
    const options = Effect.isEffect(definition) ? definition : Effect.succeed(definition)
    return Object.assign(TagClass, {
      layer: Layer.scoped(TagClass, Effect.flatMap(options, (options) => CacheAside.make(options)))
    })
  }) as unknown as Maker<Self, Id>

/**
 * A read of one key through a cache, as an Effect `Request`.
 *
 * @since 0.1.0
 */
export interface Get<K, A, E> extends Request.Request<Option.Option<A>, E> {
  readonly _tag: "@cache-aside/core/CacheService/Get"
  readonly key: K
}

/**
 * A cache as an Effect `RequestResolver`: the `Get` requests of one batch are answered by one
 * `getMany` (one store round-trip for the hits, one batch lookup for the misses when the data
 * source has `loadMany`). If that `getMany` fails, every request of the batch fails with its error.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheAside, CacheService } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: Schema.String,
 *     lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *     ttl: "1 hour"
 *   })
 *   const { get } = CacheService.resolver(users)
 *   // both gets are one request batch: one getMany
 *   return yield* Effect.all([get(1), get(2)], { batching: true })
 * })
 * ```
 *
 * @since 0.1.0
 */
export const resolver = <K, A, E>(cache: CacheAside.CacheAside<K, A, E>): {
  readonly resolver: RequestResolver.RequestResolver<Get<K, A, E>>
  readonly request: (key: K) => Get<K, A, E>
  readonly get: (key: K) => Effect.Effect<Option.Option<A>, E>
} => {
  const make = Request.tagged<Get<K, A, E>>("@cache-aside/core/CacheService/Get")
  const resolver = RequestResolver.makeBatched((requests: ReadonlyArray<Get<K, A, E>>) =>
    cache.getMany(requests.map((request) => request.key)).pipe(
      Effect.matchEffect({
        onFailure: (error) => Effect.forEach(requests, (request) => Request.fail(request, error), { discard: true }),
        onSuccess: (values) =>
          Effect.forEach(requests, (request, i) => Request.succeed(request, values[i]!), { discard: true })
      })
    )
  )
  const request = (key: K) => make({ key })
  return { resolver, request, get: (key) => Effect.request(request(key), resolver) }
}
