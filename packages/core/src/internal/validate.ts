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

const isNegative = (input: unknown): boolean =>
  (typeof input === "number" && !(input >= 0)) ||
  (typeof input === "bigint" && input < 0n) ||
  (typeof input === "string" && /^\s*-/.test(input))

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
  const shown = typeof input === "string" ? JSON.stringify(input) : String(input)
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

/** How a value is shown in a message: strings quoted, so `"100"` is told apart from `100`. */
const shown = (input: unknown): string => typeof input === "string" ? JSON.stringify(input) : String(input)

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
    : Either.left(`${what} must be an integer between ${min} and ${max}, got ${shown(input)}`)

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
    : Either.left(`${what} must be a number between ${min} and ${max}, got ${shown(input)}`)

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
 * Edit distance of two short strings, an adjacent swap counting as one edit (optimal string
 * alignment): enough to name the option a typo meant (`wiat` is one edit from `wait`).
 *
 * @internal
 */
export const distance = (a: string, b: string): number => {
  const rows: Array<Array<number>> = [Array.from({ length: b.length + 1 }, (_, j) => j)]
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1)
      }
    }
    rows.push(row)
  }
  return rows[a.length]![b.length]!
}

/** The longest option name shown or compared: a key is developer input, but need not be short. */
const maxShownName = 64

/**
 * The option `key` most likely misspells, if any: the nearest name, case aside, within two edits
 * (one for names of four letters or fewer: "ref" is not a typo of "key").
 *
 * @internal
 */
export const misspelled = (key: string, names: ReadonlyArray<string>): string | undefined => {
  const lower = key.slice(0, maxShownName).toLowerCase()
  let nearest: string | undefined
  let nearestDistance = Number.POSITIVE_INFINITY
  for (const name of names) {
    const edits = distance(name.toLowerCase(), lower)
    if (edits <= (name.length <= 4 ? 1 : 2) && edits < nearestDistance) {
      nearest = name
      nearestDistance = edits
    }
  }
  return nearest
}

/**
 * Checks an option object's own keys that are not options. One that misspells an option
 * (`negativeTTL`, `lock.wiat`) is the message, naming the option it probably meant: ignored, it
 * would leave that option's feature silently off. Others (a field of the application's own config
 * spread into the options, a class's own field) are answered, to be logged, not refused.
 * `names` maps every known option to `true`, so a type lists them all (none missing, none extra).
 *
 * @internal
 */
export const known = (
  what: string | undefined,
  input: object | undefined,
  names: Readonly<Record<string, true>>
): Either.Either<ReadonlyArray<string>, string> => {
  if (input === undefined) return Either.right([])
  const path = (key: string) => what === undefined ? key : `${what}.${key}`
  const shown = (key: string) =>
    JSON.stringify(path(key.length > maxShownName ? `${key.slice(0, maxShownName)}…` : key))
  const candidates = Object.keys(names)
  const unknown: Array<string> = []
  for (const key of Object.keys(input)) {
    if (Object.hasOwn(names, key)) continue
    const near = misspelled(key, candidates)
    if (near !== undefined) {
      return Either.left(`unknown option ${shown(key)}; did you mean ${JSON.stringify(path(near))}?`)
    }
    unknown.push(shown(key))
  }
  return Either.right(unknown)
}
