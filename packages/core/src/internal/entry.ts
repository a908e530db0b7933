/**
 * Entries: what one read found (classified synchronously, states as constructors), the decode memo,
 * and the making of an entry to write (TTL with jitter, encode, and the decode of the bytes just
 * encoded, so that a miss answers the same shape as a hit).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { CacheUnavailable } from "../CacheStore.js"
import * as Codec from "../Codec.js"
import type { Recorder } from "../Metrics.js"
import { Lru } from "./lru.js"
import type { Config } from "./options.js"
import * as validate from "./validate.js"

/**
 * What one cache read found.
 *
 * @internal
 */
export type Read<A> =
  | { readonly _tag: "Unavailable"; readonly error: CacheUnavailable }
  | { readonly _tag: "Absent" }
  /** Another loader's lease: its bytes (a reader without the lock may fill under it). */
  | { readonly _tag: "Leased"; readonly bytes: Uint8Array }
  /** Written by a newer version of the library: a miss left alone (not evicted, not overwritten). */
  | { readonly _tag: "Newer" }
  /** Bytes that do not decode: taken over (compare-and-set of these very bytes), counted. */
  | { readonly _tag: "Corrupt"; readonly bytes: Uint8Array; readonly error: Codec.CodecError }
  /** Past every window (expired, past stale-while-revalidate and fail-safe) but still held: taken over. */
  | { readonly _tag: "Dead"; readonly bytes: Uint8Array }
  /** `fresh`, `stale` (stale-while-revalidate window) or `failSafe` (held only for failures). */
  | Found<A>

/** @internal */
export interface Found<A> {
  readonly _tag: "Found"
  readonly state: "fresh" | "stale" | "failSafe"
  readonly value: Option.Option<A>
  readonly entry: Codec.Entry<A>
  readonly bytes: Uint8Array
}

/** @internal */
export const absent: Read<never> = { _tag: "Absent" }

/** @internal */
export const unavailable = (error: CacheUnavailable): Read<never> => ({ _tag: "Unavailable", error })

interface Memo<A> {
  readonly bytes: Uint8Array
  readonly entry: Codec.Stored<A>
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a === b || Buffer.prototype.equals.call(a, b)

/**
 * The last entry decoded per key, with its bytes: a read that finds the very same bytes again skips
 * JSON parsing and schema decoding (the bulk of a hit's CPU). Least recently used out first, bounded
 * in entries and in bytes (an entry larger than an eighth of the budget is never kept).
 *
 * @internal
 */
export class DecodeMemo<A> {
  private readonly memo: Lru<Memo<A>> | undefined
  constructor(entries: number, bytes: number) {
    this.memo = entries === 0 || bytes === 0
      ? undefined
      : new Lru<Memo<A>>({ maxEntries: entries, maxSize: bytes, maxEntrySize: Math.max(1, Math.floor(bytes / 8)) })
  }
  get(full: string, bytes: Uint8Array): Codec.Stored<A> | undefined {
    const memo = this.memo?.get(full)
    return memo !== undefined && sameBytes(memo.bytes, bytes) ? memo.entry : undefined
  }
  set(full: string, bytes: Uint8Array, entry: Codec.Stored<A>): void {
    if (this.memo !== undefined && entry._tag !== "Lease") {
      this.memo.set(full, { bytes, entry }, bytes.length + full.length)
    }
  }
  delete(full: string): void {
    this.memo?.delete(full)
  }
  clear(): void {
    this.memo?.clear()
  }
  get size(): number {
    return this.memo?.size ?? 0
  }
}

/** The options entries depend on. @internal */
export type EntryConfig<A> = Pick<
  Config<never, A, never, never>,
  | "codec"
  | "namespace"
  | "ttl"
  | "negativeTtlMillis"
  | "jitter"
  | "swrMillis"
  | "failSafe"
  | "keepMillis"
  | "decodeCache"
  | "integrity"
  | "nearCache"
>

/** What is written after a load, and what the caller gets. */
export interface Prepared<A> {
  /** The answer: the value decoded from the bytes just encoded (or the loaded one, if that failed). */
  readonly value: Option.Option<A>
  /** The entry to write, or `undefined` when the value must not be cached. */
  readonly write: { readonly bytes: Uint8Array; readonly ttl: Duration.Duration } | undefined
}

/**
 * A TTL function's "do not cache" answer: zero or negative, whatever its form (a number of
 * milliseconds, a `Duration`, or text such as `"-5 seconds"`). NaN and other invalid answers are not.
 */
const notPositive = (input: unknown): boolean => {
  if (typeof input === "number") return input <= 0
  // `[NaN, 0]` decodes to zero: invalid, not a "do not cache" (see `validate.duration`)
  if (Array.isArray(input)) {
    const [seconds, nanos] = input as ReadonlyArray<unknown>
    return typeof seconds === "number" && typeof nanos === "number" && seconds * 1e9 + nanos <= 0
  }
  const decoded = Duration.isDuration(input) ? Option.some(input) : Duration.decodeUnknown(input)
  return Option.isSome(decoded) && Duration.toMillis(decoded.value) <= 0
}

/** What the log says of a loaded value that is served but not cached, by why (its encoding's failure). */
const notCached = (encodeFailure: Codec.CodecError["reason"] | undefined): string =>
  encodeFailure === "TooLarge"
    ? "cache-aside: a loaded value is larger than maxEntryBytes; served, not cached"
    : encodeFailure !== undefined
    ? "cache-aside: a loaded value cannot be encoded with its schema; served, not cached"
    : "cache-aside: a loaded value does not survive its schema's round trip; served, not cached"

/**
 * Classifies, encodes and decodes the entries of one cache.
 *
 * @internal
 */
export class Entries<A> {
  readonly codec: Codec.Codec<A>
  readonly memo: DecodeMemo<A>
  private ttlErrorLogged = false
  constructor(
    readonly config: EntryConfig<A>,
    readonly recorder: Recorder,
    readonly now: () => number
  ) {
    this.codec = config.codec
    this.memo = new DecodeMemo(config.decodeCache.entries, config.decodeCache.bytes)
  }

