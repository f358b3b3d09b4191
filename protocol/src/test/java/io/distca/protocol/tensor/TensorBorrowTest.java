package io.distca.protocol.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

class TensorBorrowTest {

  @Test
  void aBorrowedViewSharesTheElementsAndClosingItReleasesNothing() {
    try (BufferAllocator a = new RootAllocator(); Tensor whole = Tensor.allocate(a, DType.FP32, 6, 2)) {
      Tensor rows = whole.sliceRows(2, 5); // a view with a byte offset
      Tensor view = rows.borrow();
      assertArrayEquals(rows.shape(), view.shape());
      assertEquals(rows.address(), view.address());
      view.setFloat(3, 7f);
      assertEquals(7f, whole.getFloat(2 * 2 + 3));
      long held = a.getAllocatedMemory();
      view.close();
      assertEquals(held, a.getAllocatedMemory(), "the view released memory it only borrowed");
      assertEquals(7f, rows.getFloat(3));
    }
  }
}
