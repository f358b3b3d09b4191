package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.client.ClientMeters;
import io.distca.dispatcher.service.DispatcherMeters;
import io.distca.observability.CatalogueMeters;
import io.distca.observability.MeterDefinition;
import io.distca.observability.MetricsDocs;
import io.distca.server.ServerMeters;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * docs/metrics.md is the catalogues rendered: this test fails when they drift apart. Run with
 * {@code -Ddistca.updateDocs=true} to rewrite the page from the code.
 */
class MetricsCatalogueTest {
  static final String INTRO = """
      # DistCA metrics

      Generated from the meter catalogues (`ServerMeters`, `DispatcherMeters`, `ClientMeters`); a test
      (`deploy/.../MetricsCatalogueTest`) fails when this page and the code disagree. Regenerate with
      `mvn -pl deploy test -Dtest=MetricsCatalogueTest -Ddistca.updateDocs=true`.

      Every service serves these on its admin port at `/metrics` (Prometheus text format), next to
      `/healthz` (alive) and `/readyz` (ready for work). Names follow Micrometer (dots, base units);
      Prometheus sees them with underscores and the unit appended. Every meter carries the tag
      `component` (`attention-server`, `dispatcher`, `trainer-client`); attention-server meters also
      carry `server` (the server id). Tags take only the values listed, so cardinality is bounded: no
      task, request or job ids. Counters and histograms exist at zero from start, for every listed tag
      value. Histograms are Prometheus histograms (`_bucket` with `le`), so percentiles aggregate
      across servers with `histogram_quantile`.

      Besides these, every service exports Micrometer's JVM meters (`jvm_memory_used_bytes`,
      `jvm_gc_*`, `jvm_threads_*`, `jvm_classes_*`), process meters (`process_cpu_usage`,
      `process_uptime_seconds`, `process_files_open_files`), and Netty's allocator
      (`netty_allocator_memory_used`, `netty_allocator_memory_pinned`, `netty_allocator_pooled_*`).
      """;

  static Map<String, List<MeterDefinition>> catalogues() {
    Map<String, List<MeterDefinition>> sections = MetricsDocs.sections();
    sections.put("Attention server (`component=attention-server`, `server=<id>`)",
        CatalogueMeters.definitions(ServerMeters.class));
    sections.put("Dispatcher (`component=dispatcher`)", CatalogueMeters.definitions(DispatcherMeters.class));
    sections.put("Trainer client (`component=trainer-client`, in the trainer's or its sidecar's registry)",
        CatalogueMeters.definitions(ClientMeters.class));
    return sections;
  }

  @Test
  void docsMetricsMdIsTheCatalogueRendered() throws Exception {
    String rendered = MetricsDocs.render(INTRO, catalogues());
    Path page = Environment.repoRoot().resolve("docs/metrics.md");
    if (Boolean.getBoolean("distca.updateDocs")) {
      Files.writeString(page, rendered, StandardCharsets.UTF_8);
    }
    assertTrue(Files.exists(page), "docs/metrics.md is missing: run with -Ddistca.updateDocs=true");
    assertEquals(rendered, Files.readString(page, StandardCharsets.UTF_8),
        "docs/metrics.md differs from the meter catalogues: run with -Ddistca.updateDocs=true");
  }

  @Test
  void meterNamesAreUniqueAcrossServices() {
    java.util.Set<String> names = new java.util.HashSet<>();
    for (List<MeterDefinition> section : catalogues().values()) {
      for (MeterDefinition d : section) {
        assertTrue(names.add(d.name()), "meter " + d.name() + " is defined twice");
        assertTrue(d.name().startsWith("distca."), d.name() + " must be under distca.");
      }
    }
  }
}
