/**
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as RedisCacheBus from "./RedisCacheBus.js"

/**
 * @since 0.1.0
 */
export * as RedisCacheStore from "./RedisCacheStore.js"

/**
 * @since 0.1.0
 */
export * as RedisClient from "./RedisClient.js"
