import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

/** A lookup that records the span it runs in (if any). */
const setup = Effect.gen(function*() {
  const seen: Array<string | undefined> = []
  const cache = yield* CacheAside.make({
    namespace: "traced",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup: (id: number) =>
      Effect.map(Effect.option(Effect.currentSpan), (span) => {
        seen.push(Option.getOrUndefined(Option.map(span, (s) => s.name)))
        return Option.some(`v${id}`)
      }),
    ttl: "1 minute"
  })
  return { cache, seen }
})

/** What a lookup sees of the span it runs in. */
interface SeenSpan {
  readonly name: string
  readonly kind: string
  readonly attributes: Record<string, unknown>
}

const spanOf = Effect.map(Effect.option(Effect.currentSpan), (span) =>
  Option.map(span, (s): SeenSpan => ({
    name: s.name,
    kind: s.kind,
    attributes: Object.fromEntries(s.attributes)
  })))

describe("tracing", () => {
  it.scoped("the load span is a client span named by namespace and key label (load) or key count (loadMany)", () =>
    Effect.gen(function*() {
      const seen: Array<Option.Option<SeenSpan>> = []
      const cache = yield* CacheAside.make({
        namespace: "spans",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: {
          load: (id: number) => Effect.map(spanOf, (span) => (seen.push(span), Option.some(`v${id}`))),
          loadMany: (ids: ReadonlyArray<number>) =>
            Effect.map(spanOf, (span) => (seen.push(span), ids.map((id) => [id, Option.some(`v${id}`)] as const)))
        },
        ttl: "1 minute"
      })
      yield* cache.get(1).pipe(Effect.withSpan("request"))
      yield* cache.getMany([2, 3]).pipe(Effect.withSpan("request"))
      const [one, many] = seen
      assert.isTrue(one !== undefined && Option.isSome(one) && many !== undefined && Option.isSome(many))
      if (one === undefined || Option.isNone(one) || many === undefined || Option.isNone(many)) return
      assert.strictEqual(one.value.name, "cache_aside.load")
      assert.strictEqual(one.value.kind, "client")
      // the key is a secret: a short hash unless logKeys (no stack trace attribute either)
      deepStrictEqual(Object.keys(one.value.attributes).sort(), ["key", "namespace"])
      assert.strictEqual(one.value.attributes["namespace"], "spans")
      assert.match(String(one.value.attributes["key"]), /^#[0-9a-f]{12}$/)
      assert.strictEqual(many.value.name, "cache_aside.load")
      assert.strictEqual(many.value.kind, "client")
      deepStrictEqual(many.value.attributes, { namespace: "spans", keys: 2 })
    }).pipe(Effect.provide(Services)))

  it.scoped("a traced caller gets a cache_aside.load span around the lookup; an untraced one pays for none", () =>
    Effect.gen(function*() {
      const { cache, seen } = yield* setup
      yield* cache.get(1)
      yield* cache.get(2).pipe(Effect.withSpan("request"))
      deepStrictEqual(seen, [undefined, "cache_aside.load"])
    }).pipe(Effect.provide(Services)))
})
