/**
 * Small validators for user options: each returns the accepted value or a message naming the
 * option. Messages show the offending value only when it cannot be a secret (numbers, durations);
 * a URL, a password or a key file's contents never appear in a message.
 *
 * @internal
 */
import * as OptionNames from "@cache-aside/core/OptionNames"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

/**
 * The longest timer Node.js keeps: a larger `setTimeout` delay is silently replaced by 1 ms, so a
 * longer command or connect timeout would fire at once.
 *
 * @internal
 */
export const maxTimerMillis = 2 ** 31 - 1

const isNegative = (input: unknown): boolean =>
  (typeof input === "number" && !(input >= 0)) ||
  (typeof input === "bigint" && input < 0n) ||
  (typeof input === "string" && /^\s*-/.test(input))

const show = (input: unknown): string => {
  if (typeof input === "string") return JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}...` : input)
  if (Duration.isDuration(input)) return Duration.format(input)
  if (typeof input === "number" || typeof input === "bigint" || typeof input === "boolean") return String(input)
  return typeof input
}

/**
 * A finite duration of at least `minMillis` and at most `maxMillis`.
 *
 * @internal
 */
export const duration = (
  what: string,
  input: unknown,
  minMillis: number,
  maxMillis: number
): Either.Either<Duration.Duration, string> => {
  const decoded = isNegative(input) ? Option.none() : Duration.decodeUnknown(input)
  if (Option.isNone(decoded) || !Duration.isFinite(decoded.value)) {
    return Either.left(`${what} must be a finite, positive duration, got ${show(input)}`)
  }
  const millis = Duration.toMillis(decoded.value)
  if (!(millis >= minMillis && millis <= maxMillis)) {
    return Either.left(
      `${what} must be between ${Duration.format(Duration.millis(minMillis))} and ${
        Duration.format(Duration.millis(maxMillis))
      }, got ${show(input)}`
    )
  }
  return Either.right(decoded.value)
}

/**
 * An integer in `[min, max]`.
 *
 * @internal
 */
export const integer = (what: string, input: unknown, min: number, max: number): Either.Either<number, string> =>
  typeof input === "number" && Number.isInteger(input) && input >= min && input <= max
    ? Either.right(input)
    : Either.left(`${what} must be an integer between ${min} and ${max}, got ${show(input)}`)

/**
 * A non-empty string without control characters (a host name, a user name, a TLS server name).
 *
 * @internal
 */
export const name = (what: string, input: unknown): Either.Either<string, string> =>
  // eslint-disable-next-line no-control-regex
  typeof input === "string" && input.length > 0 && input.length <= 1024 && !/[\u0000-\u001f\u007f]/.test(input)
    ? Either.right(input)
    : Either.left(`${what} must be a non-empty string without control characters`)

/**
 * A boolean.
 *
 * @internal
 */
export const boolean = (what: string, input: unknown): Either.Either<boolean, string> =>
  typeof input === "boolean" ? Either.right(input) : Either.left(`${what} must be true or false, got ${show(input)}`)

/**
 * Whether an object-shaped option (the options themselves, `resilience`, `bus`) is absent or an
 * object: `undefined` when it is, else the message (`null` or a string given where an object goes
 * would otherwise be a TypeError, a defect, when a field of it is read).
 *
 * @internal
 */
export const notAnObject = (what: string, input: unknown): string | undefined =>
  input === undefined || (typeof input === "object" && input !== null && !Array.isArray(input))
    ? undefined
    : `${what} must be an object, got ${input === null ? "null" : Array.isArray(input) ? "an array" : typeof input}`

/**
 * The message when a layer's options, or their `resilience` or `bus`, are not objects; `undefined`
 * when they are fine (or absent; `resilience: false` turns resilience off).
 *
 * @internal
 */
export const objectsIn = (options: { readonly resilience?: unknown; readonly bus?: unknown }): string | undefined =>
  notAnObject("options", options) ??
    (options.resilience === false ? undefined : notAnObject("resilience", options.resilience)) ??
    notAnObject("bus", options.bus)

/**
 * The option object's own keys that are no option: one that misspells an option is the message
 * (naming the option it probably meant); the others are answered, quoted and clipped, to be
 * logged. Only names are shown, never a value (it may be a URL or a password). Core's check.
 *
 * @internal
 */
export const known = OptionNames.check
