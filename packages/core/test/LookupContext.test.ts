import { describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

class Database extends Context.Tag("test/Database")<Database, { readonly name: string }>() {}

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

describe("the lookup's requirements", () => {
  it.scoped("are captured by make: gets need nothing, and the captured services win over the caller's", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        namespace: "ctx",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) => Effect.map(Database, (db) => Option.some(`${db.name}:${id}`)),
        ttl: "1 minute"
      }).pipe(Effect.provideService(Database, { name: "captured" }))
      // a caller without the Database (the handle's get needs nothing)
      assertSome(yield* cache.get(1), "captured:1")
      // a caller with another Database: the captured one is used
      assertSome(yield* cache.get(2).pipe(Effect.provideService(Database, { name: "caller" })), "captured:2")
      // a caller with the very same services: nothing to provide, same answer
      const same = yield* cache.get(3).pipe(Effect.provideService(Database, { name: "captured" }))
      assertSome(same, "captured:3")
    }).pipe(Effect.provide(Services)))
})
