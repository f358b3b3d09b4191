package io.distca.dispatcher.plan;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The same greedy as {@link DistcaPlanner}, written the straightforward way: documents sorted as
 * boxed objects with a comparator, and the least loaded server found by scanning all servers for
 * every piece (O(S) instead of O(log S)). It must produce the identical plan; it exists as the
 * baseline the planner's speed is measured against and as a differential test oracle.
 */
public final class ReferenceDistcaPlanner implements Planner {
  private final DistcaPlanner delegate = new DistcaPlanner(ReferenceDistcaPlanner::fillByScanning, "distca-reference");

  @Override
  public Plan plan(PlanInput input) {
    return delegate.plan(input);
  }

  @Override
  public String name() {
    return delegate.name();
  }

  private static int fillByScanning(Placement placement, SplitStyle style) {
    Documents docs = placement.docs;
    List<Integer> order = new ArrayList<>();
    for (int doc = 0; doc < docs.count; doc++) {
      if (docs.length[doc] > 0) {
        order.add(doc);
      }
    }
    order.sort(Comparator.<Integer>comparingInt(doc -> docs.length[doc]).reversed().thenComparing(doc -> doc));
    DocumentFiller filler = new DocumentFiller(placement, style);
    for (int doc : order) {
      filler.start(doc);
      int leastLoadedOfAll = leastLoaded(placement, new boolean[placement.serverCount()]);
      if (!filler.placeWholeIfItFits(leastLoadedOfAll)) {
        int roomiest = 0;
        for (int s = 1; s < placement.serverCount(); s++) {
          if (placement.cap[s] - placement.load[s] > placement.cap[roomiest] - placement.load[roomiest]) {
            roomiest = s;
          }
        }
        if (roomiest != leastLoadedOfAll) {
          filler.placeWholeIfItFits(roomiest);
        }
      }
      while (!filler.done()) {
        boolean[] refused = new boolean[placement.serverCount()];
        boolean placed = false;
        boolean first = true;
        while (!placed) {
          int leastLoaded = leastLoaded(placement, refused);
          if (leastLoaded < 0) {
            return doc;
          }
          placed = filler.placeOn(leastLoaded, first);
          refused[leastLoaded] = !placed;
          first = false;
        }
      }
    }
    return -1;
  }

  private static int leastLoaded(Placement placement, boolean[] refused) {
    int leastLoaded = -1;
    for (int s = 0; s < placement.serverCount(); s++) {
      if (!refused[s] && (leastLoaded < 0 || placement.relativeLoad(s) < placement.relativeLoad(leastLoaded))) {
        leastLoaded = s;
      }
    }
    return leastLoaded;
  }
}
