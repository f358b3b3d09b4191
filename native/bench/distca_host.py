"""Host side of native/include/distca_attn.h in Python, for the checks and benchmarks.

Mirrors what the JCuda backend does: load the fatbin with the driver API, read the launch
geometry from the module global distca_attn_info_d<HD>, pack slices and segments into fused
buffers, build the descriptor arrays and longest-first work lists, build the parameter blocks
byte by byte and launch through cuLaunchKernel. Tensors are PyTorch tensors; launches go to
PyTorch's current stream.
"""
import ctypes
import math
import os
import struct
from dataclasses import dataclass, field

import torch
from cupy.cuda import driver, runtime

from schedule_policy import (  # the backward's group splits and the work bands (torch-free)
    split_heads, SPLIT_OVERHEAD_STEPS, SPLIT_LEAN_DRAM_BYTES_PER_SM, SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM,
    l2_order_pieces, group_splits, WORK_BANDS_FACTORS, WORK_BANDS_BWD_MIN_HEAD_DIM, band_cuts, work_bands,
    pack_band_ends, bwd_q128)

ABI_VERSION = 6  # distca_attn.h's DISTCA_ATTN_ABI_VERSION, whose parameter blocks this host packs
# images this host can launch: version 1's forward parameter block ends before the O tensor map
# (512 bytes); the host passes version 2's 640 either way, of which such a kernel reads the first 512;
# version 3 adds the warp-specialized forward at head_dim 256 (64-row K/V boxes), which older images
# do not have; version 4 gives it 80-row K/V boxes; version 5 adds the backward's group splits
# (section 9), which this host asks only of images of version 5 and later (for ab.py against older
# images); version 6 gives the warp-specialized backward's dQ workspace its own layout and
# conversion kernel, bwd_post_ws (section 12), which this host launches after those kernels
ABI_VERSIONS = (1, 2, 3, 4, 5, ABI_VERSION)
WORK_HEAD_SHIFT, WORK_HEADS_SHIFT, WORK_BLOCK_MASK = 20, 26, 0xFFFFF  # distca_attn.h section 9
BWD_CHUNK_MIN_GROUP = 5  # distca_attn.h section 10 (DISTCA_BWD_CHUNK_MIN_GROUP)
# common.cuh's head groups of the work order (section 5): the forward pairs its query heads, the
# backward walks its K/V heads one at a time, the chunked backward (section 10, head_dim 128) in pairs
FWD_HEAD_GROUP, BWD_HEAD_GROUP, BWD_CHUNK_HEAD_GROUP = 2, 1, 2
# work_bands' cost of a forward tile change, in key blocks (NOTES v43: ~5,600 cycles beyond a tile's
# blocks, ~2,550 each)
FWD_TILE_OVERHEAD_BLOCKS = 2
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT = 9
FWD_PARAMS = struct.Struct("<7Q5if")       # distca_fwd_params_t, 80 bytes
BWD_PARAMS = struct.Struct("<15Q5ifQ")     # distca_bwd_params_t, 152 bytes
HEAD_DIMS = (64, 128, 256)                 # head dimensions the fatbin has kernels for
INFO = struct.Struct("<16i")               # distca_attn_info_t, 64 bytes
assert FWD_PARAMS.size == 80 and BWD_PARAMS.size == 152 and INFO.size == 64

DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
DEFAULT_FATBIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "distca_attn.fatbin")


@dataclass
class Info:
    head_dim: int
    fwd_block_m: int
    fwd_block_n: int
    fwd_threads: int
    fwd_smem: int
    bwd_block_m: int
    bwd_block_n: int
    bwd_threads: int
    bwd_smem: int
    ew_threads: int
    ew_vec: int
    fwd_ws_threads: int  # 0: no warp-specialized forward in this image
    fwd_ws_smem: int
    bwd_ws_threads: int  # 0: no warp-specialized backward in this image
    bwd_ws_smem: int


@dataclass
class Slice:
    """One query slice (QuerySlice): q_len rows attending keys [kv_start, kv_start+kv_len) of segment."""
    segment: int
    kv_start: int
    kv_len: int
    q_len: int
    causal: bool
    diagonal: int = None  # None: bottom-right (kv_len - q_len)

    def diag(self):
        return self.kv_len - self.q_len if self.diagonal is None else self.diagonal


