/**
 * @since 0.1.0
 */
export * as CacheAside from "./CacheAside.js"

/**
 * @since 0.1.0
 */
export * as CacheBus from "./CacheBus.js"

/**
 * @since 0.1.0
 */
export * as CacheService from "./CacheService.js"

/**
 * @since 0.1.0
 */
export * as CacheStore from "./CacheStore.js"

/**
 * @since 0.1.0
 */
export * as Codec from "./Codec.js"

/**
 * @since 0.1.0
 */
export * as DataSource from "./DataSource.js"

/**
 * @since 0.1.0
 */
export * as FaultInjection from "./FaultInjection.js"

/**
 * @since 0.1.0
 */
export * as Glob from "./Glob.js"

/**
 * @since 0.1.0
 */
export * as MemoryCacheStore from "./MemoryCacheStore.js"

/**
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * @since 0.1.0
 */
export * as NearCache from "./NearCache.js"

/**
 * @since 0.1.0
 */
export * as OptionNames from "./OptionNames.js"

/**
 * @since 0.1.0
 */
export * as PromiseCache from "./PromiseCache.js"

/**
 * @since 0.1.0
 */
export * as ResilientCacheStore from "./ResilientCacheStore.js"
