package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.arrow.memory.util.MemoryUtil;
import org.junit.jupiter.api.Test;

class GrowOnlyArenaTest {
  static final long MIB = 1 << 20;

  @Test
  void reservationsWithinCapacityAllocateNothing() {
    HostMemory memory = new HostMemory(Long.MAX_VALUE);
    try (GrowOnlyArena<HostMemory.Block> arena = new GrowOnlyArena<>("test", memory, 0, 2 * MIB)) {
      HostMemory.Block first = arena.reserve(3 * MIB);
      assertTrue(first.bytes() >= 3 * MIB && first.bytes() % (2 * MIB) == 0, "rounded to the granularity");
      for (int i = 0; i < 100; i++) {
        assertSame(first, arena.reserve(1 + (i * 31L * 1024) % (3 * MIB)));
      }
      assertEquals(1, arena.allocations());
      MemoryUtil.putLong(first.address() + first.bytes() - 8, 42L);
      assertEquals(42L, MemoryUtil.getLong(first.address() + first.bytes() - 8), "the whole block is usable");
    }
    assertEquals(0, memory.liveBytes.get(), "close frees the block");
  }

  @Test
  void growthOverAllocatesSoThatRisingSizesReallocateRarely() {
    HostMemory memory = new HostMemory(Long.MAX_VALUE);
    try (GrowOnlyArena<HostMemory.Block> arena = new GrowOnlyArena<>("test", memory, 0, 2 * MIB)) {
      for (long size = MIB; size <= 200 * MIB; size += MIB) {
        assertTrue(arena.reserve(size).bytes() >= size);
      }
      // 1.25x growth from 2 MiB to 200 MiB: about log(100)/log(1.25) ~ 21 steps, not 200.
      assertTrue(arena.allocations() <= 25, "allocations: " + arena.allocations());
      assertEquals(arena.capacity(), memory.liveBytes.get(), "only the current block is alive");
    }
    assertEquals(0, memory.liveBytes.get());
  }

  @Test
  void whenTheGenerousSizeDoesNotFitTheExactSizeIsTried() {
    HostMemory memory = new HostMemory(100 * MIB);
    try (GrowOnlyArena<HostMemory.Block> arena = new GrowOnlyArena<>("test", memory, 0, 2 * MIB)) {
      assertEquals(100 * MIB, arena.reserve(100 * MIB).bytes());
      assertEquals(1, memory.allocations.get(), "the generous 1.25x try failed, the exact size fit");
      CudaCallException e = assertThrows(CudaCallException.class, () -> arena.reserve(101 * MIB));
      assertEquals("CUDA_ERROR_OUT_OF_MEMORY", e.errorName());
      assertTrue(e.getMessage().contains("arena test"), e.getMessage());
      assertEquals(0, arena.capacity(), "a failed growth leaves no half-state");
      assertTrue(arena.reserve(MIB).bytes() >= MIB, "and the arena stays usable");
    }
    assertEquals(0, memory.liveBytes.get());
  }

  @Test
  void initialSizeIsAllocatedUpFrontAndCloseIsIdempotent() {
    HostMemory memory = new HostMemory(Long.MAX_VALUE);
    GrowOnlyArena<HostMemory.Block> arena = new GrowOnlyArena<>("test", memory, 5 * MIB, 2 * MIB);
    assertEquals(6 * MIB, arena.capacity());
    arena.close();
    arena.close();
    assertEquals(0, memory.liveBytes.get());
    assertThrows(IllegalStateException.class, () -> arena.reserve(1));
  }

  @Test
  void badArgumentsAreNamed() {
    HostMemory memory = new HostMemory(Long.MAX_VALUE);
    assertThrows(IllegalArgumentException.class, () -> new GrowOnlyArena<>("test", memory, 0, 3));
    assertThrows(IllegalArgumentException.class, () -> new GrowOnlyArena<>("test", memory, -1, 2 * MIB));
    try (GrowOnlyArena<HostMemory.Block> arena = new GrowOnlyArena<>("test", memory, 0, 2 * MIB)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> arena.reserve(-5));
      assertTrue(e.getMessage().contains("negative"), e.getMessage());
    }
  }

  @Test
  void layoutAlignsEveryBufferAndGivesEmptyBuffersDistinctOffsets() {
    ArenaLayout layout = new ArenaLayout();
    long a = layout.add(10);
    long b = layout.add(0);
    long c = layout.add(257);
    long d = layout.add(256);
    assertEquals(0, a);
    assertEquals(256, b);
    assertEquals(512, c);
    assertEquals(1024, d);
    assertEquals(1280, layout.totalBytes());
    assertThrows(IllegalArgumentException.class, () -> layout.add(-1));
  }
}