@dataclass
class Layout:
    """Fused-buffer positions and device descriptor arrays of one batch."""
    q_start: list
    k_start: list  # per segment
    total_q: int
    total_k: int
    slices_dev: torch.Tensor = None
    segments_dev: torch.Tensor = None
    seg_slices_dev: torch.Tensor = None
    fwd_work_dev: torch.Tensor = None
    bwd_work_dev: torch.Tensor = None
    num_fwd_work: int = 0
    num_bwd_work: int = 0
    extra: dict = field(default_factory=dict)
    slice_rows: list = field(default_factory=list)  # (q_len, kv_len, causal) of each slice: schedule_policy.bwd_q128


_libcuda = None


def fwd_ws_key_box_rows(hd, abi=ABI_VERSION):
    """Rows of the warp-specialized forward's K and V boxes: its key blocks (distca_attn.h section 7),
    for an image of ABI version `abi`."""
    if hd == 256:
        return 80 if abi >= 4 else 64
    return 128


def _tensor_map(t, box_rows=128):
    """CUtensorMap (128 bytes) of a [rows, heads, HD] bf16/fp16/fp32 tensor as distca_attn.h section 7
    asks: boxes of 128 bytes of columns x 1 head x box_rows rows, 128-byte swizzle."""
    global _libcuda
    if _libcuda is None:
        _libcuda = ctypes.CDLL("libcuda.so.1")
    rows, heads, hd = t.shape
    esize = t.element_size()
    raw = ctypes.create_string_buffer(256)
    base = (ctypes.addressof(raw) + 127) // 128 * 128
    dims = (ctypes.c_uint64 * 3)(hd, heads, max(1, rows))
    strides = (ctypes.c_uint64 * 2)(hd * esize, heads * hd * esize)
    box = (ctypes.c_uint32 * 3)(128 // esize, 1, box_rows)
    estr = (ctypes.c_uint32 * 3)(1, 1, 1)
    # CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 / FLOAT16 / FLOAT32
    dtype = {torch.bfloat16: 9, torch.float16: 6, torch.float32: 7}[t.dtype]
    rc = _libcuda.cuTensorMapEncodeTiled(ctypes.c_void_p(base), ctypes.c_int(dtype), ctypes.c_uint32(3),
                                         ctypes.c_void_p(t.data_ptr()), dims, strides, box, estr,
                                         ctypes.c_int(0), ctypes.c_int(3), ctypes.c_int(2), ctypes.c_int(0))
    if rc != 0:
        raise RuntimeError(f"cuTensorMapEncodeTiled failed: {rc}")
    return ctypes.string_at(base, 128)


def dram_bytes_per_sm(device=0):
    """The GPU's DRAM bandwidth per SM in bytes/s (memory clock x bus width, double data rate), or
    None where the driver does not say (CudaDevice.dramBytesPerSm in the Java host)."""
    try:  # cudaDevAttrMemoryClockRate (kHz), cudaDevAttrGlobalMemoryBusWidth (bits), cudaDevAttrMultiProcessorCount
        clock_khz, bus_bits, sms = (runtime.deviceGetAttribute(a, device) for a in (36, 37, 16))
    except runtime.CUDARuntimeError:
        return None
    if clock_khz <= 0 or bus_bits <= 0 or sms <= 0:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 / sms


def _launch(fn, grid, threads, smem, param_bytes, stream):
    if grid == 0:
        return
    buf = ctypes.create_string_buffer(param_bytes, len(param_bytes))
    args = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
    driver.launchKernel(fn, grid, 1, 1, threads, 1, 1, smem, stream, ctypes.addressof(args), 0)


class Kernels:
    def __init__(self, fatbin=DEFAULT_FATBIN, ws=True, ctas=None, tile_counter=True, dq_claims=True, bwd_splits=None,
                 bwd_chunks=True, bwd_split_policy=None, work_bands=True, work_band_policy=None, l2_order=True,
                 cost_block_m=None, bwd_q128="auto"):
        """ws=False: distca_attn_fwd_*/bwd_* even where the warp-specialized kernels exist.
        ctas: most CTAs of the persistent warp-specialized kernels, forward and backward (None: one
        per SM; 0: one per tile, i.e. not persistent). tile_counter=False: their static split of the
        tiles instead. dq_claims=False: bwd_pre zeroes the dQ workspace even before the
        warp-specialized backward (distca_attn.h section 8). bwd_splits: the warp-specialized
        backward's group splits (section 9): None as group_splits decides, 1 never, N > 1 every key
        tile N ways (at most the group) where the group has 2..64 heads, -1 the split kernel with
        every key tile's whole group in one work item (its cost alone). bwd_chunks=False: never the
        chunked walk of section 10 (distca_attn_bwd_ws_chunked_*), "always" for every group of 2
        heads or more (to measure), else where the group is large enough and the image has it.
        bwd_split_policy: group_splits' keyword arguments (overhead_steps, pairs_steps, short_max_pieces,
        pairs_max_pieces, lean_dram, uniform, long_steps_per_piece), to measure the policy against
        itself; lean_dram defaults to whether this GPU has less than SPLIT_LEAN_DRAM_BYTES_PER_SM.
        work_bands=False: the persistent kernels' work lists in section 5's order, never in the bands
        of section 11 (work_bands), to measure; "always": in band_cuts' bands of the first factor
        wherever there are any, to test them. work_band_policy: work_bands' keyword arguments (factors,
        most, floor), to measure the policy against itself. l2_order=False: never l2_order_pieces' splits in
        head order (NOTES v79), to measure; "always": every split work list in head order (no bands), at
        any head dim, whoever chose the splits (bwd_splits or the policy), to measure; "narrow": v79's
        bounds of the rule alone (groups of 8-16 heads), to measure. cost_block_m: the query rows of a
        backward step in the cost model instead of the image's bwd_block_m, to measure. bwd_q128: the
        head_dim 64 backward in steps of 128 query rows (distca_attn_bwd_ws_q128_*, section 13) where
        schedule_policy.bwd_q128 takes the batch ("auto"), for every batch without group splits
        ("always", to test it), or never ("never", to measure)."""
        torch.cuda.init()
        self.ws = ws
        self.bwd_splits = bwd_splits
        self.bwd_chunks = bwd_chunks
        self.work_bands = work_bands
        self.work_band_policy = dict(work_band_policy or {})  # work_bands' factors / most / floor, to measure
        self.bwd_split_policy = dict(bwd_split_policy or {})
        self.l2_order = l2_order  # l2_order_pieces' rule (False: group_splits' policy alone, to measure)
        self.cost_block_m = cost_block_m
        if bwd_q128 not in ("auto", "always", "never"):
            raise ValueError(f"bwd_q128: 'auto', 'always' or 'never', not {bwd_q128!r}")
        self.bwd_q128 = bwd_q128
        dev = torch.cuda.current_device()
        self.dram_bytes_per_sm = dram_bytes_per_sm(dev)
        self.bwd_split_policy.setdefault(
            "lean_dram", self.dram_bytes_per_sm is not None and self.dram_bytes_per_sm < SPLIT_LEAN_DRAM_BYTES_PER_SM)
        self.dq_claims = dq_claims
        sms = torch.cuda.get_device_properties(dev).multi_processor_count
        self.ctas = sms if ctas is None else ctas
        self.tile_counter = torch.zeros(1, dtype=torch.int32, device="cuda") if tile_counter else None
        torch.empty(1, device="cuda")  # make the primary context current on this thread
        with open(fatbin, "rb") as f:
            self.module = driver.moduleLoadData(f.read())
        self.info = {}
        self.abi = {}  # head dim -> the image's ABI version
        self._fns = {}
        self._has = {}  # has_kernel's answers
        for hd in HEAD_DIMS:
            try:
                ptr = driver.moduleGetGlobal(self.module, f"distca_attn_info_d{hd}")
            except driver.CUDADriverError as e:
                if "NOT_FOUND" not in str(e):
                    raise
                continue  # the image for this GPU has no kernels for this head dimension
            host = ctypes.create_string_buffer(INFO.size)
            runtime.memcpy(ctypes.addressof(host), ptr, INFO.size, runtime.memcpyDeviceToHost)
            v = INFO.unpack(host.raw)
            if v[0] not in ABI_VERSIONS or v[1] != hd:
                raise RuntimeError(f"fatbin ABI mismatch for d{hd}: {v[:2]}")
            self.info[hd] = Info(*v[1:16])
            self.abi[hd] = v[0]
        if not self.info:
            raise RuntimeError(f"{fatbin} has no distca_attn_info_d<HD> global for this GPU")

    def ctas_per_sm(self, kind, dtype, hd):
        """Resident CTAs per SM of a kernel (occupancy calculator), or None if unavailable."""
        info = self.info[hd]
        threads = info.fwd_threads if kind == "fwd" else info.bwd_threads
        smem = info.fwd_smem if kind == "fwd" else info.bwd_smem
        try:
            return driver.occupancyMaxActiveBlocksPerMultiprocessor(self.fn(kind, dtype, hd), threads, smem)
        except AttributeError:
            return None

    def bwd_ws_kind(self, hq, hkv, dtype, hd, split, lay=None):
        """Which warp-specialized backward runs: bwd_ws_kv with group splits (section 9), else
        bwd_ws_chunked for groups of BWD_CHUNK_MIN_GROUP heads and more where the image has it
        (section 10), else bwd_ws_q128 where schedule_policy.bwd_q128 takes the batch (`lay`'s slices)
        and the image has it (section 13), else bwd_ws. CudaBackend.backwardWsKernel in the Java host
        decides the same."""
        if split:
            return "bwd_ws_kv"
        min_group = 2 if self.bwd_chunks == "always" else BWD_CHUNK_MIN_GROUP
        if self.bwd_chunks and hq >= min_group * hkv and self.has_kernel("bwd_ws_chunked", dtype, hd):
            return "bwd_ws_chunked"
        if self.bwd_q128 != "never" and lay is not None and hd == 64 and \
                (self.bwd_q128 == "always" or bwd_q128(hd, lay.slice_rows, False)) and \
                self.has_kernel("bwd_ws_q128", dtype, hd):
            return "bwd_ws_q128"
        return "bwd_ws"

    def has_kernel(self, kind, dtype, hd):
        """Whether the image has distca_attn_<kind>_<DT>_d<HD> (e.g. bwd_ws_kv: distca_attn.h section 9).
        Remembered, so that a kernel the image lacks (bwd_ws_chunked at head_dim 64) is not looked up
        again at every launch."""
        key = (kind, dtype, hd)
        if key not in self._has:
            try:
                self.fn(kind, dtype, hd)
                self._has[key] = True
            except driver.CUDADriverError as e:
                if "NOT_FOUND" not in str(e):
                    raise
                self._has[key] = False
        return self._has[key]

    def fn(self, kind, dtype, hd):
        name = f"distca_attn_{kind}_{DTYPE_NAMES[dtype]}_d{hd}"
        if name not in self._fns:
            f = driver.moduleGetFunction(self.module, name)
            info = self.info[hd]
            smem = {"fwd": info.fwd_smem, "bwd": info.bwd_smem, "fwd_ws": info.fwd_ws_smem,
                    "bwd_ws": info.bwd_ws_smem, "bwd_ws_kv": info.bwd_ws_smem,
                    "bwd_ws_chunked": info.bwd_ws_smem, "bwd_ws_q128": info.bwd_ws_smem}.get(kind, 0)
            if smem > 48 * 1024:
                driver.funcSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            # all of L1 as shared memory, so that several CTAs of a tile shape fit on an SM
            driver.funcSetAttribute(f, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 100)
            self._fns[name] = f
        return self._fns[name]

    # ---- descriptors --------------------------------------------------------------------------

    def layout(self, seg_lens, slices, hd, device="cuda", order="longest_first"):
        info = self.info[hd]
        k_start, pos = [], 0
        for n in seg_lens:
            k_start.append(pos)
            pos += n
        total_k = pos
        q_start, pos = [], 0
        for s in slices:
            q_start.append(pos)
            pos += s.q_len
        total_q = pos
        rows = []
        for i, s in enumerate(slices):
            assert 0 <= s.kv_start and s.kv_start + s.kv_len <= seg_lens[s.segment], "slice keys outside segment"
            rows.append([q_start[i], s.q_len, k_start[s.segment] + s.kv_start, s.kv_len,
                         1 if s.causal else 0, s.diag(), s.segment, 0])
        lay = Layout(q_start, k_start, total_q, total_k)
        lay.slice_rows = [(s.q_len, s.kv_len, bool(s.causal)) for s in slices]
        lay.slices_dev = torch.tensor(rows or [[0] * 8], dtype=torch.int32, device=device)

        # forward work: (slice, query block), most key blocks first
        fwd = []
        bm, bn = info.fwd_block_m, info.fwd_block_n
        for i, s in enumerate(slices):
            for b in range(math.ceil(s.q_len / bm)):
                last_row = min(s.q_len, (b + 1) * bm) - 1
                n_end = s.kv_len if not s.causal else max(0, min(s.kv_len, last_row + s.diag() + 1))
                fwd.append((math.ceil(n_end / bn), i, b))
        # backward work: (segment, key block), most query rows first
        per_seg = [[] for _ in seg_lens]
        for i, s in enumerate(slices):
            per_seg[s.segment].append(i)
        bwd, seg_rows, seg_slices = [], [], []
        bbn = info.bwd_block_n
        for g, n in enumerate(seg_lens):
            seg_rows.append([k_start[g], n, len(seg_slices), len(per_seg[g])])
            seg_slices.extend(per_seg[g])
            for b in range(math.ceil(n / bbn)):
                kb0, kb1 = b * bbn, min(n, (b + 1) * bbn)
                cost = 0
                for i in per_seg[g]:
                    s = slices[i]
                    j_lo, j_hi = max(0, kb0 - s.kv_start), min(s.kv_len, kb1 - s.kv_start)
                    if s.q_len == 0 or j_lo >= j_hi:
                        continue
                    first = min(s.q_len, max(0, j_lo - s.diag())) if s.causal else 0
                    cost += s.q_len - first
                bwd.append((cost, g, b))
        if order == "longest_first":
            fwd.sort(key=lambda t: -t[0])
            bwd.sort(key=lambda t: -t[0])
        elif order == "reversed":
            fwd.sort(key=lambda t: t[0])
            bwd.sort(key=lambda t: t[0])
        lay.num_fwd_work, lay.num_bwd_work = len(fwd), len(bwd)
        lay.extra["bwd_items"] = bwd  # (cost, segment, key block), for group_splits
        lay.extra["fwd_costs"] = [c for c, _, _ in fwd]  # key blocks, for work_bands
        lay.extra["all_causal"] = bool(slices) and all(s.causal for s in slices)  # group_splits' causal
        lay.fwd_work_dev = torch.tensor([[i, b] for _, i, b in fwd] or [[0, 0]], dtype=torch.int32, device=device)
        lay.bwd_work_dev = torch.tensor([[g, b] for _, g, b in bwd] or [[0, 0]], dtype=torch.int32, device=device)
        lay.segments_dev = torch.tensor(seg_rows or [[0] * 4], dtype=torch.int32, device=device)
        lay.seg_slices_dev = torch.tensor(seg_slices or [0], dtype=torch.int32, device=device)
        return lay

    # ---- launches -----------------------------------------------------------------------------

    def _zeroed_counter(self, stream):
        """The persistent kernels' tile counter, zeroed on `stream` (0: their static split)."""
        if self.tile_counter is None:
            return 0
        runtime.memsetAsync(self.tile_counter.data_ptr(), 0, 4, stream)
        return self.tile_counter.data_ptr()

    def _persistent_grid(self, tiles):
        """distca_attn.h section 2: one CTA per SM, at most one per tile (ctas=0: one per tile)."""
        return min(tiles, self.ctas) if self.ctas else tiles

    def forward(self, lay, q, k, v, o, lse, scale):
        """q, o: [total_q, Hq, D]; k, v: [total_k, Hkv, D]; lse: fp32 [Hq, total_q]."""
        hq, hd = q.shape[1], q.shape[2]
        hkv = k.shape[1]
        info = self.info[hd]
        params = FWD_PARAMS.pack(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr(),
                                 lay.slices_dev.data_ptr(), lay.fwd_work_dev.data_ptr(),
                                 lay.total_q, lay.total_k, hq, hkv, lay.num_fwd_work, scale)
        stream = torch.cuda.current_stream().cuda_stream
        if self.ws and info.fwd_ws_threads:
            # persistent (distca_attn.h sections 2 and 7): one CTA per SM takes tiles from a counter
            # that is 0 at launch
            params += (struct.pack("<Q", self._zeroed_counter(stream))
                       + pack_band_ends(self._fwd_bands(lay, hq, hd)) + bytes(8))
            kv_box = fwd_ws_key_box_rows(hd, self.abi[hd])
            params += _tensor_map(q) + _tensor_map(k, kv_box) + _tensor_map(v, kv_box) + _tensor_map(o)
            _launch(self.fn("fwd_ws", q.dtype, hd), self._persistent_grid(lay.num_fwd_work * hq), info.fwd_ws_threads,
                    info.fwd_ws_smem, params, stream)
            return
        _launch(self.fn("fwd", q.dtype, hd), lay.num_fwd_work * hq, info.fwd_threads, info.fwd_smem, params, stream)

    def uses_dq_claims(self, hd):
        """Whether backward() passes the claim workspace (distca_attn.h section 8): with the
        warp-specialized backward only, unless made with dq_claims=False."""
        return bool(self.ws and self.info[hd].bwd_ws_threads and self.dq_claims)

    def backward(self, lay, q, k, v, o, dout, lse, dq, dk, dv, scale, dsum=None, dq_accum=None, only=None,
                 claims=None, host_delta=False):
        """only="pre" or "post": launch that elementwise pass alone (for timing it: passes.py).
        claims: the int32 [Hq, total_q] workspace of distca_attn.h section 8 (allocated here if None),
        used with the warp-specialized backward unless the Kernels were made with dq_claims=False.
        host_delta: dsum already holds D = rowsum(dO*O) (the Java server's path, whose clients send
        D): bwd_pre is not launched, and the claim words (or, without them, the dQ workspace) are
        zeroed by a memset instead (distca_attn.h section 1)."""
        hq, hd = q.shape[1], q.shape[2]
        hkv = k.shape[1]
        info = self.info[hd]
        ws = self.ws and info.bwd_ws_threads
        if dsum is None:
            dsum = torch.empty((hq, max(1, lay.total_q)), dtype=torch.float32, device=q.device)
        if dq_accum is None:
            dq_accum = torch.empty((max(1, lay.total_q), hq, hd), dtype=torch.float32, device=q.device)
        claims_ptr = 0
        if self.uses_dq_claims(hd):
            if claims is None:
                claims = torch.empty((hq, max(1, lay.total_q)), dtype=torch.int32, device=q.device)
            claims_ptr = claims.data_ptr()
        # section 9: the work list with group splits where they pay, and then dK, dV through dkv_accum
        split = self._split_work(lay, hq, hkv, hd) if ws and only is None else None
        work_dev, num_work = split if split is not None else (lay.bwd_work_dev, lay.num_bwd_work)
        params = BWD_PARAMS.pack(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), dout.data_ptr(),
                                 lse.data_ptr(), dsum.data_ptr(), dq_accum.data_ptr(), dq.data_ptr(),
                                 dk.data_ptr(), dv.data_ptr(), lay.slices_dev.data_ptr(),
                                 lay.segments_dev.data_ptr(), lay.seg_slices_dev.data_ptr(),
                                 work_dev.data_ptr(), lay.total_q, lay.total_k, hq, hkv, num_work, scale, claims_ptr)
        stream = torch.cuda.current_stream().cuda_stream
        ew = math.ceil(lay.total_q * hq * hd / (info.ew_threads * info.ew_vec))
        # section 12: the warp-specialized kernels' dQ workspace has its own conversion (version 6)
        post_kind = "bwd_post_ws" if ws and self.abi[hd] >= 6 else "bwd_post"
        if only is not None:
            if only not in ("pre", "post"):
                raise ValueError(f"only: 'pre' or 'post', not {only!r}")
            kind = post_kind if only == "post" else "bwd_pre"
            _launch(self.fn(kind, q.dtype, hd), ew, info.ew_threads, 0, params, stream)
            return dsum, dq_accum
        if not host_delta:
            _launch(self.fn("bwd_pre", q.dtype, hd), ew, info.ew_threads, 0, params, stream)
        elif claims_ptr:
            claims.zero_()
        else:
            dq_accum.zero_()
        dkv_accum = None
        if split is not None:
            dkv_accum = torch.zeros((2, max(1, lay.total_k), hkv, hd), dtype=torch.float32, device=q.device)
        if ws:
            kind = self.bwd_ws_kind(hq, hkv, q.dtype, hd, split is not None, lay)
            block = (params + struct.pack("<QQ", self._zeroed_counter(stream),
                                          dkv_accum.data_ptr() if dkv_accum is not None else 0)
                     + pack_band_ends(self._bwd_bands(lay, hq, hkv, hd, split, kind)) + bytes(56)
                     + _tensor_map(q, 64)
                     + _tensor_map(k) + _tensor_map(v) + _tensor_map(dout, 64) + _tensor_map(dq_accum[:max(1, lay.total_q)], 64))
            _launch(self.fn(kind, q.dtype, hd),
                    self._persistent_grid(num_work * hkv), info.bwd_ws_threads, info.bwd_ws_smem, block, stream)
        else:
            _launch(self.fn("bwd", q.dtype, hd), lay.num_bwd_work * hkv, info.bwd_threads, info.bwd_smem, params,
                    stream)
        _launch(self.fn(post_kind, q.dtype, hd), ew, info.ew_threads, 0, params, stream)
        if dkv_accum is not None:  # section 9: dK = scale * its sums, dV = its sums, by bwd_post
            ew_kv = math.ceil(lay.total_k * hkv * hd / (info.ew_threads * info.ew_vec))
            for half, out, sc in ((0, dk, scale), (1, dv, 1.0)):
                conv = BWD_PARAMS.pack(0, 0, 0, 0, 0, 0, 0, dkv_accum[half].data_ptr(), out.data_ptr(), 0, 0, 0, 0, 0,
                                       0, lay.total_k, lay.total_k, hkv, hkv, 0, sc, 0)
                _launch(self.fn("bwd_post", q.dtype, hd), ew_kv, info.ew_threads, 0, conv, stream)
        return dsum, dq_accum

    def _fwd_bands(self, lay, hq, hd):
        """Section 11's band ends of the persistent forward's work list (cached on the layout)."""
        key = ("fwd_bands", hq, hd, self.work_bands, str(self.work_band_policy), self.ctas)
        if key not in lay.extra:
            costs = [c + FWD_TILE_OVERHEAD_BLOCKS for c in lay.extra.get("fwd_costs", [])]
            lay.extra[key] = self._bands(costs, hq, FWD_HEAD_GROUP)
        return lay.extra[key]

    def _bwd_bands(self, lay, hq, hkv, hd, split, kind):
        """Section 11's band ends of the persistent backward's (`kind`) work list (`split`: _split_work's,
        whose items walk their pieces' heads; else each key tile walks its whole group); none under
        WORK_BANDS_BWD_MIN_HEAD_DIM, nor for a split list in head order (not longest first: l2_order_pieces)."""
        if hd < WORK_BANDS_BWD_MIN_HEAD_DIM or (split is not None and lay.extra.get(("bwd_split_head_order", id(split)))):
            return []
        key = ("bwd_bands", hq, hkv, hd, kind, self.work_bands, str(self.work_band_policy), self.ctas,
               split is not None and id(split))
        if key not in lay.extra:
            group = hq // hkv
            over = SPLIT_OVERHEAD_STEPS * self.bwd_step_rows(hd)
            if split is not None:
                costs = [c + over for c in lay.extra[("bwd_split_costs", id(split))]]
                head_group = BWD_HEAD_GROUP
            else:
                costs = [c * group + over for c, _, _ in lay.extra.get("bwd_items", [])]
                head_group = BWD_CHUNK_HEAD_GROUP if kind == "bwd_ws_chunked" else BWD_HEAD_GROUP
            lay.extra[key] = self._bands(costs, hkv, head_group)
        return lay.extra[key]

    def _bands(self, costs, heads, head_group):
        if not self.work_bands or not self.ctas:
            return []
        if self.work_bands == "always":  # every cut of the first factor, whatever the model says (check.py)
            return band_cuts(costs, WORK_BANDS_FACTORS[0])
        return work_bands(costs, heads, head_group, self.ctas, **self.work_band_policy)

    def bwd_step_rows(self, hd):
        """The query rows of a backward step in the cost model (the image's bwd_block_m)."""
        return self.cost_block_m or self.info[hd].bwd_block_m

    def _split_work(self, lay, hq, hkv, hd):
        """(work list on the device, its length) with distca_attn.h section 9's group splits, or None
        where group_splits finds none that pay, or as bwd_splits forces; where l2_order_pieces' rule
        applies (NOTES v79), its pieces in head order, which _bwd_bands then leaves uncut (cached on
        the layout)."""
        policy = dict(self.bwd_split_policy)
        policy.setdefault("short_uniform", hd >= SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM)
        key = ("bwd_split", hq, hkv, hd, self.bwd_splits, self.l2_order, self.cost_block_m, tuple(sorted(policy.items())))
        if key in lay.extra:
            return lay.extra[key]
        items = lay.extra.get("bwd_items", [])
        costs = [c for c, _, _ in items]
        causal = lay.extra.get("all_causal", False)
        group = hq // hkv
        forced = self.bwd_splits or 0
        head_order = self.l2_order == "always"
        l2 = (l2_order_pieces(costs, group, self.bwd_step_rows(hd), causal, hd, wide=self.l2_order != "narrow",
                              heads_kv=hkv)
              if self.l2_order and forced == 0 else 0)
        if forced == 1 or not items or not self.has_kernel("bwd_ws_kv", torch.bfloat16, hd):
            splits = None
        elif l2 > 1:
            splits = [l2] * len(items)
            head_order = True
        elif forced > 1:
            splits = [min(forced, group)] * len(items) if 2 <= group <= 64 else None
        elif forced == -1:  # the kv kernel with every key tile's whole group in one work item (its cost alone)
            splits = [1] * len(items) if group <= 64 else None
        else:
            splits = group_splits(costs, hkv, group, self.ctas or 1, self.bwd_step_rows(hd), causal=causal, **policy)
        out = None
        if splits is not None:
            pieces = []
            for (c, g, b), n in zip(items, splits):
                assert b <= WORK_BLOCK_MASK, "key block past the block word's 20 bits"
                for j in range(n):
                    h0, h1 = split_heads(j, n, group)
                    word = b if n == 1 else b | h0 << WORK_HEAD_SHIFT | (h1 - h0) << WORK_HEADS_SHIFT
                    pieces.append((c * (h1 - h0), g, word, h0))
            if head_order:
                pieces.sort(key=lambda t: (t[3], -t[0]))
            else:
                pieces.sort(key=lambda t: -t[0])
            work = torch.tensor([[g, w - (1 << 32) if w >= 1 << 31 else w] for _, g, w, _ in pieces], dtype=torch.int32,
                                device="cuda")
            out = (work, len(pieces))
            lay.extra[("bwd_split_costs", id(out))] = [c for c, _, _, _ in pieces]  # for _bwd_bands
            if head_order:
                lay.extra[("bwd_split_head_order", id(out))] = True
        lay.extra[key] = out
        return out


