package io.distca.observability;

import io.micrometer.prometheusmetrics.PrometheusNamingConvention;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * Renders meter catalogues as the Markdown of docs/metrics.md, with the Prometheus series each meter
 * becomes, so the page can never drift from the code (a test compares the two).
 */
public final class MetricsDocs {
  private static final PrometheusNamingConvention NAMING = new PrometheusNamingConvention();

  private MetricsDocs() {}

  /** The Prometheus series names of one meter, e.g. {@code [x_seconds_bucket, x_seconds_count, ...]}. */
  public static List<String> prometheusSeries(MeterDefinition d) {
    // the Prometheus client replaces what its names cannot hold (the dots of a unit like flops.per.second)
    String base = NAMING.name(d.name(), d.kind().micrometerType(), d.baseUnit()).replaceAll("[^a-zA-Z0-9_:]", "_");
    switch (d.kind()) {
      case COUNTER:
      case FUNCTION_COUNTER:
        return List.of(base + "_total");
      case TIMER:
      case SUMMARY:
        return List.of(base + "_bucket", base + "_count", base + "_sum", base + "_max");
      default:
        return List.of(base);
    }
  }

  /**
   * @param sections title of each service's section (with the tags every meter of it carries) to its
   *     catalogue, in page order
   */
  public static String render(String intro, Map<String, List<MeterDefinition>> sections) {
    StringBuilder out = new StringBuilder();
    out.append(intro.strip()).append("\n");
    for (Map.Entry<String, List<MeterDefinition>> section : sections.entrySet()) {
      out.append("\n## ").append(section.getKey()).append("\n\n");
      out.append("| Prometheus series | kind | unit | tags | meaning |\n");
      out.append("| --- | --- | --- | --- | --- |\n");
      for (MeterDefinition d : section.getValue()) {
        List<String> series = prometheusSeries(d);
        String name = series.size() == 1 ? "`" + series.get(0) + "`"
            : "`" + series.get(0).replaceAll("_bucket$", "") + "_{bucket,count,sum,max}`";
        String tags = d.tags().isEmpty() ? "" : d.tags().stream()
            .map(t -> "`" + t.key() + "`: " + (t.enumType() != null
                ? "each " + t.enumType() + " in lower case (" + t.values().get(0) + ", ...)"
                : String.join(", ", t.values())))
            .collect(Collectors.joining("; "));
        out.append("| ").append(name)
            .append(" | ").append(d.kind().name().toLowerCase(java.util.Locale.ROOT).replace('_', ' '))
            .append(" | ").append(d.baseUnit() == null ? "" : d.baseUnit())
            .append(" | ").append(tags)
            .append(" | ").append(d.description().replace("|", "\\|"))
            .append(" `").append(d.name()).append("` |\n");
      }
    }
    return out.toString();
  }

  /** A section map in insertion order, for {@link #render}. */
  public static Map<String, List<MeterDefinition>> sections() {
    return new LinkedHashMap<>();
  }
}
