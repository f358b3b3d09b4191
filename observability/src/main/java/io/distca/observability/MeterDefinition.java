package io.distca.observability;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * Name, kind, base unit, tags and description of one meter.
 *
 * <p>Names follow Micrometer: lower-case words separated by dots, without the unit; the base unit
 * is separate ({@code seconds} for every timer, {@code bytes}, {@code flops}, ...). The Prometheus
 * registry turns {@code distca.server.request.latency} with unit seconds into
 * {@code distca_server_request_latency_seconds}. The constructor rejects names that break this. Counts
 * may carry their own unit word ({@code distca.server.tasks}, unit tasks): the registry does not
 * repeat it.
 */
public record MeterDefinition(
    String name, MeterKind kind, String baseUnit, List<TagSpec> tags, String description, double[] buckets) {

  private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9]*(\\.[a-z][a-z0-9]*)+");

  public MeterDefinition {
    Objects.requireNonNull(kind, "kind");
    if (name == null || !NAME.matcher(name).matches()) {
      throw new IllegalArgumentException("meter name must be lower-case words joined by dots, got " + name);
    }
    if (kind == MeterKind.TIMER && !"seconds".equals(baseUnit)) {
      throw new IllegalArgumentException(name + ": a timer's base unit is seconds");
    }
    if (("seconds".equals(baseUnit) || "bytes".equals(baseUnit)) && name.endsWith("." + baseUnit)) {
      // Micrometer names say what is measured; the registry appends the physical unit
      throw new IllegalArgumentException(name + ": the unit " + baseUnit + " is appended by the registry, leave it out of the name");
    }
    if (description == null || description.isBlank()) {
      throw new IllegalArgumentException(name + ": needs a description");
    }
    tags = List.copyOf(tags);
    buckets = buckets.clone();
    boolean histogram = kind == MeterKind.TIMER || kind == MeterKind.SUMMARY;
    if (histogram != (buckets.length > 0)) {
      throw new IllegalArgumentException(name + ": timers and summaries need histogram buckets, other kinds none");
    }
    for (int i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) {
        throw new IllegalArgumentException(name + ": buckets must increase");
      }
    }
  }

  public static MeterDefinition counter(String name, String unit, String description, TagSpec... tags) {
    return new MeterDefinition(name, MeterKind.COUNTER, unit, List.of(tags), description, new double[0]);
  }

  public static MeterDefinition functionCounter(String name, String unit, String description, TagSpec... tags) {
    return new MeterDefinition(name, MeterKind.FUNCTION_COUNTER, unit, List.of(tags), description, new double[0]);
  }

  public static MeterDefinition gauge(String name, String unit, String description, TagSpec... tags) {
    return new MeterDefinition(name, MeterKind.GAUGE, unit, List.of(tags), description, new double[0]);
  }

  public static MeterDefinition timer(String name, String description, double[] bucketSeconds, TagSpec... tags) {
    return new MeterDefinition(name, MeterKind.TIMER, "seconds", List.of(tags), description, bucketSeconds);
  }

  public static MeterDefinition summary(String name, String unit, String description, double[] buckets, TagSpec... tags) {
    return new MeterDefinition(name, MeterKind.SUMMARY, unit, List.of(tags), description, buckets);
  }

  /** Latency buckets from 100 us to 2 min, roughly 1-2.5-5 per decade: small enough to keep 18 series per timer. */
  public static double[] latencyBuckets() {
    return new double[] {1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120};
  }

  @Override
  public double[] buckets() {
    return buckets.clone();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof MeterDefinition d && d.name.equals(name) && d.kind == kind && Objects.equals(d.baseUnit, baseUnit)
        && d.tags.equals(tags) && d.description.equals(description) && Arrays.equals(d.buckets, buckets);
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, kind, baseUnit, tags, description, Arrays.hashCode(buckets));
  }

  @Override
  public String toString() {
    return name + " (" + kind + (baseUnit == null ? "" : ", " + baseUnit) + ")";
  }
}
