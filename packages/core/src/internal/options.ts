/**
 * The options of `CacheAside.make`, validated and decoded once: every duration finite and within
 * what Redis accepts as `PX`, every name free of `:`, control characters and lone surrogates, every number in its
 * range. A value that cannot make a working cache is a message for `InvalidOptions`, never a defect
 * and never a silently disabled cache.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { LookupTimeouts, Options } from "../CacheAside.js"
import * as Codec from "../Codec.js"
import type { DataSource, LoadMany } from "../DataSource.js"
import * as integrity from "./integrity.js"
import * as keys from "./keys.js"
import * as nearCache from "./nearCache.js"
import * as validate from "./validate.js"

/** @internal */
export type Ttl<A> =
  | { readonly _tag: "Static"; readonly millis: number }
  | { readonly _tag: "Dynamic"; readonly of: (value: A) => Duration.DurationInput }

/**
 * The decoded options: durations in milliseconds (or `Duration`s where an Effect API takes one).
 *
 * @internal
 */
export interface Config<K, A, E, R> {
  readonly namespace: string
  readonly prefix: string
  readonly version: string
  readonly key: (key: K) => string
  /** The value's codec (its schema, the JSON envelope, compression). */
  readonly codec: Codec.Codec<A>
  readonly load: (key: K) => Effect.Effect<Option.Option<A>, E, R>
  readonly loadMany: LoadMany<K, A, E, R> | undefined
  readonly ttl: Ttl<A>
  readonly negativeTtlMillis: number
  readonly jitter: number
  readonly compressAbove: number | false | undefined
  readonly leaseTtl: Duration.Duration
  /** The lock (on by default): wait for another process's fill, at most `waitMillis`. */
  readonly lock: { readonly waitMillis: number; readonly pollMillis: number } | undefined
  readonly swrMillis: number
  readonly beta: number
  readonly failSafe: { readonly maxStaleMillis: number; readonly throttleMillis: number } | undefined
  readonly softTimeout: Duration.Duration | undefined
  readonly hardTimeout: Duration.Duration | undefined
  readonly storeTimeout: Duration.Duration | undefined
  readonly decodeCache: { readonly entries: number; readonly bytes: number }
  readonly spanEveryGet: boolean
  /** How a key is shown in logs, spans and errors: a short hash unless `logKeys`. */
  readonly keyLabel: (key: string) => string
  /** How long an entry is kept past its logical expiry: for stale-while-revalidate and fail-safe. */
  readonly keepMillis: number
  /** How many lookups of one `getMany` run at once when the source has no `loadMany`. */
  readonly batchConcurrency: number
  /** The near cache (L1): bounds and ttl; `undefined` when off. */
  readonly nearCache: nearCache.Resolved | undefined
  /** Most lookups of this cache running at once. */
  readonly lookupConcurrency: number
  /** Signs written entries and verifies read ones (the `signingKey` option); `undefined` when off. */
  readonly integrity: integrity.Integrity | undefined
  /** Keys of the options that are no option and misspell none (logged by `make`, not refused). */
  readonly unknownOptions: ReadonlyArray<string>
}

// eslint-disable-next-line no-control-regex
const badName = /[:\u0000-\u001f\u007f]/

/**
 * A lone surrogate (ill-formed UTF-16): Redis keeps keys as UTF-8 bytes, where every lone
 * surrogate becomes U+FFFD's, so "a\uD800" and "a\uFFFD" would name the same keys. (With the `u`
 * flag, a surrogate pair is one code point: only unpaired halves match.)
 */
const loneSurrogate = /\p{Cs}/u

const name = (what: string, value: unknown): Either.Either<string, string> =>
  typeof value === "string" && value.length > 0 && !badName.test(value) && !loneSurrogate.test(value)
    ? Either.right(value)
    : Either.left(
      `${what} must be non-empty well-formed text, without ":" or control characters, got ${JSON.stringify(value)}`
    )

const isDataSource = <K, A, E, R>(
  lookup: ((key: K) => Effect.Effect<Option.Option<A>, E, R>) | DataSource<K, A, E, R>
): lookup is DataSource<K, A, E, R> => typeof lookup === "object" && lookup !== null && "load" in lookup

const durationMillis = (what: string, input: unknown, min = 0) =>
  Either.map(validate.duration(what, input, { min }), Duration.toMillis)

const optionalMillis = (what: string, input: unknown, min = 0) =>
  input === undefined ? Either.right(undefined) : durationMillis(what, input, min)

const optionalDuration = (what: string, input: unknown, min = 0) =>
  input === undefined ? Either.right(undefined) : validate.duration(what, input, { min })

type AnyOptions = Options<never, never, never, never, never>
type Names<T> = { readonly [P in keyof Required<T>]: true }
type Fields<T> = Exclude<T, boolean | undefined>

