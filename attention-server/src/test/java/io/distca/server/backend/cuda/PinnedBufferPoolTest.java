package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The pinned pool's bookkeeping over plain host memory ({@link HostMemory}) in place of cuMemHostAlloc. */
class PinnedBufferPoolTest {
  private static final long MIB = 1L << 20;

  private final HostMemory memory = new HostMemory(Long.MAX_VALUE);
  private final AtomicInteger drained = new AtomicInteger();

  @AfterEach
  void nothingLeft() {
    assertEquals(0, memory.liveBytes.get(), "every buffer freed");
  }

  private PinnedBufferPool pool(long cap) {
    return new PinnedBufferPool("test", memory, cap, drained::incrementAndGet);
  }

  @Test
  void sizeClassesWasteAtMostAQuarter() {
    assertEquals(MIB, PinnedBufferPool.classBytes(1));
    assertEquals(MIB, PinnedBufferPool.classBytes(MIB));
    assertEquals(5 * MIB / 4, PinnedBufferPool.classBytes(MIB + 1));
    assertEquals(2 * MIB, PinnedBufferPool.classBytes(2 * MIB));
    assertEquals(80 * MIB, PinnedBufferPool.classBytes(70 * MIB)); // 64 MiB * 5/4
    assertEquals(192 * MIB, PinnedBufferPool.classBytes(192 * MIB)); // 128 MiB * 6/4: exact
    for (long n = MIB; n < (1L << 34); n = n * 13 / 7 + 12345) {
      long c = PinnedBufferPool.classBytes(n);
      assertTrue(c >= n && c <= n * 1.25 + 1, n + " -> " + c);
      assertEquals(c, PinnedBufferPool.classBytes(c), "a class size is its own class");
    }
    assertThrows(IllegalArgumentException.class, () -> pool(0));
  }

  @Test
  void releasedBuffersAreReusedWithoutAllocating() {
    PinnedBufferPool pool = pool(1L << 30);
    PinnedBufferPool.Lease a = pool.acquire(70 * MIB);
    assertNotNull(a);
    assertEquals(80 * MIB, a.bytes());
    assertEquals(1, pool.allocations());
    long address = a.address();
    a.release();
    a.release(); // idempotent
    assertEquals(0, pool.leased());
    for (int i = 0; i < 5; i++) {
      PinnedBufferPool.Lease again = pool.acquire(65 * MIB + i);
      assertEquals(address, again.address(), "the same buffer serves the same class");
      again.release();
    }
    assertEquals(1, pool.allocations(), "warm: no allocation per request");
    assertEquals(5, pool.hits());
    assertEquals(0, pool.misses());
    assertEquals(80 * MIB, pool.bytes());
    assertEquals(0, pool.close());
    assertEquals(1, drained.get());
  }

  @Test
  void aLargerIdleBufferOfAtMostTwiceTheSizeServes() {
    PinnedBufferPool pool = pool(1L << 30);
    PinnedBufferPool.Lease big = pool.acquire(100 * MIB);
    big.release();
    PinnedBufferPool.Lease smaller = pool.acquire(60 * MIB); // class 64 MiB; 112 MiB is within 2x
    assertEquals(big.address(), smaller.address());
    smaller.release();
    PinnedBufferPool.Lease tiny = pool.acquire(10 * MIB); // 112 MiB is more than twice 10 MiB: a new buffer
    assertTrue(tiny.address() != big.address());
    tiny.release();
    assertEquals(2, pool.allocations());
    pool.close();
  }

  @Test
  void theCapIsNeverExceededAndIdleBuffersOfOtherClassesMakeRoom() {
    PinnedBufferPool pool = pool(100 * MIB);
    PinnedBufferPool.Lease a = pool.acquire(40 * MIB);
    PinnedBufferPool.Lease b = pool.acquire(40 * MIB);
    assertNotNull(a);
    assertNotNull(b);
    assertNull(pool.acquire(40 * MIB), "80 + 40 MiB is over the cap");
    assertEquals(1, pool.misses());
    assertNull(pool.acquire(200 * MIB), "larger than the whole cap");
    assertEquals(2, pool.misses());
    assertTrue(pool.bytes() <= 100 * MIB);

    a.release();
    b.release();
    // Two idle 40 MiB buffers; a 90 MiB request evicts both to fit under the cap.
    PinnedBufferPool.Lease c = pool.acquire(90 * MIB);
    assertNotNull(c);
    assertEquals(2, pool.evictions());
    assertEquals(96 * MIB, pool.bytes());
    assertEquals(96 * MIB, memory.liveBytes.get(), "evicted buffers are freed");
    c.release();
    pool.close();
  }

