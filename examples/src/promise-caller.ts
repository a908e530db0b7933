/**
 * Cache-aside from code that is not written with Effect (an HTTP handler, a job): the cache is
 * built once on a `ManagedRuntime`, and plain async functions call it through `PromiseCache`.
 *
 *   pnpm --filter @cache-aside/examples promise-caller                 # the in-memory store
 *   REDIS_URL=redis://127.0.0.1:6379 pnpm --filter @cache-aside/examples promise-caller
 */
import { CacheAside, CacheStore, MemoryCacheStore, Metrics, PromiseCache } from "@cache-aside/core"
import { RedisCacheBus } from "@cache-aside/redis"
import { Effect, Exit, Layer, ManagedRuntime, Option, Redacted, Schema, Scope } from "effect"

/** What the service stores and serves. */
const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
type User = typeof User.Type

/** The "database", written as a non-Effect codebase would: a Promise-returning query, counted. */
let queries = 0
const rows = new Map<number, User>([[42, { id: 42, name: "Ada Lovelace" }], [7, { id: 7, name: "Alan Turing" }]])
const findUser = async (id: number): Promise<User | undefined> => {
  queries++
  await new Promise((resolve) => setTimeout(resolve, 20))
  return rows.get(id)
}

const given = process.env["REDIS_URL"]
const url = given === undefined || given === "" ? undefined : given
const StoreLive: Layer.Layer<CacheStore.CacheStore, CacheStore.InvalidStoreOptions> = url === undefined
  ? MemoryCacheStore.layer().pipe(Layer.provideMerge(Metrics.layer))
  : RedisCacheBus.layer({ url: Redacted.make(url) }).pipe(Layer.provideMerge(Metrics.layer))

const main = async () => {
  // once, at startup: the runtime (store, metrics) and a scope for the cache's background work
  const runtime = ManagedRuntime.make(StoreLive)
  const scope = await runtime.runPromise(Scope.make())
  const users = PromiseCache.make(
    await runtime.runPromise(Scope.extend(
      CacheAside.make({
        namespace: "promise-demo-user",
        key: (id: number) => String(id),
        schema: User,
        lookup: (id: number) => Effect.map(Effect.promise(() => findUser(id)), Option.fromNullable),
        ttl: "1 hour",
        nearCache: { maxEntries: 10_000, ttl: "1 minute" }
      }),
      scope
    )),
    await runtime.runtime()
  )
  console.log(`store: ${url === undefined ? "in-memory (set REDIS_URL to use Redis)" : "Redis from REDIS_URL"}`)
  await users.invalidateAll()

  // a request handler, as plain async code
  const handleGetUser = async (id: number): Promise<string> => {
    const user = await users.get(id)
    return Option.match(user, { onNone: () => "404 not found", onSome: (u) => `200 ${u.name}` })
  }

  console.log(`GET /users/42 -> ${await handleGetUser(42)} (a miss: ${queries} query)`)
  console.log(`GET /users/42 -> ${await handleGetUser(42)} (a hit: ${queries} query in all)`)
  const burst = await Promise.all(Array.from({ length: 1000 }, () => handleGetUser(7)))
  console.log(`1,000 concurrent GET /users/7 -> ${new Set(burst).size} distinct answer, ${queries - 1} query for them`)
  rows.set(42, { id: 42, name: "Ada King" })
  await users.invalidate(42) // after the write
  console.log(`GET /users/42 -> ${await handleGetUser(42)} (after the write and invalidate)`)
  console.log(`GET /users/404 -> ${await handleGetUser(404)}`)
  console.log(`database queries in all: ${queries}`)

  // once, at shutdown
  await runtime.runPromise(Scope.close(scope, Exit.void))
  await runtime.dispose()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