  /** Decodes through the memo; never throws (any exception is a `CodecError`). */
  decode(full: string, bytes: Uint8Array): Either.Either<Codec.Stored<A>, Codec.CodecError> {
    const memo = this.memo.get(full, bytes)
    if (memo !== undefined) return Either.right(memo)
    return this.decodeNew(full, bytes, true)
  }

  /**
   * Decodes bytes the memo does not hold (read, or just encoded); kept in the memo when `remember`.
   * Never throws.
   */
  private decodeNew(
    full: string,
    bytes: Uint8Array,
    remember: boolean
  ): Either.Either<Codec.Stored<A>, Codec.CodecError> {
    let result: Either.Either<Codec.Stored<A>, Codec.CodecError>
    try {
      const integrity = this.config.integrity
      result = integrity === undefined
        ? this.codec.decode(bytes)
        : Either.flatMap(integrity.verify(full, bytes), this.codec.decode)
    } catch (cause) {
      result = Either.left(new Codec.CodecError({ reason: "Decode", message: "the entry could not be decoded", cause }))
    }
    if (remember && Either.isRight(result)) this.memo.set(full, bytes, result.right)
    return result
  }

  /** Classifies stored bytes, synchronously. */
  classify(full: string, stored: Option.Option<Uint8Array>): Read<A> {
    if (Option.isNone(stored)) return absent
    const bytes = stored.value
    const decoded = this.decode(full, bytes)
    if (Either.isLeft(decoded)) return { _tag: "Corrupt", bytes, error: decoded.left }
    const entry = decoded.right
    if (entry._tag === "Lease") return { _tag: "Leased", bytes }
    if (entry._tag === "Newer") return { _tag: "Newer" }
    const at = this.now()
    const state = at < entry.expiresAt
      ? "fresh"
      : at < entry.expiresAt + this.config.swrMillis
      ? "stale"
      : this.config.failSafe !== undefined && at < entry.expiresAt + this.config.failSafe.maxStaleMillis &&
          (entry.staleUntil === undefined || at < entry.staleUntil)
      ? "failSafe"
      : undefined
    if (state === undefined) return { _tag: "Dead", bytes }
    const value = entry._tag === "Value" ? Option.some(entry.value) : Option.none()
    return { _tag: "Found", state, value, entry, bytes }
  }

  /** The fresh-for TTL of a value, jittered; `None` when it must not be cached. */
  ttlFor(value: Option.Option<A>): Effect.Effect<Option.Option<number>> {
    const millis = this.ttlMillis(value)
    if (typeof millis !== "number") return millis
    if (!(millis >= 1)) return Effect.succeed(Option.none())
    if (this.config.jitter === 0) return Effect.succeed(Option.some(millis))
    return Effect.map(Effect.randomWith((random) => random.next), (r) => Option.some(this.jittered(millis, r)))
  }

  /**
   * The fresh-for TTL of a value before jitter (below 1: not cached), decided now (a TTL function
   * runs now); an invalid TTL function result is the effect that counts and logs it.
   */
  private ttlMillis(value: Option.Option<A>): number | Effect.Effect<Option.Option<number>> {
    const config = this.config
    if (Option.isNone(value)) return config.negativeTtlMillis
    if (config.ttl._tag === "Static") return config.ttl.millis
    const decoded = this.dynamicTtl(value.value)
    return typeof decoded === "string" ? this.invalidTtl(decoded) : decoded
  }

  private jittered(millis: number, r: number): number {
    return Math.max(1, Math.round(millis * (1 - this.config.jitter * r)))
  }

