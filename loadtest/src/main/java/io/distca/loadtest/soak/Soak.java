package io.distca.loadtest.soak;

import io.distca.loadtest.LoadReport;
import io.distca.loadtest.LoadTest;
import io.distca.loadtest.LoadTestOptions;
import java.time.Duration;

/**
 * {@code distca soak}: a load test for a set time (an embedded cluster and its trainers in this
 * process), sampling this process's resources throughout, and a verdict on whether any grew.
 */
public final class Soak {
  private Soak() {}

  public static SoakReport run(LoadTestOptions options, Duration duration, long sampleIntervalMs)
      throws InterruptedException {
    options.duration = duration;
    options.progress = "off";
    try (ResourceSampler sampler = new ResourceSampler(sampleIntervalMs)) {
      sampler.start();
      LoadReport load = LoadTest.run(options);
      return SoakReport.of(sampler.samples(), load.totals().steps(), load.passed());
    }
  }
}
