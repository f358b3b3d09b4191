package io.distca.dispatcher.sim;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.VectorGraphicsEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;

/** Speedup of disaggregated over colocated against the number of servers, one line per (model, tokens per rank). */
public final class SpeedupChart {
  /** The range of end-to-end speedups the DistCA paper reports. */
  public static final double PAPER_LOW = 1.07;
  public static final double PAPER_HIGH = 1.35;

  private SpeedupChart() {}

  public static XYChart build(List<StepEstimate> estimates) {
    XYChart chart = new XYChartBuilder().width(900).height(560)
        .title("Simulated step-time speedup: disaggregated (DistCA plan) vs colocated (WLB packing)")
        .xAxisTitle("attention servers (= trainer ranks in place)").yAxisTitle("speedup").build();
    chart.getStyler().setXAxisLogarithmic(true);
    chart.getStyler().setLegendPosition(org.knowm.xchart.style.Styler.LegendPosition.OutsideE);
    chart.getStyler().setYAxisDecimalPattern("0.00");
    chart.getStyler().setXAxisDecimalPattern("0");
    Map<String, List<StepEstimate>> lines = new LinkedHashMap<>();
    double minServers = Double.MAX_VALUE;
    double maxServers = 0;
    for (StepEstimate estimate : estimates) {
      String key = String.format(Locale.ROOT, "%s, %dK tok/rank", estimate.model(), estimate.tokensPerRank() / 1024);
      lines.computeIfAbsent(key, k -> new ArrayList<>()).add(estimate);
      minServers = Math.min(minServers, estimate.servers());
      maxServers = Math.max(maxServers, estimate.servers());
    }
    for (Map.Entry<String, List<StepEstimate>> line : lines.entrySet()) {
      List<StepEstimate> points = new ArrayList<>(line.getValue());
      points.sort((a, b) -> Integer.compare(a.servers(), b.servers()));
      double[] x = points.stream().mapToDouble(StepEstimate::servers).toArray();
      double[] y = points.stream().mapToDouble(StepEstimate::speedup).toArray();
      chart.addSeries(line.getKey(), x, y).setMarker(SeriesMarkers.CIRCLE);
    }
    if (maxServers > 0) {
      for (double paper : new double[] {PAPER_LOW, PAPER_HIGH}) {
        XYSeries band = chart.addSeries("paper " + paper + "x", new double[] {minServers, maxServers}, new double[] {paper, paper});
        band.setMarker(SeriesMarkers.NONE);
        band.setLineStyle(SeriesLines.DASH_DASH);
        band.setLineColor(java.awt.Color.GRAY);
      }
    }
    return chart;
  }

  /** Writes PNG or SVG, chosen by the file's extension. */
  public static void write(List<StepEstimate> estimates, Path file) throws IOException {
    if (System.getProperty("java.awt.headless") == null) {
      System.setProperty("java.awt.headless", "true"); // servers and CI have no display
    }
    String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
    if (!name.endsWith(".png") && !name.endsWith(".svg")) {
      throw new IllegalArgumentException("plot file must end in .png or .svg: " + file);
    }
    XYChart chart = build(estimates);
    Path parent = file.toAbsolutePath().getParent();
    if (parent != null) {
      Files.createDirectories(parent);
    }
    try (OutputStream out = Files.newOutputStream(file)) {
      if (name.endsWith(".png")) {
        BitmapEncoder.saveBitmap(chart, out, BitmapEncoder.BitmapFormat.PNG);
      } else {
        VectorGraphicsEncoder.saveVectorGraphic(chart, out, VectorGraphicsEncoder.VectorGraphicsFormat.SVG);
      }
    }
  }
}