  @Test
  void aFailedAllocationIsAMissAndReturnsItsReservation() {
    HostMemory small = new HostMemory(10 * MIB);
    PinnedBufferPool pool = new PinnedBufferPool("small", small, 1L << 30, null);
    assertNull(pool.acquire(20 * MIB), "cuMemHostAlloc failing is a fallback, not an error");
    assertEquals(1, pool.misses());
    assertEquals(1, pool.allocationFailures());
    assertEquals(0, pool.bytes());
    assertEquals(0, pool.leased());
    PinnedBufferPool.Lease ok = pool.acquire(5 * MIB);
    assertNotNull(ok);
    ok.release();
    pool.close();
    assertEquals(0, small.liveBytes.get());
  }

  @Test
  void regionLookupCoversLeasedAndIdleBuffersOnly() {
    PinnedBufferPool pool = pool(1L << 30);
    PinnedBufferPool.Lease a = pool.acquire(3 * MIB);
    PinnedBufferPool.Lease b = pool.acquire(MIB);
    long at = a.address();
    assertTrue(pool.contains(at, a.bytes()));
    assertTrue(pool.contains(at + 100, 1000));
    assertFalse(pool.contains(at + a.bytes() - 10, 11), "runs past the end");
    assertFalse(pool.contains(at - 1, 10), "starts before");
    assertTrue(pool.contains(b.address(), MIB));
    a.release();
    assertTrue(pool.contains(at, 10), "idle buffers stay pinned");
    long heap = memory.allocate(MIB, "not pinned").address();
    try {
      assertFalse(pool.contains(heap, 8));
    } finally {
      org.apache.arrow.memory.util.MemoryUtil.freeMemory(heap);
      memory.liveBytes.addAndGet(-MIB);
    }
    b.release();
    pool.close();
    assertFalse(pool.contains(at, 10), "freed on close");
  }

  @Test
  void closeFreesIdleBuffersAtOnceAndLeasedOnesWhenReleased() {
    PinnedBufferPool pool = pool(1L << 30);
    PinnedBufferPool.Lease held = pool.acquire(2 * MIB);
    pool.acquire(4 * MIB).release();
    assertEquals(1, pool.close(), "one buffer still leased");
    assertEquals(0, drained.get(), "not drained while a buffer is out");
    assertEquals(2 * MIB, memory.liveBytes.get(), "the idle one is freed, the leased one is not");
    assertTrue(pool.contains(held.address(), 16), "a leased buffer stays valid after close");
    assertNull(pool.acquire(MIB), "a closed pool serves nothing");
    held.release();
    assertEquals(1, drained.get(), "the last release drains the pool");
    assertEquals(0, pool.bytes());
    assertEquals(0, pool.close());
    assertEquals(1, drained.get(), "drained once");
  }

  @Test
  void concurrentAcquireAndReleaseKeepsTheBooks() throws Exception {
    PinnedBufferPool pool = pool(64 * MIB);
    ExecutorService threads = Executors.newFixedThreadPool(4);
    ConcurrentLinkedQueue<Long> overlaps = new ConcurrentLinkedQueue<>();
    CountDownLatch start = new CountDownLatch(1);
    List<Future<?>> done = new ArrayList<>();
    java.util.Set<Long> inUse = java.util.concurrent.ConcurrentHashMap.newKeySet();
    for (int t = 0; t < 4; t++) {
      int seed = t;
      done.add(threads.submit(() -> {
        start.await();
        java.util.Random r = new java.util.Random(seed);
        for (int i = 0; i < 500; i++) {
          PinnedBufferPool.Lease l = pool.acquire(MIB + r.nextInt(12 << 20));
          if (l != null) {
            if (!inUse.add(l.address())) {
              overlaps.add(l.address());
            }
            assertTrue(pool.bytes() <= 64 * MIB);
            inUse.remove(l.address());
            l.release();
          }
        }
        return null;
      }));
    }
    start.countDown();
    for (Future<?> f : done) {
      f.get();
    }
    threads.shutdown();
    assertTrue(overlaps.isEmpty(), "a buffer was leased twice at once: " + overlaps);
    assertEquals(0, pool.leased());
    assertEquals(2000, pool.hits() + pool.misses() + pool.allocations(), "each request is a hit, a miss or an allocation");
    pool.close();
  }
}