def add_kernel_arguments(ap):
    """The options that choose an image and how Kernels launches it (kernels_from_args)."""
    ap.add_argument("--fatbin", default=DEFAULT_FATBIN)
    ap.add_argument("--no-ws", action="store_true", help="distca_attn_fwd_*/bwd_* only (not the warp-specialized kernels)")
    ap.add_argument("--ctas", type=int, default=None,
                    help="most CTAs of the persistent warp-specialized kernels (default: one per SM; 0: one per tile)")
    ap.add_argument("--static-tiles", action="store_true",
                    help="the persistent kernels split the tiles statically (no tile counter)")
    ap.add_argument("--no-dq-claims", action="store_true",
                    help="bwd_pre zeroes the dQ workspace (not the warp-specialized backward: distca_attn.h section 8)")
    ap.add_argument("--bwd-splits", type=int, default=None,
                    help="the backward's group splits (distca_attn.h section 9): 1 never, N > 1 every key tile N "
                         "ways, -1 the split kernel with no splits (default: where they pay)")
    ap.add_argument("--bwd-q128", choices=("auto", "always", "never"), default="auto",
                    help="the head_dim 64 backward in steps of 128 query rows (distca_attn.h section 13): where "
                         "they pay (default), for every batch without group splits, or never")
    ap.add_argument("--work-bands", choices=("auto", "off", "always"), default="auto",
                    help="the persistent kernels' work lists in bands (distca_attn.h section 11): where they pay "
                         "(default), never, or wherever the longest-first list has cuts")


def kernels_from_args(args):
    return Kernels(args.fatbin, ws=not args.no_ws, ctas=args.ctas, tile_counter=not args.static_tiles,
                   dq_claims=not args.no_dq_claims, bwd_splits=args.bwd_splits, bwd_q128=args.bwd_q128,
                   work_bands={"auto": True, "off": False, "always": "always"}[args.work_bands])


def forward_flops(slices, hq, hd):
    """4 * D * Hq * visible pairs (CostModel.forwardFlops)."""
    total = 0
    for s in slices:
        total += 4.0 * hd * hq * visible_pairs(s.q_len, s.kv_len, s.causal, s.diag())
    return total


def visible_pairs(q, kv, causal, diag):
    """sum over rows i < q of clamp(i + diag + 1, 0, kv) (CostModel.pairs)."""
    if q <= 0 or kv <= 0:
        return 0
    if not causal:
        return q * kv
    a = min(q, max(0, -diag))             # rows before a see nothing
    b = min(q, max(a, kv - 1 - diag))     # rows in [a, b) see i + diag + 1 keys
    total = 0
    if b > a:
        total += ((a + diag + 1) + (b - 1 + diag + 1)) * (b - a) // 2
    total += (q - b) * kv
    return total
