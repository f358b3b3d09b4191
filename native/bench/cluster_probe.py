"""Checks, on the GPU, what a two-CTA cluster kernel launched the JCuda way would rest on
(cluster_probe.cu): a compile-time cluster size honoured by a plain cuLaunchKernel, the cluster
special registers, a store into the peer CTA's shared memory, one bulk copy multicast into both
CTAs' shared memory completing each CTA's own mbarrier, the whole persistent grid resident as
clusters, and (distca_cluster_ring_probe) a two-stage ring of tensor-map loads multicast to both CTAs
whose stages each CTA's consumers release on both CTAs' empty barriers. Prints what it found and
exits 1 on any mismatch.

    nvcc -cubin -arch=sm_90a -O3 -o native/build/cluster_probe.cubin native/bench/cluster_probe.cu
    python3 native/bench/cluster_probe.py --cubin native/build/cluster_probe.cubin   (on the GPU host)
"""
import argparse
import struct
import sys

import torch
from cupy.cuda import driver

from distca_host import _launch, _tensor_map  # (section 7's tensor maps: [rows, heads, HD], 128-byte swizzle)

WORDS = 4 + 4096 // 4  # per CTA: rank, CTAs in the cluster, cluster id, the peer's store, then the copy
# CUfunction_attribute: the compile-time cluster size and whether a launch must set one
ATTRS = {"required cluster width": 11, "required cluster height": 12, "required cluster depth": 13,
         "cluster size must be set": 10}


def launch(fn, grid, out, src, arrived, smem):
    arrived.zero_()
    params = struct.pack("<QQQ", out.data_ptr(), src.data_ptr(), arrived.data_ptr())  # ProbeParams
    _launch(fn, grid, 128, smem, params, torch.cuda.current_stream().cuda_stream)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cubin", default="native/build/cluster_probe.cubin")
    ap.add_argument("--clusters", type=int, default=66, help="clusters of two CTAs to launch (66: one CTA per SM on 132)")
    ap.add_argument("--ring-tiles", type=int, default=64, help="tiles each cluster's ring loads (two stages)")
    ap.add_argument("--smem", type=int, default=200 * 1024,
                    help="dynamic shared memory per CTA (200 KiB: one CTA per SM, as the persistent kernels)")
    args = ap.parse_args()
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the primary context, current on this thread
    with open(args.cubin, "rb") as f:
        module = driver.moduleLoadData(f.read())
    fn = driver.moduleGetFunction(module, "distca_cluster_probe")
    driver.funcSetAttribute(fn, 8, args.smem)  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    for name, attr in ATTRS.items():
        try:
            print(f"{name}: {driver.funcGetAttribute(attr, fn)}")
        except driver.CUDADriverError as e:
            print(f"{name}: not reported ({e})")
    src = torch.randint(-2**31, 2**31 - 1, (1024,), dtype=torch.int32, device="cuda")
    grid = 2 * args.clusters
    out = torch.full((grid * WORDS + grid,), -7, dtype=torch.int32, device="cuda")
    arrived = torch.zeros(1, dtype=torch.int32, device="cuda")
    launch(fn, grid, out, src, arrived, args.smem)
    torch.cuda.synchronize()
    resident = int(out[grid * WORDS:].sum())
    o = out[:grid * WORDS].view(grid, WORDS).cpu()
    s = src.cpu()
    bad = []
    for b in range(grid):
        rank, nrank, cid, box = (int(v) for v in o[b, :4])
        # block b's cluster: which blocks pair is the hardware's; the peer's store names the peer
        if nrank != 2 or rank not in (0, 1) or box < 0 or box >= grid or box == b:
            bad.append(f"block {b}: rank {rank} of {nrank}, cluster {cid}, peer's store {box}")
            continue
        peer = o[box, :4]
        if int(peer[3]) != b or int(peer[2]) != cid or int(peer[0]) != 1 - rank:
            bad.append(f"block {b} (rank {rank}, cluster {cid}) and block {box} (rank {int(peer[0])}, "
                       f"cluster {int(peer[2])}, its peer's store {int(peer[3])}) do not pair")
        if not torch.equal(o[b, 4:], s):
            wrong = int((o[b, 4:] != s).sum())
            bad.append(f"block {b}: {wrong} of 1024 words of the multicast copy wrong")
    pairs = sorted({tuple(sorted((b, int(o[b, 3])))) for b in range(grid)})
    consecutive = all(a + 1 == c and a % 2 == 0 for a, c in pairs)
    print(f"{grid} CTAs of {args.smem} bytes of dynamic shared memory: {resident} saw the whole grid resident at once")
    if resident != grid:
        bad.append(f"only {resident} of {grid} CTAs saw the whole grid resident")
    print(f"{grid} CTAs in {len(pairs)} clusters of 2 (blocks paired as 2k, 2k + 1: {consecutive}); "
          f"cluster ids {sorted({int(v) for v in o[:, 2]})[:4]}...; "
          f"multicast copy received by {sum(1 for b in range(grid) if torch.equal(o[b, 4:], s))} of {grid} CTAs")
    # a grid that is no multiple of the cluster size: what the driver says
    try:
        launch(fn, grid - 1, out, src, arrived, args.smem)
        torch.cuda.synchronize()
        print(f"a grid of {grid - 1} CTAs: launched (unexpected)")
        bad.append("an odd grid was not refused")
    except driver.CUDADriverError as e:
        print(f"a grid of {grid - 1} CTAs: refused at launch: {e}")
    bad += ring(module, args.clusters, args.ring_tiles)
    if bad:
        print("MISMATCH:\n  " + "\n  ".join(bad[:20]))
        sys.exit(1)
    print("cluster probe: PASS")


def ring(module, clusters, n):
    """distca_cluster_ring_probe: every CTA's sums of its cluster's n tiles, exactly (integer values)."""
    fn = driver.moduleGetFunction(module, "distca_cluster_ring_probe")
    grid = 2 * clusters
    src = torch.randint(-1000, 1001, (clusters * n * 64, 1, 32), device="cuda").float()
    tmap = _tensor_map(src, box_rows=64)
    out = torch.full((grid, n), float("nan"), device="cuda")
    params = tmap + struct.pack("<Qi", out.data_ptr(), n).ljust(64, b"\0")  # RingParams: 192 bytes
    _launch(fn, grid, 64, 0, params, torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    want = src.view(clusters, n, 64 * 32).sum(dim=2, dtype=torch.float64)  # exact: |sum| < 2^24
    got = out.view(clusters, 2, n).double()
    wrong = int((got != want.unsqueeze(1)).sum())
    print(f"ring of multicast tensor-map loads: {grid} CTAs x {n} tiles of 8 KiB, "
          f"{grid * n - wrong} of {grid * n} tile sums right")
    return [f"ring: {wrong} of {grid * n} tile sums wrong"] if wrong else []


if __name__ == "__main__":
    main()
