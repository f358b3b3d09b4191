package io.distca.loadtest.soak;

import io.distca.loadtest.soak.ResourceSampler.Sample;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * Whether anything grew during a soak: per resource, the median of the first third of the samples
 * against the median of the last third, and the least-squares slope per hour. A resource grew when
 * its last third sits above the first by more than 10% plus a fixed slack (GC and pools breathe).
 */
public record SoakReport(double seconds, int samples, List<Trend> trends, long steps, boolean loadPassed) {

  /** One resource over the run. */
  public record Trend(String resource, String unit, double first, double last, double slopePerHour, boolean grew) {}

  public boolean grew() {
    return trends.stream().anyMatch(Trend::grew);
  }

  public static SoakReport of(List<Sample> samples, long steps, boolean loadPassed) {
    if (samples.size() < 6) {
      throw new IllegalArgumentException("a soak needs at least 6 samples to tell a trend, got " + samples.size());
    }
    List<Trend> trends = new ArrayList<>();
    trends.add(trend(samples, "heap after GC", "MB", s -> s.heapBytes() / 1e6, 16));
    trends.add(trend(samples, "Netty direct memory", "MB", s -> s.nettyDirectBytes() / 1e6, 16));
    trends.add(trend(samples, "JDK direct buffers", "MB", s -> s.nioDirectBytes() / 1e6, 16));
    trends.add(trend(samples, "resident set", "MB", s -> s.rssBytes() / 1e6, 96));
    trends.add(trend(samples, "threads", "", s -> s.threads(), 2));
    trends.add(trend(samples, "file descriptors", "", s -> s.fileDescriptors(), 4));
    return new SoakReport(samples.get(samples.size() - 1).seconds(), samples.size(), trends, steps, loadPassed);
  }

  private static Trend trend(List<Sample> samples, String name, String unit, ToDoubleFunction<Sample> f, double slack) {
    int third = samples.size() / 3;
    double first = median(samples.subList(0, third), f);
    double last = median(samples.subList(samples.size() - third, samples.size()), f);
    double n = samples.size();
    double mx = 0;
    double my = 0;
    for (Sample s : samples) {
      mx += s.seconds() / n;
      my += f.applyAsDouble(s) / n;
    }
    double sxy = 0;
    double sxx = 0;
    for (Sample s : samples) {
      sxy += (s.seconds() - mx) * (f.applyAsDouble(s) - my);
      sxx += (s.seconds() - mx) * (s.seconds() - mx);
    }
    double slope = sxx == 0 ? 0 : sxy / sxx * 3600;
    return new Trend(name, unit, first, last, slope, last > first * 1.10 + slack);
  }

  private static double median(List<Sample> part, ToDoubleFunction<Sample> f) {
    double[] v = part.stream().mapToDouble(f).toArray();
    Arrays.sort(v);
    return v.length == 0 ? 0 : v[v.length / 2];
  }

  public String text() {
    StringBuilder sb = new StringBuilder();
    sb.append(String.format(Locale.ROOT, "soak: %.0f s, %d samples, %d measured steps, load checks %s%n", seconds, samples,
        steps, loadPassed ? "passed" : "FAILED"));
    sb.append(String.format(Locale.ROOT, "%-22s %12s %12s %14s  %s%n", "resource", "first third", "last third",
        "slope per hour", "verdict"));
    for (Trend t : trends) {
      sb.append(String.format(Locale.ROOT, "%-22s %12.1f %12.1f %14.1f  %s%n", t.resource() + (t.unit().isEmpty() ? "" : " (" + t.unit() + ")"),
          t.first(), t.last(), t.slopePerHour(), t.grew() ? "GREW" : "flat"));
    }
    return sb.toString();
  }
}
