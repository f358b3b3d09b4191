package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.Test;

class CopyListTest {

  /** Scattered copies of random lengths, split over 1 to 7 threads, land exactly as one memcpy each would. */
  @Test
  void splittingAcrossThreadsCopiesEveryByteExactlyOnce() {
    Random random = new Random(3);
    int bytes = 6 << 20;
    long source = MemoryUtil.allocateMemory(bytes);
    long destination = MemoryUtil.allocateMemory(bytes);
    try {
      byte[] pattern = new byte[bytes];
      random.nextBytes(pattern);
      MemoryUtil.copyToMemory(pattern, 0, source, bytes);
      for (int threads = 1; threads <= 7; threads++) {
        MemoryUtil.setMemory(destination, bytes, (byte) 0);
        CopyList copies = new CopyList();
        byte[] expected = new byte[bytes];
        // Copy pieces of the source to shuffled places: piece p of length len goes to a distinct slot.
        int position = 0;
        int slot = bytes;
        while (position < bytes / 2) {
          int len = Math.min(1 + random.nextInt(300_000), bytes / 2 - position);
          slot -= len;
          copies.add(source + position, destination + slot, len);
          System.arraycopy(pattern, position, expected, slot, len);
          position += len;
        }
        copies.add(source, destination, 0);
        try (ParallelCopier copier = new ParallelCopier(threads)) {
          copier.run(copies);
        }
        byte[] actual = new byte[bytes];
        MemoryUtil.copyFromMemory(destination, actual, 0, bytes);
        assertArrayEquals(expected, actual, "threads " + threads);
        assertEquals(bytes / 2, copies.totalBytes());
      }
    } finally {
      MemoryUtil.freeMemory(source);
      MemoryUtil.freeMemory(destination);
    }
  }

  @Test
  void rangesSplitCopiesAtTheirEdges() {
    CopyList copies = new CopyList();
    copies.add(1000, 5000, 10);
    copies.add(2000, 6000, 5);
    StringBuilder log = new StringBuilder();
    copies.copyRange(7, 12, (s, d, n) -> log.append(s).append("->").append(d).append(':').append(n).append(' '));
    assertEquals("1007->5007:3 2000->6000:2 ", log.toString());
  }

  @Test
  void prefixesMapToDestinationAndSourceEnds() {
    CopyList copies = new CopyList();
    copies.add(100, 1000, 10);
    copies.add(200, 1010, 5);
    copies.add(300, 2000, 20);
    assertEquals(1001, copies.destinationEnd(1));
    assertEquals(1010, copies.destinationEnd(10), "the end of the first copy, not the start of the next");
    assertEquals(1015, copies.destinationEnd(15));
    assertEquals(2020, copies.destinationEnd(35));
    assertThrows(IllegalArgumentException.class, () -> copies.destinationEnd(0));
    assertThrows(IllegalArgumentException.class, () -> copies.destinationEnd(36));

    assertEquals(0, copies.positionBelowSource(100));
    assertEquals(4, copies.positionBelowSource(104));
    assertEquals(10, copies.positionBelowSource(150), "between copies: the whole first copy");
    assertEquals(15, copies.positionBelowSource(300));
    assertEquals(22, copies.positionBelowSource(307));
    assertEquals(35, copies.positionBelowSource(10_000));
    assertEquals(0, new CopyList().positionBelowSource(5));
  }

  @Test
  void badArgumentsAreNamed() {
    assertThrows(IllegalArgumentException.class, () -> new CopyList().add(0, 0, -1));
    assertThrows(IllegalArgumentException.class, () -> new ParallelCopier(0));
  }
}
