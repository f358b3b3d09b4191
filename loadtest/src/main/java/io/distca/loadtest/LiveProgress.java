package io.distca.loadtest;

import java.util.Locale;
import java.util.function.Supplier;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * The live progress bar (me.tongfei:progressbar, on standard error): layer calls done against the
 * total for a step count, or measured time against the duration, with the current tokens/s and
 * the library's ETA. Draws nothing when the console is not a terminal (or when switched off), so
 * logs and pipes stay clean.
 */
final class LiveProgress implements AutoCloseable {
  private final ProgressBar bar;
  private boolean closed;

  /** What the bar shows: progress in its unit, and the line of text beside it. */
  record Snapshot(long progress, String message) {}

  private LiveProgress(ProgressBar bar) {
    this.bar = bar;
  }

  /** A bar when {@code mode} is "on", or "auto" and the console is a terminal; else one that draws nothing. */
  static LiveProgress start(String mode, String task, long max, String unit) {
    boolean show = mode.equals("on") || (mode.equals("auto") && System.console() != null);
    if (!show) {
      return new LiveProgress(null);
    }
    ProgressBar bar = new ProgressBarBuilder()
        .setTaskName(task)
        .setInitialMax(max)
        .setUnit(" " + unit, 1)
        .setStyle(ProgressBarStyle.COLORFUL_UNICODE_BLOCK)
        .setUpdateIntervalMillis(250)
        .build();
    return new LiveProgress(bar);
  }

  boolean visible() {
    return bar != null;
  }

  void update(Supplier<Snapshot> snapshot) {
    if (bar == null) {
      return;
    }
    Snapshot s = snapshot.get();
    bar.stepTo(Math.min(bar.getMax(), s.progress()));
    bar.setExtraMessage(s.message());
  }

  static String tokensPerSecond(double rate) {
    return String.format(Locale.ROOT, "%,.0f tok/s", rate);
  }

  @Override
  public synchronized void close() {
    if (bar != null && !closed) {
      closed = true;
      bar.close();
    }
  }
}
