package io.distca.dispatcher.plan;

/**
 * Indexed binary min-heap of servers ordered by relative load (load / target), or by most free
 * capacity (cap - load) first, ties by server index, so every choice is deterministic. O(log S)
 * per update.
 */
final class ServerHeap {
  private final double[] load;
  private final double[] target;
  /** When set, order by load - cap (most free capacity first) instead of load / target. */
  private final double[] cap;
  private final int[] heap;
  private final int[] position;
  private int size;

  /** Least relative load first. */
  ServerHeap(double[] load, double[] target) {
    this(load, target, null);
  }

  /** Most free capacity ({@code cap - load}) first. */
  static ServerHeap byFreeCapacity(double[] load, double[] cap) {
    return new ServerHeap(load, null, cap);
  }

  private ServerHeap(double[] load, double[] target, double[] cap) {
    this.load = load;
    this.target = target;
    this.cap = cap;
    this.heap = new int[load.length];
    this.position = new int[load.length];
    for (int s = 0; s < load.length; s++) {
      heap[s] = s;
      position[s] = s;
    }
    size = load.length;
    for (int i = size / 2 - 1; i >= 0; i--) {
      siftDown(i);
    }
  }

  boolean isEmpty() {
    return size == 0;
  }

  int peek() {
    return heap[0];
  }

  int poll() {
    int top = heap[0];
    size--;
    if (size > 0) {
      heap[0] = heap[size];
      position[heap[0]] = 0;
      siftDown(0);
    }
    position[top] = -1;
    return top;
  }

  void add(int server) {
    heap[size] = server;
    position[server] = size;
    size++;
    siftUp(size - 1);
  }

  /** Restores order after {@code load[server]} changed. */
  void update(int server) {
    int i = position[server];
    if (i < 0) {
      return;
    }
    siftUp(i);
    siftDown(position[server]);
  }

  private boolean less(int a, int b) {
    double ra = cap == null ? load[a] / target[a] : load[a] - cap[a];
    double rb = cap == null ? load[b] / target[b] : load[b] - cap[b];
    return ra < rb || (ra == rb && a < b);
  }

  private void siftUp(int i) {
    int server = heap[i];
    while (i > 0) {
      int parent = (i - 1) >>> 1;
      if (!less(server, heap[parent])) {
        break;
      }
      heap[i] = heap[parent];
      position[heap[i]] = i;
      i = parent;
    }
    heap[i] = server;
    position[server] = i;
  }

  private void siftDown(int i) {
    int server = heap[i];
    int half = size >>> 1;
    while (i < half) {
      int child = 2 * i + 1;
      int right = child + 1;
      if (right < size && less(heap[right], heap[child])) {
        child = right;
      }
      if (!less(heap[child], server)) {
        break;
      }
      heap[i] = heap[child];
      position[heap[i]] = i;
      i = child;
    }
    heap[i] = server;
    position[server] = i;
  }
}
