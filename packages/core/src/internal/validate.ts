/**
 * Validation of user options, shared by `CacheAside` and the stores: every duration is decoded
 * once, and a value that cannot make a working cache (negative, NaN, infinite, beyond what Redis
 * accepts as `PX`) is a message for the caller's typed error, never a silently disabled cache.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

/**
 * The largest time-to-live, in milliseconds, that every store accepts: Redis refuses `PX` values
 * whose expiry (now + ttl) overflows a signed 64-bit millisecond clock; 2^46 ms (about 2,230
 * years) leaves room for any clock and is far beyond any sensible TTL.
 *
 * @internal
 */
export const maxTtlMillis = 2 ** 46

/** @internal */
export interface DurationBounds {
  /** Smallest accepted value, in milliseconds (inclusive). Default 0. */
  readonly min?: number | undefined
  /** Largest accepted value, in milliseconds (inclusive). Default `maxTtlMillis`. */
  readonly max?: number | undefined
}

/**
 * A value `Duration.decode` would silently turn into zero or another duration: a negative number,
 * NaN, a negative text, or an `[seconds, nanos]` pair with a part that is not a finite number
 * (`[NaN, 0]` decodes to zero).
 */
const isNegative = (input: unknown): boolean =>
  (Array.isArray(input) && !input.every((part) => typeof part === "number" && Number.isFinite(part) && part >= 0)) ||
  (typeof input === "number" && !(input >= 0)) ||
  (typeof input === "bigint" && input < 0n) ||
  (typeof input === "string" && /^\s*-/.test(input))

/**
 * How a value is shown in a message: strings quoted, so `"100"` is told apart from `100`; a value
 * that cannot be turned into text (`Object.create(null)`, a throwing `toString`, a revoked
 * `Proxy`) by its type, never a throw out of a check.
 */
const show = (input: unknown): string => {
  if (typeof input === "string") return JSON.stringify(input)
  try {
    return String(input)
  } catch {
    return typeof input
  }
}

/**
 * Decodes a user-supplied duration, rejecting what `Duration.decode` would silently clamp or accept
 * (negative numbers, NaN, infinity, unparsable strings, values out of bounds). The message names
 * the option; it never needs more than the option's own value, which is not a secret.
 *
 * @internal
 */
export const duration = (
  what: string,
  input: unknown,
  bounds: DurationBounds = {}
): Either.Either<Duration.Duration, string> => {
  const min = bounds.min ?? 0
  const max = bounds.max ?? maxTtlMillis
  const decoded = isNegative(input) ? Option.none() : Duration.decodeUnknown(input)
  const shown = show(input)
  if (Option.isNone(decoded) || !Duration.isFinite(decoded.value)) {
    return Either.left(`${what} must be a finite, non-negative duration, got ${shown}`)
  }
  const millis = Duration.toMillis(decoded.value)
  if (!(millis >= min) || !(millis <= max)) {
    return Either.left(
      `${what} must be between ${Duration.format(Duration.millis(min))} and ${
        Duration.format(Duration.millis(max))
      }, got ${shown}`
    )
  }
  return Either.right(decoded.value)
}

/**
 * An integer in `[min, max]`.
 *
 * @internal
 */
export const integer = (
  what: string,
  input: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER
): Either.Either<number, string> =>
  typeof input === "number" && Number.isInteger(input) && input >= min && input <= max
    ? Either.right(input)
    : Either.left(`${what} must be an integer between ${min} and ${max}, got ${show(input)}`)

/**
 * A finite number in `[min, max]`.
 *
 * @internal
 */
export const fraction = (
  what: string,
  input: unknown,
  min: number,
  max: number
): Either.Either<number, string> =>
  typeof input === "number" && Number.isFinite(input) && input >= min && input <= max
    ? Either.right(input)
    : Either.left(`${what} must be a number between ${min} and ${max}, got ${show(input)}`)

/**
 * An object-shaped option (`failSafe`, `lock`, ...): absent (`undefined`), or a non-null object that
 * is not an array; anything else (`null`, a string, a number) is a message, not a defect when its
 * fields are read.
 *
 * @internal
 */
export const record = <T extends object>(what: string, input: T | undefined): Either.Either<T | undefined, string> =>
  input === undefined || (typeof input === "object" && input !== null && !Array.isArray(input))
    ? Either.right(input)
    : Either.left(
      `${what} must be an object, got ${input === null ? "null" : Array.isArray(input) ? "an array" : typeof input}`
    )

/**
 * Option names (`distance`, `misspelled`, `known`): public in `OptionNames`, for custom stores too.
 *
 * @internal
 */
export { check as known, distance, misspelled } from "../OptionNames.js"
