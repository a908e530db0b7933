/**
 * The testing kit of `@cache-aside/core`: a test store layer, a test database, fault schedules as
 * fast-check arbitraries, and the model-based property to run against an application's cache.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Database from "./Database.js"

/**
 * @since 0.1.0
 */
export * as Faults from "./Faults.js"

/**
 * @since 0.1.0
 */
export * as Property from "./Property.js"

/**
 * @since 0.1.0
 */
export * as TestStore from "./TestStore.js"
