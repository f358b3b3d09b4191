package io.distca.loadtest;

import io.distca.loadtest.LoadReport.Latency;
import io.distca.loadtest.LoadReport.Ratio;
import java.awt.Color;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * {@code --report DIR}: an HTML page with the summary tables and PNG charts drawn with XChart
 * (throughput over time, latency CDFs per phase, per-server load, per-step imbalance, bytes per
 * second), next to the JSON report it was drawn from.
 */
public final class HtmlReport {
  static final String[] CHARTS = {"throughput.png", "latency-cdf.png", "server-load.png", "imbalance.png", "bytes.png"};
  private static final int WIDTH = 960;
  private static final int HEIGHT = 520;

  private HtmlReport() {}

  /** Writes index.html, report.json and the charts into {@code dir} (created if needed); returns index.html. */
  public static Path write(LoadReport report, Path dir) throws IOException {
    if (System.getProperty("java.awt.headless") == null) {
      System.setProperty("java.awt.headless", "true"); // servers and CI have no display
    }
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("report.json"), report.toJson(), StandardCharsets.UTF_8);
    save(throughput(report), dir.resolve(CHARTS[0]));
    save(latencyCdf(report), dir.resolve(CHARTS[1]));
    save(serverLoad(report), dir.resolve(CHARTS[2]));
    save(imbalance(report), dir.resolve(CHARTS[3]));
    save(bytes(report), dir.resolve(CHARTS[4]));
    Path index = dir.resolve("index.html");
    Files.writeString(index, html(report), StandardCharsets.UTF_8);
    return index;
  }

  private static void save(Chart<?, ?> chart, Path file) throws IOException {
    try (OutputStream out = Files.newOutputStream(file)) {
      BitmapEncoder.saveBitmap(chart, out, BitmapEncoder.BitmapFormat.PNG);
    }
  }

  static XYChart throughput(LoadReport r) {
    XYChart chart = xy("Throughput over time", "seconds since the measured start", "tokens per second");
    LoadReport.Timeline t = r.timeline();
    chart.getStyler().setXAxisMin(0.0);
    double[][] line = stairs(t.bucketSeconds(), t.tokensPerSecond(), 1);
    chart.addSeries("layer calls, each spread over its duration (" + fmt("%.2f", t.bucketSeconds()) + " s buckets)",
        line[0], line[1]).setMarker(SeriesMarkers.NONE);
    if (!r.steps().isEmpty()) {
      double[] x = r.steps().stream().mapToDouble(LoadReport.StepPoint::endSeconds).toArray();
      double[] y = r.steps().stream().mapToDouble(LoadReport.StepPoint::tokensPerSecond).toArray();
      XYSeries steps = chart.addSeries("per step (tokens / step time)", x, y);
      steps.setMarker(SeriesMarkers.CIRCLE);
      steps.setLineStyle(SeriesLines.NONE);
    }
    return chart;
  }

  static XYChart latencyCdf(LoadReport r) {
    XYChart chart = xy("Latency CDF per phase", "milliseconds (log scale)", "fraction of samples at or below");
    chart.getStyler().setXAxisLogarithmic(true);
    chart.getStyler().setXAxisDecimalPattern("0.###");
    chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideE);
    chart.getStyler().setYAxisMin(0.0);
    chart.getStyler().setYAxisMax(1.0);
    for (Map.Entry<String, Latency> e : r.latencyMs().entrySet()) {
      List<double[]> cdf = e.getValue().cdf();
      if (cdf.isEmpty()) {
        continue;
      }
      double[] x = new double[cdf.size()];
      double[] y = new double[cdf.size()];
      for (int i = 0; i < cdf.size(); i++) {
        x[i] = Math.max(1e-3, cdf.get(i)[0]); // a log axis has no zero: 1 microsecond stands for "none"
        y[i] = cdf.get(i)[1];
      }
      chart.addSeries(e.getKey(), x, y).setMarker(SeriesMarkers.NONE);
    }
    return chart;
  }

  static CategoryChart serverLoad(LoadReport r) {
    CategoryChart chart = new CategoryChartBuilder().width(WIDTH).height(HEIGHT)
        .title(fmt("Per-server load (FLOPs max/mean over the run: %.3f)", r.imbalance().run()))
        .xAxisTitle("server").yAxisTitle("percent").build();
    chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideS);
    chart.getStyler().setChartBackgroundColor(Color.WHITE);
    chart.getStyler().setYAxisDecimalPattern("0");
    List<String> ids = new ArrayList<>();
    List<Double> share = new ArrayList<>();
    List<Double> busy = new ArrayList<>();
    List<Double> fair = new ArrayList<>();
    double total = r.servers().stream().mapToDouble(LoadReport.ServerLoad::flops).sum();
    for (LoadReport.ServerLoad s : r.servers()) {
      ids.add(s.id());
      share.add(total > 0 ? 100 * s.flops() / total : 0);
      busy.add(100 * s.utilization());
      fair.add(100.0 / r.servers().size());
    }
    if (ids.isEmpty()) {
      ids.add("none");
      share.add(0.0);
      busy.add(0.0);
      fair.add(0.0);
    }
    chart.addSeries("share of all FLOPs served", ids, share);
    chart.addSeries("equal share", ids, fair);
    chart.addSeries("backend busy, % of measured time", ids, busy);
    return chart;
  }

  static XYChart imbalance(LoadReport r) {
    XYChart chart = xy("Imbalance per step (server FLOPs, max / mean)", "step", "max / mean (1 = perfect)");
    double[] x = r.steps().stream().mapToDouble(LoadReport.StepPoint::step).toArray();
    double[] y = r.steps().stream().mapToDouble(s -> Double.isNaN(s.imbalance()) ? 0 : s.imbalance()).toArray();
    if (x.length == 0) {
      x = new double[] {0};
      y = new double[] {0};
    }
    chart.addSeries("measured", x, y).setMarker(SeriesMarkers.CIRCLE);
    XYSeries perfect = chart.addSeries("perfect balance", new double[] {x[0], x[x.length - 1]}, new double[] {1, 1});
    perfect.setMarker(SeriesMarkers.NONE);
    perfect.setLineStyle(SeriesLines.DASH_DASH);
    perfect.setLineColor(Color.GRAY);
    chart.getStyler().setYAxisMin(0.0);
    return chart;
  }

  static XYChart bytes(LoadReport r) {
    XYChart chart = xy("Bytes per second (tensor payloads)", "seconds since the measured start", "MB per second");
    LoadReport.Timeline t = r.timeline();
    chart.getStyler().setXAxisMin(0.0);
    double[][] sent = stairs(t.bucketSeconds(), t.bytesSentPerSecond(), 1e-6);
    double[][] received = stairs(t.bucketSeconds(), t.bytesReceivedPerSecond(), 1e-6);
    chart.addSeries("sent to servers", sent[0], sent[1]).setMarker(SeriesMarkers.NONE);
    chart.addSeries("received from servers", received[0], received[1]).setMarker(SeriesMarkers.NONE);
    return chart;
  }

  private static XYChart xy(String title, String x, String y) {
    XYChart chart = new XYChartBuilder().width(WIDTH).height(HEIGHT).title(title).xAxisTitle(x).yAxisTitle(y).build();
    chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideS);
    chart.getStyler().setChartBackgroundColor(Color.WHITE);
    chart.getStyler().setXAxisDecimalPattern("0.##");
    return chart;
  }

  /**
   * Bucket rates as a staircase {x[], y[]}: each bucket a flat segment over its own time span, so
   * the plot shows what was measured (an average per bucket), not lines between bucket ends.
   */
  private static double[][] stairs(double bucket, double[] rates, double factor) {
    double[] x = new double[2 * rates.length];
    double[] y = new double[2 * rates.length];
    for (int i = 0; i < rates.length; i++) {
      x[2 * i] = i * bucket;
      x[2 * i + 1] = (i + 1) * bucket;
      y[2 * i] = rates[i] * factor;
      y[2 * i + 1] = rates[i] * factor;
    }
    return new double[][] {x, y};
  }

  // ---------------------------------------------------------------- the page

  private static String html(LoadReport r) {
    StringBuilder b = new StringBuilder();
    b.append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>DistCA load test</title><style>")
        .append("body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:1em 0}")
        .append("td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}")
        .append("td:first-child,th:first-child{text-align:left}.pass{color:#080}.fail{color:#b00}")
        .append("img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style></head><body>\n");
    b.append("<h1>DistCA load test: <span class=\"").append(r.passed() ? "pass\">PASS" : "fail\">FAIL")
        .append("</span></h1>\n");
    if (!r.failures().isEmpty()) {
      b.append("<ul class=\"fail\">");
      r.failures().forEach(f -> b.append("<li>").append(esc(f)).append("</li>"));
      b.append("</ul>\n");
    }
    b.append("<pre>").append(esc(r.summary())).append("</pre>\n");
    b.append("<h2>Roofline</h2>\n<table><tr><th>ratio</th><th>achieved</th><th>ceiling</th><th>achieved/ceiling</th></tr>");
    for (Ratio ratio : List.of(r.roofline().transport(), r.roofline().compute(), r.roofline().step())) {
      b.append(row(ratio.what(), num(ratio.achieved()) + " " + ratio.unit(), num(ratio.ceiling()) + " " + ratio.unit(),
          fmt("%.3f", ratio.ratio())));
    }
    b.append("</table><p>Compute ceiling: ").append(esc(r.roofline().computeCeilingSource())).append("</p>\n");
    b.append("<h2>Throughput</h2><img src=\"throughput.png\" alt=\"throughput over time\">\n");
    b.append("<h2>Latency per phase</h2><img src=\"latency-cdf.png\" alt=\"latency CDFs\">\n")
        .append("<table><tr><th>phase (ms)</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th>")
        .append("<th>p99.9</th><th>max</th><th>what</th></tr>");
    for (Map.Entry<String, Latency> e : r.latencyMs().entrySet()) {
      Latency l = e.getValue();
      b.append(row(e.getKey(), Long.toString(l.count()), fmt("%.3f", l.mean()), fmt("%.3f", l.p50()),
          fmt("%.3f", l.p90()), fmt("%.3f", l.p99()), fmt("%.3f", l.p999()), fmt("%.3f", l.max()), l.description()));
    }
    b.append("</table>\n<h2>Servers</h2><img src=\"server-load.png\" alt=\"per-server load\">")
        .append("<img src=\"imbalance.png\" alt=\"imbalance per step\">\n")
        .append("<table><tr><th>server</th><th>requests</th><th>failed</th><th>tasks</th><th>GFLOP</th><th>busy s</th>")
        .append("<th>utilization</th><th>MB in</th><th>MB out</th><th>mean queue ms</th><th>ceiling GFLOP/s</th></tr>");
    for (LoadReport.ServerLoad s : r.servers()) {
      b.append(row(s.id(), Long.toString(s.requests()), Long.toString(s.failedRequests()), Long.toString(s.tasks()),
          fmt("%.3f", s.flops() / 1e9), fmt("%.3f", s.busySeconds()), fmt("%.3f", s.utilization()),
          fmt("%.2f", s.bytesIn() / 1e6), fmt("%.2f", s.bytesOut() / 1e6), fmt("%.3f", s.meanQueueMs()),
          fmt("%.2f", s.ceilingFlopsPerSecond() / 1e9)));
    }
    b.append("</table>\n<h2>Bytes per second</h2><img src=\"bytes.png\" alt=\"bytes per second\">\n");
    b.append("<p>Machine-readable: <a href=\"report.json\">report.json</a></p>\n</body></html>\n");
    return b.toString();
  }

  private static String row(String... cells) {
    StringBuilder b = new StringBuilder("<tr>");
    for (String c : cells) {
      b.append("<td>").append(esc(c)).append("</td>");
    }
    return b.append("</tr>\n").toString();
  }

  private static String num(double v) {
    return Double.isNaN(v) ? "n/a" : fmt("%.4g", v);
  }

  private static String esc(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
  }

  private static String fmt(String format, Object... args) {
    return String.format(Locale.ROOT, format, args);
  }
}