  /** The TTL function's answer in milliseconds, or why it is invalid. */
  private dynamicTtl(value: A): number | string {
    let input: unknown
    try {
      input = (this.config.ttl as { readonly of: (value: A) => Duration.DurationInput }).of(value)
    } catch {
      return "the ttl function threw"
    }
    try {
      if (notPositive(input)) return 0
      const decoded = validate.duration("ttl (function result)", input)
      return Either.isRight(decoded) ? Duration.toMillis(decoded.right) : decoded.left
    } catch {
      // an answer that throws when read (a Proxy, a getter): as invalid as one that is not a duration
      return "the ttl function gave a value that cannot be read as a duration"
    }
  }

  /** An invalid TTL function result: not cached, counted, and logged once per cache (not per value). */
  private invalidTtl(message: string): Effect.Effect<Option.Option<number>> {
    this.recorder.increment("ttlErrors")
    if (this.ttlErrorLogged) return Effect.succeed(Option.none())
    this.ttlErrorLogged = true
    return Effect.as(
      Effect.logError("cache-aside: the ttl function gave an invalid duration; such values are not cached", message)
        .pipe(Effect.annotateLogs({ namespace: this.config.namespace })),
      Option.none()
    )
  }

  /**
   * Encodes an entry fresh for `freshMillis`, with the store TTL that keeps it for stale serves too
   * (signed for `full` when the cache has a signing key).
   */
  encode(
    full: string,
    value: Option.Option<A>,
    freshMillis: number,
    delta: number,
    storeMillis = freshMillis + this.config.keepMillis,
    staleUntil?: number
  ): Either.Either<{ readonly bytes: Uint8Array; readonly ttl: Duration.Duration }, Codec.CodecError> {
    const expiresAt = this.now() + freshMillis
    const entry: Codec.Entry<A> = Option.isSome(value)
      ? { _tag: "Value", value: value.value, expiresAt, delta, staleUntil }
      : { _tag: "NotFound", expiresAt, delta, staleUntil }
    try {
      const integrity = this.config.integrity
      return Either.map(this.codec.encode(entry), (bytes) => ({
        bytes: integrity === undefined ? bytes : integrity.sign(full, bytes),
        ttl: Duration.millis(storeMillis)
      }))
    } catch (cause) {
      return Either.left(new Codec.CodecError({ reason: "Encode", message: "the value could not be encoded", cause }))
    }
  }

  /**
   * Makes the entry for a loaded value and the answer: the value decoded back from the bytes just
   * encoded (a class instance where the schema is a class, as a hit gives). When the round trip
   * fails (a `NaN` becomes `null`), nothing is cached, `writeErrors` counts it, it is logged at
   * ERROR, and the loaded value is answered.
   */
  prepare(full: string, value: Option.Option<A>, delta: number): Effect.Effect<Prepared<A>> {
    // as `Effect.flatMap(this.ttlFor(value), ...)`, with the jitter applied in the same step
    const millis = this.ttlMillis(value)
    if (typeof millis !== "number") return Effect.flatMap(millis, (ttl) => this.prepared(full, value, delta, ttl))
    if (!(millis >= 1) || this.config.jitter === 0) {
      const ttl = millis >= 1 ? Option.some(millis) : Option.none()
      return Effect.suspend(() => this.prepared(full, value, delta, ttl))
    }
    return Effect.flatMap(
      Effect.randomWith((random) => random.next),
      (r) => this.prepared(full, value, delta, Option.some(this.jittered(millis, r)))
    )
  }

  /** `prepare` once the TTL is known. */
  private prepared(
    full: string,
    value: Option.Option<A>,
    delta: number,
    ttl: Option.Option<number>
  ): Effect.Effect<Prepared<A>> {
    if (Option.isNone(value) && Option.isNone(ttl)) return Effect.succeed({ value, write: undefined })
    const encoded = this.encode(full, value, Option.getOrElse(ttl, () => 0), delta)
    // bytes just encoded are in no memo; they are remembered for the store hits that follow,
    // unless a near cache answers those
    const decoded = Either.flatMap(
      encoded,
      ({ bytes }) => this.decodeNew(full, bytes, this.config.nearCache === undefined)
    )
    if (Either.isLeft(decoded) || (decoded.right._tag !== "Value" && decoded.right._tag !== "NotFound")) {
      this.recorder.increment("writeErrors")
      const message = Either.isLeft(decoded) ? decoded.left.message : "unexpected entry"
      return Effect.as(
        Effect.logError(notCached(Either.isLeft(encoded) ? encoded.left.reason : undefined), message)
          .pipe(Effect.annotateLogs({ namespace: this.config.namespace })),
        { value, write: undefined }
      )
    }
    const answer = decoded.right._tag === "Value" ? Option.some(decoded.right.value) : Option.none<A>()
    return Effect.succeed({
      value: answer,
      write: Option.isSome(ttl) && Either.isRight(encoded) ? encoded.right : undefined
    })
  }
}
