package io.distca.observability;

/**
 * One entry of a service's meter catalogue. Each service lists its meters as an enum implementing
 * this interface, so that names, units, tags and descriptions live in one place, bind in one place
 * ({@link CatalogueMeters}) and are documented from it (docs/metrics.md).
 */
public interface MeterSpec {
  MeterDefinition definition();
}
