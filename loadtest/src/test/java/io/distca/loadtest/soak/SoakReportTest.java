package io.distca.loadtest.soak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.loadtest.LoadTestOptions;
import io.distca.loadtest.soak.ResourceSampler.Sample;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The growth verdict on made-up series, and a short real soak through the whole harness. */
class SoakReportTest {
  private static List<Sample> series(long heapStart, long heapStep, int threads, int threadStep) {
    List<Sample> s = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      s.add(new Sample(i * 10, heapStart + i * heapStep, 50_000_000, 1_000_000, 500_000_000, threads + i * threadStep, 120));
    }
    return s;
  }

  @Test
  void aFlatSeriesIsFlatAndALeakIsCaught() {
    SoakReport flat = SoakReport.of(series(200_000_000, 0, 40, 0), 10, true);
    assertFalse(flat.grew(), flat.text());
    SoakReport heapLeak = SoakReport.of(series(200_000_000, 5_000_000, 40, 0), 10, true);
    assertTrue(heapLeak.grew());
    assertTrue(heapLeak.trends().get(0).grew(), "the heap trend");
    assertEquals(5_000_000 / 1e6 * 360, heapLeak.trends().get(0).slopePerHour(), 1e-6);
    SoakReport threadLeak = SoakReport.of(series(200_000_000, 0, 40, 1), 10, true);
    assertTrue(threadLeak.trends().stream().filter(t -> t.resource().equals("threads")).findFirst().orElseThrow().grew());
    assertThrows(IllegalArgumentException.class, () -> SoakReport.of(series(1, 0, 1, 0).subList(0, 3), 1, true));
  }

  @Test
  void aShortSoakRunsTheHarnessAndSamplesThroughout() throws Exception {
    LoadTestOptions o = new LoadTestOptions();
    o.backend = "cpu";
    o.computeThreads = 1;
    o.tokensPerRank = 1024;
    o.layers = 1;
    SoakReport r = Soak.run(o, Duration.ofSeconds(8), 500);
    assertTrue(r.loadPassed(), r.text());
    assertTrue(r.samples() >= 6, r.text());
    assertTrue(r.steps() > 0, r.text());
    assertEquals(6, r.trends().size());
  }
}