/** Every option of `CacheAside.make`, and of its object-valued options: anything else is a typo. */
const optionNames: Names<AnyOptions> = {
  namespace: true,
  key: true,
  schema: true,
  lookup: true,
  ttl: true,
  negativeTtl: true,
  jitter: true,
  version: true,
  prefix: true,
  compressAbove: true,
  maxEntryBytes: true,
  leaseTtl: true,
  lock: true,
  staleWhileRevalidate: true,
  earlyExpiration: true,
  failSafe: true,
  lookupTimeout: true,
  spanEveryGet: true,
  logKeys: true,
  storeTimeout: true,
  decodeCacheSize: true,
  decodeCacheBytes: true,
  getManyConcurrency: true,
  nearCache: true,
  lookupConcurrency: true,
  signingKey: true,
  previousSigningKeys: true
}
const lockNames: Names<Fields<AnyOptions["lock"]>> = { wait: true, poll: true }
const earlyNames: Names<Fields<AnyOptions["earlyExpiration"]>> = { beta: true }
const failSafeNames: Names<Fields<AnyOptions["failSafe"]>> = { maxStale: true, throttle: true }
const lookupTimeoutNames: Names<LookupTimeouts> = { soft: true, hard: true }
const nearCacheNames: Names<Fields<AnyOptions["nearCache"]>> = { maxEntries: true, maxBytes: true, ttl: true }

/** An object-valued option as an object, or `undefined` (its own check reports what else it is). */
const fieldsOf = (input: unknown): object | undefined =>
  typeof input === "object" && input !== null && !Array.isArray(input) ? input : undefined

/**
 * The options' own keys (and their object-valued options' keys) that are no option: a misspelled
 * one is the message; the others are answered.
 */
const unknownIn = (
  options: Pick<AnyOptions, "lock" | "earlyExpiration" | "failSafe" | "lookupTimeout" | "nearCache">
) =>
  Either.gen(function*() {
    const parts = [
      yield* validate.known(undefined, options, optionNames),
      yield* validate.known("lock", fieldsOf(options.lock), lockNames),
      yield* validate.known("earlyExpiration", fieldsOf(options.earlyExpiration), earlyNames),
      yield* validate.known("failSafe", fieldsOf(options.failSafe), failSafeNames),
      yield* validate.known("lookupTimeout", fieldsOf(options.lookupTimeout), lookupTimeoutNames),
      yield* validate.known("nearCache", fieldsOf(options.nearCache), nearCacheNames)
    ]
    return parts.flat()
  })

/** The default decode memo budget in bytes of stored entries (keys included). */
const defaultDecodeCacheBytes = 16 * 1024 * 1024

/** `lock`: off (`false`), or its wait and poll in milliseconds (the default poll never exceeds the wait). */
const lockOf = (input: Options<never, never, never, never, never>["lock"]) =>
  Either.gen(function*() {
    if (input === false) return undefined
    const lock = input === true ? {} : (yield* validate.record("lock", input)) ?? {}
    const waitMillis = yield* durationMillis("lock.wait", lock.wait ?? "5 seconds")
    const pollMillis = yield* durationMillis("lock.poll", lock.poll ?? Math.max(1, Math.min(20, waitMillis)), 1)
    if (pollMillis > Math.max(waitMillis, 1)) return yield* Either.left(`lock.poll must not be longer than lock.wait`)
    return { waitMillis, pollMillis }
  })

/** `earlyExpiration`: XFetch's beta, 0 when off. */
const betaOf = (input: Options<never, never, never, never, never>["earlyExpiration"]) =>
  Either.gen(function*() {
    const early = typeof input === "boolean" ? input : yield* validate.record("earlyExpiration", input)
    const beta = early === true ? 1 : early === false || early === undefined ? 0 : early.beta ?? 1
    return yield* validate.fraction("earlyExpiration.beta", beta, 0, Number.MAX_VALUE)
  })

/** `lookup`: a function, or a `DataSource` whose `loadMany` (if any) is a function. */
const sourceOf = <K, A, E, R>(
  lookup: Options<K, A, unknown, E, R>["lookup"]
): Either.Either<
  { readonly load: Config<K, A, E, R>["load"]; readonly loadMany: LoadMany<K, A, E, R> | undefined },
  string
> => {
  const source = isDataSource(lookup) ? lookup : { load: lookup, loadMany: undefined }
  if (typeof source.load !== "function") return Either.left("lookup must be a function or a DataSource")
  if (source.loadMany !== undefined && source.loadMany !== null && typeof source.loadMany !== "function") {
    return Either.left("the DataSource's loadMany must be a function")
  }
  return Either.right({ load: source.load, loadMany: source.loadMany ?? undefined })
}

/** `signingKey` and `previousSigningKeys`: the entries' signer, or `undefined` when unsigned. */
const signingOf = (options: Pick<Options<never, never, never, never, never>, "signingKey" | "previousSigningKeys">) =>
  Either.gen(function*() {
    const signing = options.signingKey === undefined
      ? undefined
      : yield* integrity.validateKeys("signingKey", [options.signingKey])
    const previous = options.previousSigningKeys === undefined
      ? []
      : Array.isArray(options.previousSigningKeys)
      ? yield* integrity.validateKeys("previousSigningKeys", options.previousSigningKeys)
      : yield* Either.left("previousSigningKeys must be an array")
    if (signing === undefined && previous.length > 0) {
      return yield* Either.left("previousSigningKeys needs a signingKey")
    }
    return signing === undefined ? undefined : integrity.make(signing[0]!, previous)
  })

