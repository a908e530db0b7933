/**
 * An outside application, written against the published packages only: a user table behind a
 * data source service, the user cache declared as a service, and the write path (update the row,
 * then invalidate). `Users.layerForgetful` is the same write path with a planted bug: it forgets
 * to invalidate.
 */
import { CacheService, DataSource } from "@cache-aside/core"
import { Database, type Property } from "@cache-aside/core/testing"
import { Context, Effect, FastCheck, Layer, Schema } from "effect"

export class User extends Schema.Class<User>("User")({ name: Schema.String }) {}

export class DbError extends Schema.TaggedError<DbError>()("DbError", {}) {}

/** The user table as the cache reads it: swapped by Layer in tests. */
export class UserSource extends DataSource.Tag("consumer/UserSource")<UserSource, number, User, DbError>() {}

/** The user table as the write path updates it. */
export class UserTable extends Context.Tag("consumer/UserTable")<UserTable, {
  readonly update: (id: number, user: User) => Effect.Effect<void, DbError>
}>() {}

/** The cache, declared once as a service: key, value and error types inferred. */
export class UserCache extends CacheService.Tag("consumer/UserCache")<UserCache>()(
  Effect.map(UserSource, (lookup) => ({
    namespace: "user",
    key: (id: number) => String(id),
    schema: User,
    lookup,
    ttl: "1 hour"
  }))
) {}

/** The application's user service: reads through the cache, writes the table then invalidates. */
export class Users extends Context.Tag("consumer/Users")<Users, {
  readonly get: (id: number) => Effect.Effect<import("effect").Option.Option<User>, DbError>
  readonly rename: (id: number, name: string) => Effect.Effect<void, unknown>
}>() {
  static make = (invalidates: boolean) =>
    Layer.effect(
      Users,
      Effect.gen(function*() {
        const cache = yield* UserCache
        const table = yield* UserTable
        return {
          get: cache.get,
          rename: (id, name) =>
            Effect.zipRight(table.update(id, new User({ name })), invalidates ? cache.invalidate(id) : Effect.void)
        }
      })
    )
  static layer = Users.make(true)
  static layerForgetful = Users.make(false)
}

/** The application's layers over the property's test database (one instance of the app per call). */
export const appOver = (users: Layer.Layer<Users, never, UserCache | UserTable>, db: Database.Database<number, User>) =>
  users.pipe(
    Layer.provideMerge(UserCache.layer),
    Layer.provide(Layer.succeed(UserSource, db.sourceFailingWith(() => new DbError()))),
    Layer.provide(Layer.succeed(UserTable, { update: db.write }))
  )

/** The shipped property's options for this application. */
export const propertyOf = (
  users: Layer.Layer<Users, never, UserCache | UserTable>
): Property.Options<number, User, DbError | unknown, never> => ({
  keys: FastCheck.integer({ min: 1, max: 3 }),
  values: FastCheck.constantFrom("Ada", "Grace", "Alan").map((name) => new User({ name })),
  make: (db) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(appOver(users, db))
      const app = Context.get(context, Users)
      return { cache: Context.get(context, UserCache), write: (id: number, user: User) => app.rename(id, user.name) }
    })
})

export { Database }
