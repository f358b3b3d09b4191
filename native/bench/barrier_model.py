"""A model of the warp-specialized d64/d128 backward's mbarrier hand-offs (bwd_ws_sm90.cuh), checked
over every interleaving of its actors: the producer's stage ring, the claiming warps of distca_attn.h
section 8 (claims off the consumers' path), the two consumer warpgroups' late-announced dQ tiles and
the dQ thread's reduce-adds, for one CTA's walk over a few key tiles. It finds deadlocks and parity
waits that name a phase other than the barrier's current one or the one before it (an mbarrier parity
wait passes iff the barrier's current phase has the other parity, so such a wait passes early or
waits for a later phase).

Two variants the kernel has: two dQ buffers a warpgroup (64-row steps) and one (128-row steps,
distca_attn_bwd_ws_q128_*: NOTES v81), and two that hung on the GPU while v81 was built (--broken):
one buffer with the wait for the previous step's reduce-add at the step's start (before the late
announcement of that step's tile), and one buffer whose dQ barriers complete a phase every step.

    python3 native/bench/barrier_model.py            # the kernel's variants: exit 0 iff they are sound
    python3 native/bench/barrier_model.py --broken   # the broken ones: exit 0 iff each is caught
"""
import argparse
import sys

S = 2  # stages of the Q/dO ring (BwdWsConfig::kStages), one claiming warp each


# The variants: (one dQ buffer a warpgroup, dQ barriers with a phase a step, the consumers' wait for
# the previous step's reduce-add at the step's start, the claiming warps' waits as steps back)
VARIANTS = {
    "two-buffers": (False, False, False, (2,)),                  # 64-row steps (v52-v80)
    "one-buffer": (True, False, False, (2,)),                    # 128-row steps, as kept (v81)
    "broken-wait-at-start": (True, True, True, (1,)),            # v81's first try: hung at once
    "broken-per-step-barriers": (True, True, False, (3, 2)),     # v81's second: hung on large groups
}


