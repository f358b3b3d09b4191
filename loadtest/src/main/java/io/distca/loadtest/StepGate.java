package io.distca.loadtest;

import java.util.concurrent.Phaser;
import java.util.function.LongPredicate;

/**
 * Keeps the rank threads in lockstep, as data-parallel training keeps its ranks: every step starts
 * when all ranks are ready (their inputs generated, the previous step's spot checks done) and ends
 * when the slowest rank has finished all its layers. So a step's time is the slowest rank's time
 * and covers nothing but the cluster's work. The last rank to arrive at a start decides whether
 * there is another step; a rank that fails leaves, and the others carry on without it.
 */
final class StepGate {
  private final Phaser phaser;
  private final LongPredicate another;
  private final StepListener listener;
  private volatile long startNanos;
  private volatile long step = -1;
  private volatile boolean stopped;

  /** Told when steps start and end, by the thread that completes the barrier. */
  interface StepListener {
    void started(long step, long nowNanos);

    void ended(long step, long startNanos, long endNanos);
  }

  /**
   * @param parties  the rank threads
   * @param another  whether step n (0-based) should run; asked once per step
   */
  StepGate(int parties, LongPredicate another, StepListener listener) {
    this.another = another;
    this.listener = listener;
    this.phaser = new Phaser(parties) {
      @Override
      protected boolean onAdvance(int phase, int registered) {
        long now = System.nanoTime();
        if (phase % 2 == 0) {
          long next = step + 1;
          if (stopped || registered == 0 || !another.test(next)) {
            stopped = true;
          } else {
            step = next;
            startNanos = now;
            listener.started(next, now);
          }
        } else {
          listener.ended(step, startNanos, now);
        }
        return registered == 0;
      }
    };
  }

  /** Waits for every rank; returns the step they start together, or -1 when the run is over. */
  long begin() {
    phaser.arriveAndAwaitAdvance();
    return stopped ? -1 : step;
  }

  /** Waits until every rank has finished the step. */
  void end() {
    phaser.arriveAndAwaitAdvance();
  }

  /** A rank that cannot go on leaves; its arrival at the current barrier no longer holds the others. */
  void leave() {
    phaser.arriveAndDeregister();
  }

  /** Ends the run after the step under way. */
  void stop() {
    stopped = true;
  }
}