/**
 * Validates and decodes the options; the first invalid one is the message.
 *
 * @internal
 */
export const decode = <K, A, I, E, R>(
  options: Options<K, A, I, E, R>
): Either.Either<Config<K, A, E, R>, string> =>
  Either.gen(function*() {
    yield* validate.record("options", options)
    const unknownOptions = yield* unknownIn(options)
    const namespace = yield* name("namespace", options.namespace)
    const prefix = yield* name("prefix", options.prefix ?? "cache")
    const version = yield* name("version", options.version ?? "1")
    if (typeof options.key !== "function") return yield* Either.left("key must be a function")
    if (!Schema.isSchema(options.schema)) return yield* Either.left("schema must be a Schema (from effect/Schema)")
    const ttl: Ttl<A> = typeof options.ttl === "function"
      ? { _tag: "Dynamic", of: options.ttl }
      : { _tag: "Static", millis: yield* durationMillis("ttl", options.ttl, 1) }
    const negativeTtlMillis = options.negativeTtl !== undefined
      ? yield* durationMillis("negativeTtl", options.negativeTtl)
      : Math.min(ttl._tag === "Static" ? ttl.millis : 60_000, 60_000)
    const jitter = yield* validate.fraction("jitter", options.jitter ?? 0.1, 0, 1)
    const compressAbove = options.compressAbove === undefined || options.compressAbove === false
      ? options.compressAbove
      : yield* validate.integer("compressAbove", options.compressAbove, 0)
    const { maxEntryBytes } = yield* Codec.validateOptions({ maxEntryBytes: options.maxEntryBytes })
    const leaseTtl = yield* validate.duration("leaseTtl", options.leaseTtl ?? "10 seconds", { min: 1 })
    const lock = yield* lockOf(options.lock)
    const swrMillis = (yield* optionalMillis("staleWhileRevalidate", options.staleWhileRevalidate)) ?? 0
    const beta = yield* betaOf(options.earlyExpiration)
    const failSafeOptions = yield* validate.record("failSafe", options.failSafe)
    const failSafe = failSafeOptions === undefined ? undefined : {
      maxStaleMillis: yield* durationMillis("failSafe.maxStale", failSafeOptions.maxStale),
      throttleMillis: yield* durationMillis("failSafe.throttle", failSafeOptions.throttle ?? "10 seconds", 1)
    }
    const lookupTimeout = yield* validate.record("lookupTimeout", options.lookupTimeout)
    const softTimeout = yield* optionalDuration("lookupTimeout.soft", lookupTimeout?.soft, 1)
    const hardTimeout = yield* optionalDuration("lookupTimeout.hard", lookupTimeout?.hard, 1)
    if (softTimeout !== undefined && hardTimeout !== undefined && !Duration.lessThan(softTimeout, hardTimeout)) {
      // the hard timeout would always fire first: the soft one (serve stale, keep loading) never would
      return yield* Either.left("lookupTimeout.soft must be shorter than lookupTimeout.hard")
    }
    const storeTimeout = yield* optionalDuration("storeTimeout", options.storeTimeout, 1)
    const entries = yield* validate.integer("decodeCacheSize", options.decodeCacheSize ?? 1000, 0)
    const bytes = yield* validate.integer("decodeCacheBytes", options.decodeCacheBytes ?? defaultDecodeCacheBytes, 0)
    const batchConcurrency = yield* validate.integer("getManyConcurrency", options.getManyConcurrency ?? 16, 1)
    const nearOptions = options.nearCache === undefined || options.nearCache === false
      ? undefined
      : yield* validate.record("nearCache", options.nearCache)
    const near = nearOptions === undefined ? undefined : yield* nearCache.resolve(nearOptions)
    const lookupConcurrency = yield* validate.integer("lookupConcurrency", options.lookupConcurrency ?? 64, 1)
    const source = yield* sourceOf(options.lookup)
    const signing = yield* signingOf(options)
    const keepMillis = Math.max(swrMillis, failSafe?.maxStaleMillis ?? 0)
    if (ttl._tag === "Static" && ttl.millis + keepMillis > validate.maxTtlMillis) {
      return yield* Either.left("ttl plus the stale windows (staleWhileRevalidate, failSafe.maxStale) is too long")
    }
    return {
      namespace,
      prefix,
      version,
      key: options.key,
      codec: Codec.make(options.schema, { compressAbove, maxEntryBytes }),
      load: source.load,
      loadMany: source.loadMany,
      ttl,
      negativeTtlMillis,
      jitter,
      compressAbove,
      leaseTtl,
      lock,
      swrMillis,
      beta,
      failSafe,
      softTimeout,
      hardTimeout,
      storeTimeout,
      decodeCache: { entries, bytes },
      spanEveryGet: options.spanEveryGet === true,
      keyLabel: keys.labeller(options.logKeys === true),
      keepMillis,
      batchConcurrency,
      nearCache: near,
      lookupConcurrency,
      integrity: signing,
      unknownOptions
    } satisfies Config<K, A, E, R>
  })