def programs(tiles, variant):
    """Each actor's program: a list of ("wait", barrier, phase) / ("arrive", barrier). A wait names
    the phase it means; check() compares its parity wait with that phase's completion.
    tiles: the steps of each key tile of the CTA's walk (0: a tile no query tile sees)."""
    one_buffer, per_step, wait_at_start, claim_backs = VARIANTS[variant]
    steps = sum(tiles)

    def free(w, it):  # (barrier, phase) that step it's reduce-add for warpgroup w completes
        return (f"free{w}", it) if per_step else (f"free{w}.{it & 1}", it >> 1)

    def staged(w, it):  # (barrier, phase) that announces step it's staged tile of warpgroup w
        return (f"staged{w}", it) if per_step else (f"staged{w}.{it & 1}", it >> 1)

    prog = {"producer": [], "claim0": [], "claim1": [], "dq": [], "wg0": [], "wg1": []}
    for it in range(steps):
        s = it % S
        if it >= S:
            prog["producer"].append(("wait", f"empty{s}", it // S - 1))
        prog["producer"].append(("arrive", f"full{s}"))
        for back in claim_backs:  # the dQ thread is done with step it - back (its claimed wait with it)
            if it >= back:
                prog[f"claim{s}"].append(("wait",) + free(1, it - back))
        prog[f"claim{s}"].append(("arrive", f"claimed{s}"))
    for w in range(2):
        p = prog[f"wg{w}"]
        it = 0
        unannounced = None
        for n in tiles:
            for _ in range(n):
                s = it % S
                p.append(("wait", f"full{s}", it // S))
                if not one_buffer and it >= 2:
                    p.append(("wait",) + free(w, it - 2))
                if wait_at_start and it >= 1:
                    p.append(("wait",) + free(w, it - 1))
                if unannounced is not None:  # phase A done: the previous step's tile announced
                    p.append(("arrive", staged(w, unannounced)[0]))
                    unannounced = None
                p.append(("arrive", f"empty{s}"))  # store_dq: the stage released first
                if one_buffer and not wait_at_start and it >= 1:
                    p.append(("wait",) + free(w, it - 1))  # the one buffer read by the last reduce-add
                unannounced = it  # staged, announced after the next phase A or at the tile's end
                it += 1
            if unannounced is not None:
                p.append(("arrive", staged(w, unannounced)[0]))
                unannounced = None
            # dK/dV leave through the dQ buffers: every reduce-add so far has read them
            if per_step:
                if it >= 1:
                    p.append(("wait",) + free(w, it - 1))
            else:
                for b in range(2):
                    uses = (it + 1 - b) >> 1
                    if uses > 0:
                        p.append(("wait", f"free{w}.{b}", uses - 1))
        p.append(("arrive", staged(w, it)[0]))  # the stop marker, on the step that did not come
    for it in range(steps):
        for w in range(2):
            prog["dq"].append(("wait",) + staged(w, it))
            if w == 0:
                prog["dq"].append(("wait", f"claimed{it % S}", it // S))
            prog["dq"].append(("arrive", free(w, it)[0]))
    prog["dq"].append(("wait",) + staged(0, steps))  # the stop marker
    return prog


def barriers(variant):
    """Barrier name -> arrivals a phase (each actor arrives once for all of its threads)."""
    counts = {}
    for s in range(S):
        counts[f"full{s}"] = 1     # the producer (claims off the consumers' path)
        counts[f"empty{s}"] = 2    # both consumer warpgroups
        counts[f"claimed{s}"] = 1  # the stage's claiming warp
    for w in range(2):
        for name in (f"staged{w}", f"free{w}", f"staged{w}.0", f"staged{w}.1", f"free{w}.0", f"free{w}.1"):
            counts[name] = 1
    return counts


def check(tiles, variant):
    """Every interleaving of the actors (depth-first over states). Returns a list of problems."""
    prog = programs(tiles, variant)
    names = sorted(prog)
    problems = {}  # message -> None, in the order found
    seen = set()
    counts = barriers(variant)
    start = (tuple(0 for _ in names), tuple(sorted((k, 0, 0) for k in counts)))
    stack = [start]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        pcs, bar_state = state
        bars = {k: [arrived, done] for k, arrived, done in bar_state}
        moved = False
        for i, name in enumerate(names):
            if pcs[i] == len(prog[name]):
                continue
            op = prog[name][pcs[i]]
            nbars = {k: list(v) for k, v in bars.items()}
            if op[0] == "wait":
                _, bar, phase = op
                done = nbars[bar][1]
                if done & 1 == phase & 1:  # the current phase has the awaited parity: blocked
                    if done > phase:
                        problems.setdefault(f"{name} waits for phase {phase} of {bar}, which completed "
                                            f"{done - phase} phase(s) ago: it waits for phase {done} instead")
                    continue
                if done <= phase:
                    problems.setdefault(f"{name} passes its wait for phase {phase} of {bar} at phase {done}: early")
                    continue
            else:
                bar = op[1]
                nbars[bar][0] += 1
                if nbars[bar][0] == counts[bar]:
                    nbars[bar] = [0, nbars[bar][1] + 1]
            moved = True
            npcs = pcs[:i] + (pcs[i] + 1,) + pcs[i + 1:]
            stack.append((npcs, tuple(sorted((k, v[0], v[1]) for k, v in nbars.items()))))
        if not moved and any(pcs[i] < len(prog[n]) for i, n in enumerate(names)):
            blocked = ", ".join(f"{n} at {prog[n][pcs[i]]}" for i, n in enumerate(names) if pcs[i] < len(prog[n]))
            problems.setdefault(f"deadlock: {blocked}")
    return list(problems), len(seen)


WALKS = ([3], [1, 2], [2, 0, 3], [4, 1], [6, 2], [1, 1, 1, 1, 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broken", action="store_true", help="the variants that hung: each must be caught")
    args = ap.parse_args()
    variants = [v for v in VARIANTS if v.startswith("broken") == args.broken]
    ok = True
    for variant in variants:
        found = []
        states = 0
        for tiles in WALKS:
            problems, n = check(tiles, variant)
            states += n
            found += [f"  key tiles of {tiles} steps: {p}" for p in problems[:2]]
        print(f"{variant}: {states} states, {'sound' if not found else 'problems:'}")
        for line in found:
            print(line)
        ok = ok and (bool(found) if args.broken else not found)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
