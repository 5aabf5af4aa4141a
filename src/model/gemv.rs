//! Quantized matrix products, as a candle custom op, for the GGUF types
//! where candle's CPU kernels are the bottleneck at decode: Q8_0, Q4_1,
//! Q4_K and Q6_K weights.
//!
//! The tiles are the weight's only copy in memory (see
//! [`PackedBlocks::to_qtensor`] for the way back to GGUF blocks), so they
//! also multiply prompts: four activation rows a pass, each weight vector
//! loaded once for the four. Holding the file's blocks for candle's
//! quantized GEMM beside them, and candle's own repacked tiles, which it
//! builds on a prompt's first pass, kept three copies: peak resident memory
//! of `sqlagent --threads 2 bench --model llama3.2-1b-Q8_0.gguf --prompt-ids
//! IDS` (the shaped GGUF, 256 ids, `/usr/bin/time`) went from 4.6 to 2.3 GB
//! with prefill at the same speed (284 against 288 tokens/s, one run each on
//! one machine), and to 2.0 GB with the tied embeddings read from the
//! head's tiles (see `EmbeddingTable::TiedToHead`).
//!
//! candle's repacked x86 kernels quantize activations in 256-value blocks,
//! so they skip such layers (every projection of SmolLM2, hidden size 576)
//! and fall back to one `vec_dot_q8_0_q8_0` per output, which converts two
//! f16 scales and reduces horizontally for every 32 weights: 57% of a
//! SmolLM2 decode step in `perf`; Q4_1 has no SIMD dot product there at
//! all. Here the weights are repacked once into tiles of 16 rows so that
//! one AVX-512 VNNI `vpdpbusd` multiplies 4 inputs into 16 outputs,
//! activations are quantized once per call in 32-value blocks (as Q8_0
//! itself), and rows are split over candle's thread pool. Q4_1 stays 4-bit
//! (nibbles unpacked in registers), so a decode step reads half the bytes
//! of the Q8_0 it used to be re-quantized to.
//!
//! Q4_K: candle's repacked tiles expand each 32-value sub-block's 6-bit
//! scale and minimum into two f32 per row, 6 bits a weight against the
//! format's 4.5, a third more bytes for every decode step to read (the
//! Llama-3-8B shape, Q4_K_M, 2 threads: 7.3 tokens/s against llama.cpp's
//! 10.4 on the same file). Here they stay one byte each beside an f16
//! super-block scale and minimum per row: 4.625 bits a weight.
//!
//! Q6_K: candle's `vec_dot_q6k_q8k` is an AVX2 dot product per output
//! row; here 16 rows a tile as for the others, at 6.6 bits a weight (one
//! thread, Llama-3.2-1B shape Q4_K_M, whose Q6_K layers are 41% of its
//! bytes: 35 -> 39.5 tokens/s).
//!
//! Every kernel fetches the tiles it will need next ahead of time (see
//! [`prefetch_ahead`]): with that, Q8_0 weights whose input width is a
//! multiple of 256 are faster here too than through candle's repacked
//! tiles (the Llama-3.2-1B shape, Q8_0, 2 threads: 42 against 33 tokens/s
//! a decode step).

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{CpuStorage, Device, Layout, Shape};
use half::f16;

/// Rows interleaved per tile: one 512-bit register of i32 sums.
const TILE_ROWS: usize = 16;
/// How far ahead of the tile being multiplied its successors are fetched.
const PREFETCH_BYTES: usize = 4096;
/// Values per quantization block (Q8_0's).
const BLOCK: usize = 32;
/// Bytes of one GGUF Q8_0 block: an f16 scale, then 32 signed quants.
const Q8_0_BYTES: usize = 2 + BLOCK;
/// Bytes of one GGUF Q4_1 block: f16 scale and minimum, then 16 bytes of
/// nibbles (value `j` low in byte `j`, value `j + 16` high).
const Q4_1_BYTES: usize = 4 + BLOCK / 2;
/// Values per Q4_K super-block.
const SUPER: usize = 256;
/// 32-value sub-blocks per Q4_K super-block.
const SUBS: usize = SUPER / BLOCK;
/// Bytes of one GGUF Q4_K super-block: f16 scale and minimum, 12 bytes of
/// 6-bit sub-block scales and minimums, 128 bytes of nibbles.
const Q4_K_BYTES: usize = 4 + 12 + SUPER / 2;
/// Values sharing one Q6_K scale.
const Q6_K_UNIT: usize = 16;
/// Bytes of one GGUF Q6_K super-block: 128 bytes of low nibbles, 64 of
/// high bit pairs, 16 signed scales (one per 16 values), an f16 scale.
const Q6_K_BYTES: usize = SUPER / 2 + SUPER / 4 + SUPER / Q6_K_UNIT + 2;

/// One block of 32 inputs for 16 rows: each row's scale and its quants
/// offset by +128 (unsigned, as `vpdpbusd` takes its first operand),
/// ordered `[4-input group (8)][row (16)][4 quants]`.
#[repr(C, align(64))]
#[derive(Clone)]
struct Tile {
    qs: [u8; BLOCK * TILE_ROWS],
    d: [f32; TILE_ROWS],
}

/// One block of 32 inputs for 16 rows of Q4_1: nibbles ordered
/// `[pair of 4-input groups (4)][row (16)][4 bytes]`, each byte holding
/// group `2p` low and group `2p + 1` high; each row's f16 scale and minimum.
#[repr(C, align(64))]
#[derive(Clone)]
struct Tile41 {
    qs: [u8; BLOCK / 2 * TILE_ROWS],
    d: [u16; TILE_ROWS],
    m: [u16; TILE_ROWS],
}

/// One super-block of 256 inputs for 16 rows of Q4_K: per 32-value
/// sub-block, nibbles ordered as in [`Tile41`] and each row's 6-bit scale
/// and minimum; each row's f16 super-block scale and minimum. A row's
/// value is `d · scale · q − dmin · min`.
#[repr(C, align(64))]
#[derive(Clone)]
struct TileQ4K {
    qs: [[u8; BLOCK / 2 * TILE_ROWS]; SUBS],
    scales: [[u8; TILE_ROWS]; SUBS],
    mins: [[u8; TILE_ROWS]; SUBS],
    d: [u16; TILE_ROWS],
    dmin: [u16; TILE_ROWS],
}

/// One super-block of 256 inputs for 16 rows of Q6_K: per 32-value block,
/// the low nibbles ordered as in [`Tile41`] and the high bit pairs in two
/// 64-byte halves `[row (16)][4 bytes]`, bits `2g..2g + 2` of a byte
/// belonging to the half's 4-input group `g`; each row's signed scale per
/// 16 values and f16 super-block scale. A row's value is
/// `d · scale · (q − 32)` with `q = low | high << 4`.
#[repr(C, align(64))]
#[derive(Clone)]
struct TileQ6K {
    lo: [[u8; BLOCK / 2 * TILE_ROWS]; SUBS],
    hi: [[u8; BLOCK / 4 * TILE_ROWS]; SUBS],
    scales: [[i8; TILE_ROWS]; SUPER / Q6_K_UNIT],
    d: [u16; TILE_ROWS],
}

#[derive(Clone)]
enum Tiles {
    Q8_0(Arc<Vec<Tile>>),
    Q4_1(Arc<Vec<Tile41>>),
    Q4K(Arc<Vec<TileQ4K>>),
    Q6K(Arc<Vec<TileQ6K>>),
}

impl Default for Tile {
    fn default() -> Self {
        Self {
            qs: [0; BLOCK * TILE_ROWS],
            d: [0.0; TILE_ROWS],
        }
    }
}

impl Default for Tile41 {
    fn default() -> Self {
        Self {
            qs: [0; BLOCK / 2 * TILE_ROWS],
            d: [0; TILE_ROWS],
            m: [0; TILE_ROWS],
        }
    }
}

impl Default for TileQ4K {
    fn default() -> Self {
        Self {
            qs: [[0; BLOCK / 2 * TILE_ROWS]; SUBS],
            scales: [[0; TILE_ROWS]; SUBS],
            mins: [[0; TILE_ROWS]; SUBS],
            d: [0; TILE_ROWS],
            dmin: [0; TILE_ROWS],
        }
    }
}

impl Default for TileQ6K {
    fn default() -> Self {
        Self {
            lo: [[0; BLOCK / 2 * TILE_ROWS]; SUBS],
            hi: [[0; BLOCK / 4 * TILE_ROWS]; SUBS],
            scales: [[0; TILE_ROWS]; SUPER / Q6_K_UNIT],
            d: [0; TILE_ROWS],
        }
    }
}

/// Q8_0 or Q4_1 weights `(n, k)` in tiles `[n / 16][k / 32]`, or Q4_K and
/// Q6_K weights in tiles `[n / 16][k / 256]`.
#[derive(Clone)]
pub struct PackedBlocks {
    n: usize,
    k: usize,
    tiles: Tiles,
}

impl std::fmt::Debug for PackedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBlocks({}x{})", self.n, self.k)
    }
}

/// Whether a CPU weight of `dtype` and shape `(n, k)` goes through this
/// kernel on this machine (so that Q4_1 need not be re-quantized).
pub fn takes(dtype: GgmlDType, n: usize, k: usize) -> bool {
    let shape_fits = n.is_multiple_of(TILE_ROWS) && k.is_multiple_of(BLOCK);
    let type_fits = match dtype {
        GgmlDType::Q8_0 => true,
        GgmlDType::Q4_1 => true,
        GgmlDType::Q4K | GgmlDType::Q6K => k.is_multiple_of(SUPER),
        _ => false,
    };
    shape_fits && type_fits && supported()
}

/// Whether this CPU runs the kernel (AVX-512 with VNNI).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl PackedBlocks {
    /// Repacks `q` when this kernel takes it (see [`takes`]).
    pub fn for_weight(q: &QTensor) -> Option<Self> {
        let (n, k) = q.shape().dims2().ok()?;
        if !q.device().is_cpu() || !takes(q.dtype(), n, k) {
            return None;
        }
        let data = q.data().ok()?;
        match q.dtype() {
            GgmlDType::Q8_0 => Self::pack(&data, n, k),
            GgmlDType::Q4_1 => Self::pack_q4_1(&data, n, k),
            GgmlDType::Q4K => Self::pack_q4k(&data, n, k),
            GgmlDType::Q6K => Self::pack_q6k(&data, n, k),
            _ => None,
        }
    }

    /// Repacks raw GGUF Q8_0 data of `n` rows of `k` values.
    fn pack(data: &[u8], n: usize, k: usize) -> Option<Self> {
        let tiles = tiles_of(
            data,
            n,
            k,
            BLOCK,
            Q8_0_BYTES,
            |tile: &mut Tile, r, block| {
                tile.d[r] = f16::from_le_bytes([block[0], block[1]]).to_f32();
                for (i, &q) in block[2..].iter().enumerate() {
                    let (group, lane) = (i / 4, i % 4);
                    tile.qs[(group * TILE_ROWS + r) * 4 + lane] = (q as i8 as i16 + 128) as u8;
                }
            },
        )?;
        Some(Self {
            n,
            k,
            tiles: Tiles::Q8_0(Arc::new(tiles)),
        })
    }

    /// Repacks raw GGUF Q4_1 data of `n` rows of `k` values.
    fn pack_q4_1(data: &[u8], n: usize, k: usize) -> Option<Self> {
        let tiles = tiles_of(
            data,
            n,
            k,
            BLOCK,
            Q4_1_BYTES,
            |tile: &mut Tile41, r, block| {
                tile.d[r] = u16::from_le_bytes([block[0], block[1]]);
                tile.m[r] = u16::from_le_bytes([block[2], block[3]]);
                let value = |i: usize| {
                    let byte = block[4 + i % 16];
                    if i < 16 {
                        byte & 0x0F
                    } else {
                        byte >> 4
                    }
                };
                interleave_nibbles(&mut tile.qs, r, value);
            },
        )?;
        Some(Self {
            n,
            k,
            tiles: Tiles::Q4_1(Arc::new(tiles)),
        })
    }

    /// Repacks raw GGUF Q4_K data of `n` rows of `k` values.
    fn pack_q4k(data: &[u8], n: usize, k: usize) -> Option<Self> {
        let tiles = tiles_of(
            data,
            n,
            k,
            SUPER,
            Q4_K_BYTES,
            |tile: &mut TileQ4K, r, block| {
                tile.d[r] = u16::from_le_bytes([block[0], block[1]]);
                tile.dmin[r] = u16::from_le_bytes([block[2], block[3]]);
                let scales: &[u8; 12] = block[4..16].try_into().expect("12 scale bytes");
                let qs = &block[16..];
                for sub in 0..SUBS {
                    let (scale, min) = q4k_scale_min(sub, scales);
                    tile.scales[sub][r] = scale;
                    tile.mins[sub][r] = min;
                    // Sub-blocks 2j and 2j+1 share 32 bytes: low nibbles, then high.
                    let value = |i: usize| {
                        let byte = qs[sub / 2 * BLOCK + i];
                        if sub % 2 == 0 {
                            byte & 0x0F
                        } else {
                            byte >> 4
                        }
                    };
                    interleave_nibbles(&mut tile.qs[sub], r, value);
                }
            },
        )?;
        Some(Self {
            n,
            k,
            tiles: Tiles::Q4K(Arc::new(tiles)),
        })
    }

    /// Repacks raw GGUF Q6_K data of `n` rows of `k` values.
    fn pack_q6k(data: &[u8], n: usize, k: usize) -> Option<Self> {
        let tiles = tiles_of(
            data,
            n,
            k,
            SUPER,
            Q6_K_BYTES,
            |tile: &mut TileQ6K, r, block| {
                let q = q6k_values(block);
                let scales = &block[SUPER / 2 + SUPER / 4..SUPER / 2 + SUPER / 4 + 16];
                for (unit, &scale) in scales.iter().enumerate() {
                    tile.scales[unit][r] = scale as i8;
                }
                tile.d[r] = u16::from_le_bytes([block[Q6_K_BYTES - 2], block[Q6_K_BYTES - 1]]);
                for sub in 0..SUBS {
                    let value = |i: usize| q[sub * BLOCK + i];
                    interleave_nibbles(&mut tile.lo[sub], r, |i| value(i) & 0x0F);
                    for half in 0..2 {
                        for lane in 0..4 {
                            let mut byte = 0u8;
                            for g in 0..4 {
                                byte |= (value((half * 4 + g) * 4 + lane) >> 4) << (2 * g);
                            }
                            tile.hi[sub][half * 64 + r * 4 + lane] = byte;
                        }
                    }
                }
            },
        )?;
        Some(Self {
            n,
            k,
            tiles: Tiles::Q6K(Arc::new(tiles)),
        })
    }

    /// The GGML type the tiles were packed from.
    pub fn dtype(&self) -> GgmlDType {
        match self.tiles {
            Tiles::Q8_0(_) => GgmlDType::Q8_0,
            Tiles::Q4_1(_) => GgmlDType::Q4_1,
            Tiles::Q4K(_) => GgmlDType::Q4K,
            Tiles::Q6K(_) => GgmlDType::Q6K,
        }
    }

    /// Bytes of the tiles (what a decode step reads).
    pub fn size_in_bytes(&self) -> usize {
        let (len, size) = match &self.tiles {
            Tiles::Q8_0(t) => (t.len(), size_of::<Tile>()),
            Tiles::Q4_1(t) => (t.len(), size_of::<Tile41>()),
            Tiles::Q4K(t) => (t.len(), size_of::<TileQ4K>()),
            Tiles::Q6K(t) => (t.len(), size_of::<TileQ6K>()),
        };
        len * size
    }

    /// The GGUF weight these tiles were packed from, rebuilt exactly
    /// (every field of a block is kept, the Q8_0 scale widened from f16 to
    /// f32 and back without loss): what dequantizing, merging an adapter or
    /// any kernel other than this one reads, so the tiles can be the
    /// weight's only copy.
    pub fn to_qtensor(&self) -> candle_core::Result<QTensor> {
        self.rows_as_qtensor(&(0..self.n).collect::<Vec<_>>())
    }

    /// Rows `ids` of the weight, dequantized: `(ids.len(), k)` f32, as an
    /// embedding lookup reads them.
    pub fn rows(&self, ids: &[usize]) -> candle_core::Result<candle_core::Tensor> {
        self.rows_as_qtensor(ids)?.dequantize(&Device::Cpu)
    }

    /// Rows `ids` of the weight as GGUF blocks.
    fn rows_as_qtensor(&self, ids: &[usize]) -> candle_core::Result<QTensor> {
        let dtype = self.dtype();
        let (block, block_bytes) = (dtype.block_size(), dtype.type_size());
        let kb = self.k / block;
        let row_bytes = kb * block_bytes;
        let mut data = vec![0u8; ids.len() * row_bytes];
        for (&id, out) in ids.iter().zip(data.chunks_exact_mut(row_bytes)) {
            if id >= self.n {
                candle_core::bail!("row {id} of a weight of {} rows", self.n);
            }
            let (nt, r) = (id / TILE_ROWS, id % TILE_ROWS);
            for (b, out) in out.chunks_exact_mut(block_bytes).enumerate() {
                self.unpack_block(nt * kb + b, r, out);
            }
        }
        let storage = QStorage::from_data(Cow::Owned(data), &Device::Cpu, dtype)?;
        QTensor::new(storage, (ids.len(), self.k))
    }

    /// Writes row `r`'s GGUF block of tile `at` (the inverse of the
    /// repacking functions).
    fn unpack_block(&self, at: usize, r: usize, block: &mut [u8]) {
        match &self.tiles {
            Tiles::Q8_0(tiles) => {
                let tile = &tiles[at];
                block[..2].copy_from_slice(&f16::from_f32(tile.d[r]).to_le_bytes());
                for i in 0..BLOCK {
                    let (group, lane) = (i / 4, i % 4);
                    let q = tile.qs[(group * TILE_ROWS + r) * 4 + lane] as i16 - 128;
                    block[2 + i] = q as i8 as u8;
                }
            }
            Tiles::Q4_1(tiles) => {
                let tile = &tiles[at];
                block[..2].copy_from_slice(&tile.d[r].to_le_bytes());
                block[2..4].copy_from_slice(&tile.m[r].to_le_bytes());
                for i in 0..BLOCK / 2 {
                    let (lo, hi) = (nibble_of(&tile.qs, r, i), nibble_of(&tile.qs, r, i + 16));
                    block[4 + i] = lo | (hi << 4);
                }
            }
            Tiles::Q4K(tiles) => {
                let tile = &tiles[at];
                block[..2].copy_from_slice(&tile.d[r].to_le_bytes());
                block[2..4].copy_from_slice(&tile.dmin[r].to_le_bytes());
                let scales: [u8; SUBS] = std::array::from_fn(|sub| tile.scales[sub][r]);
                let mins: [u8; SUBS] = std::array::from_fn(|sub| tile.mins[sub][r]);
                block[4..16].copy_from_slice(&q4k_pack_scale_min(&scales, &mins));
                for pair in 0..SUBS / 2 {
                    for i in 0..BLOCK {
                        let lo = nibble_of(&tile.qs[2 * pair], r, i);
                        let hi = nibble_of(&tile.qs[2 * pair + 1], r, i);
                        block[16 + pair * BLOCK + i] = lo | (hi << 4);
                    }
                }
            }
            Tiles::Q6K(tiles) => {
                let tile = &tiles[at];
                let mut q = [0u8; SUPER];
                for sub in 0..SUBS {
                    for (i, value) in q[sub * BLOCK..(sub + 1) * BLOCK].iter_mut().enumerate() {
                        let (group, lane) = (i / 4, i % 4);
                        let (half, g) = (group / 4, group % 4);
                        let pair = (tile.hi[sub][half * 64 + r * 4 + lane] >> (2 * g)) & 3;
                        *value = nibble_of(&tile.lo[sub], r, i) | (pair << 4);
                    }
                }
                q6k_store_values(&q, block);
                for (unit, scales) in tile.scales.iter().enumerate() {
                    block[SUPER / 2 + SUPER / 4 + unit] = scales[r] as u8;
                }
                block[Q6_K_BYTES - 2..].copy_from_slice(&tile.d[r].to_le_bytes());
            }
        }
    }
}

/// Row `r`'s value `i` (`i < 32`) of a block written by [`interleave_nibbles`].
fn nibble_of(qs: &[u8; BLOCK / 2 * TILE_ROWS], r: usize, i: usize) -> u8 {
    let (pair, within) = (i / 8, i % 8);
    let byte = qs[(pair * TILE_ROWS + r) * 4 + within % 4];
    if within < 4 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

/// The 12 bytes of Q4_K sub-block scales and minimums that
/// [`q4k_scale_min`] reads back as `scales[j]`, `mins[j]` (6 bits each).
fn q4k_pack_scale_min(scales: &[u8; SUBS], mins: &[u8; SUBS]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..4 {
        out[j] = scales[j] | ((scales[j + 4] >> 4) << 6);
        out[j + 4] = mins[j] | ((mins[j + 4] >> 4) << 6);
        out[j + 8] = (scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4);
    }
    out
}

/// The inverse of [`q6k_values`]: writes the 256 6-bit values into a
/// block's low nibbles and high pairs.
fn q6k_store_values(q: &[u8; SUPER], block: &mut [u8]) {
    let (ql, qh) = block[..SUPER / 2 + SUPER / 4].split_at_mut(SUPER / 2);
    for half in 0..2 {
        let (ql, qh) = (&mut ql[half * 64..], &mut qh[half * 32..]);
        for l in 0..32 {
            let at = half * 128 + l;
            let (a, b, c, d) = (q[at], q[at + 32], q[at + 64], q[at + 96]);
            ql[l] = (a & 0x0F) | ((c & 0x0F) << 4);
            ql[l + 32] = (b & 0x0F) | ((d & 0x0F) << 4);
            qh[l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6);
        }
    }
}

/// The 256 unsigned 6-bit values (`0..64`, 32 meaning zero) of one GGUF
/// Q6_K super-block, in order: each 128-value half takes 64 bytes of low
/// nibbles (values `l` and `l + 32` low, `l + 64` and `l + 96` high) and 32
/// bytes of high pairs (byte `l` holding values `l`, `l + 32`, `l + 64`,
/// `l + 96` from its low bits up).
fn q6k_values(block: &[u8]) -> [u8; SUPER] {
    let (ql, qh) = (
        &block[..SUPER / 2],
        &block[SUPER / 2..SUPER / 2 + SUPER / 4],
    );
    let mut q = [0u8; SUPER];
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
        for l in 0..32 {
            let at = half * 128 + l;
            q[at] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            q[at + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            q[at + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[at + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

/// Writes row `r`'s 32 nibbles (`value(i)`, `i < 32`) into a 16-row
/// block ordered `[pair of 4-input groups (4)][row (16)][4 bytes]`, each
/// byte holding group `2p` low and group `2p + 1` high.
fn interleave_nibbles(qs: &mut [u8; BLOCK / 2 * TILE_ROWS], r: usize, value: impl Fn(usize) -> u8) {
    for pair in 0..4 {
        for lane in 0..4 {
            let lo = value(pair * 8 + lane);
            let hi = value(pair * 8 + 4 + lane);
            qs[(pair * TILE_ROWS + r) * 4 + lane] = lo | (hi << 4);
        }
    }
}

/// The 6-bit scale and minimum of Q4_K sub-block `j` (GGUF's packing:
/// sub-blocks 0–3 in the low 6 bits of bytes 0–3 and 4–7, sub-blocks 4–7
/// split between the nibbles of bytes 8–11 and the top bits of 0–7).
fn q4k_scale_min(j: usize, scales: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Tiles `[n / 16][k / block]` of GGUF blocks of `block` values in
/// `block_bytes` bytes (`n` rows of `k` values in `data`), `fill` writing
/// row `r`'s block into a tile; `None` when the data is not of that size.
fn tiles_of<T: Default>(
    data: &[u8],
    n: usize,
    k: usize,
    block: usize,
    block_bytes: usize,
    fill: impl Fn(&mut T, usize, &[u8]),
) -> Option<Vec<T>> {
    let kb = k / block;
    if !k.is_multiple_of(block)
        || data.len() != n * kb * block_bytes
        || !n.is_multiple_of(TILE_ROWS)
    {
        return None;
    }
    let mut tiles = Vec::with_capacity(n / TILE_ROWS * kb);
    for nt in 0..n / TILE_ROWS {
        for b in 0..kb {
            let mut tile = T::default();
            for r in 0..TILE_ROWS {
                let at = ((nt * TILE_ROWS + r) * kb + b) * block_bytes;
                fill(&mut tile, r, &data[at..at + block_bytes]);
            }
            tiles.push(tile);
        }
    }
    Some(tiles)
}

/// Activations quantized in 32-value blocks: quants, scale and the sum of
/// the quants of each block (to take the weights' +128 offset back out).
struct Activations {
    qs: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i32>,
    /// Sums of the quants of each half block (for Q6_K's offset of 32).
    half_sums: Vec<i32>,
}

fn quantize(x: &[f32]) -> Activations {
    let blocks = x.len() / BLOCK;
    let mut a = Activations {
        qs: vec![0; x.len()],
        d: Vec::with_capacity(blocks),
        sums: Vec::with_capacity(blocks),
        half_sums: Vec::with_capacity(2 * blocks),
    };
    for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut halves = [0i32; 2];
        for (i, v) in chunk.iter().enumerate() {
            // Rounded by adding and taking back 1.5 · 2²³ (ties to even):
            // `f32::round` is a libm call per value on baseline x86-64.
            let q = ((v * inv + 12_582_912.0) - 12_582_912.0) as i8;
            a.qs[b * BLOCK + i] = q;
            halves[i / Q6_K_UNIT] += q as i32;
        }
        a.d.push(d);
        a.sums.push(halves[0] + halves[1]);
        a.half_sums.extend(halves);
    }
    a
}

/// Activation rows multiplied together against one row tile: each weight
/// vector loaded serves this many rows (prefill), so the kernel is bound by
/// its multiply-adds instead of its loads.
const ROWS_AT_ONCE: usize = 4;

/// `y = x Wᵀ` for `m` rows of `x` (`m × k`, row-major) into `y` (`m × n`).
fn gemv(w: &PackedBlocks, x: &[f32], m: usize, y: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    let acts: Vec<Activations> = x.chunks_exact(k).take(m).map(quantize).collect();
    let out = y.as_mut_ptr() as usize;
    let acts = &acts;
    // SAFETY (both writes): each (row, tile) of `y` is written by exactly one unit.
    let write = |row: usize, nt: usize, sums: &[f32; TILE_ROWS]| unsafe {
        std::slice::from_raw_parts_mut((out as *mut f32).add(row * n + nt * TILE_ROWS), TILE_ROWS)
            .copy_from_slice(sums)
    };
    candle_core::utils::barrier_pool().execute_chunked(n / TILE_ROWS, |range| {
        for nt in range {
            let mut groups = acts.chunks_exact(ROWS_AT_ONCE);
            for (g, group) in groups.by_ref().enumerate() {
                let group: [&Activations; ROWS_AT_ONCE] = std::array::from_fn(|r| &group[r]);
                let mut sums = [[0f32; TILE_ROWS]; ROWS_AT_ONCE];
                tile_dots(w, nt, group, &mut sums);
                for (r, sums) in sums.iter().enumerate() {
                    write(g * ROWS_AT_ONCE + r, nt, sums);
                }
            }
            let done = m - groups.remainder().len();
            for (r, act) in groups.remainder().iter().enumerate() {
                let mut sums = [[0f32; TILE_ROWS]; 1];
                tile_dots(w, nt, [act], &mut sums);
                write(done + r, nt, &sums[0]);
            }
        }
    });
}

/// The 16 dot products of row tile `nt` with one activation row.
#[cfg(test)]
fn tile_dot(w: &PackedBlocks, nt: usize, act: &Activations, out: &mut [f32; TILE_ROWS]) {
    let mut sums = [[0f32; TILE_ROWS]; 1];
    tile_dots(w, nt, [act], &mut sums);
    *out = sums[0];
}

/// The 16 dot products of row tile `nt` with each of `R` activation rows.
fn tile_dots<const R: usize>(
    w: &PackedBlocks,
    nt: usize,
    acts: [&Activations; R],
    out: &mut [[f32; TILE_ROWS]; R],
) {
    /// Row tile `nt`'s `k / $block` tiles through the AVX-512 kernel where
    /// the CPU runs it, else through the scalar one, a row at a time.
    macro_rules! dispatch {
        ($all:expr, $block:expr, $avx512:ident, $scalar:ident) => {{
            let per_row = w.k / $block;
            let tiles = &$all[nt * per_row..(nt + 1) * per_row];
            #[cfg(target_arch = "x86_64")]
            if supported() {
                // SAFETY: the CPU has the features the function enables.
                unsafe { $avx512(tiles, acts, out) };
                return;
            }
            for (act, out) in acts.iter().zip(out.iter_mut()) {
                $scalar(tiles, act, out)
            }
        }};
    }
    match &w.tiles {
        Tiles::Q8_0(all) => dispatch!(all, BLOCK, tile_dot_avx512, tile_dot_scalar),
        Tiles::Q4_1(all) => dispatch!(all, BLOCK, tile_dot_q4_1_avx512, tile_dot_q4_1_scalar),
        Tiles::Q4K(all) => dispatch!(all, SUPER, tile_dot_q4k_avx512, tile_dot_q4k_scalar),
        Tiles::Q6K(all) => dispatch!(all, SUPER, tile_dot_q6k_avx512, tile_dot_q6k_scalar),
    }
}

fn tile_dot_scalar(tiles: &[Tile], act: &Activations, out: &mut [f32; TILE_ROWS]) {
    *out = [0.0; TILE_ROWS];
    for (b, tile) in tiles.iter().enumerate() {
        for (r, o) in out.iter_mut().enumerate() {
            let mut isum = 0i32;
            for i in 0..BLOCK {
                let (group, lane) = (i / 4, i % 4);
                let q = tile.qs[(group * TILE_ROWS + r) * 4 + lane] as i32;
                isum += q * act.qs[b * BLOCK + i] as i32;
            }
            let isum = isum - 128 * act.sums[b];
            *o += isum as f32 * tile.d[r] * act.d[b];
        }
    }
}

fn tile_dot_q4_1_scalar(tiles: &[Tile41], act: &Activations, out: &mut [f32; TILE_ROWS]) {
    *out = [0.0; TILE_ROWS];
    for (b, tile) in tiles.iter().enumerate() {
        for (r, o) in out.iter_mut().enumerate() {
            let mut isum = 0i32;
            for i in 0..BLOCK {
                let (group, lane) = (i / 4, i % 4);
                let byte = tile.qs[(group / 2 * TILE_ROWS + r) * 4 + lane];
                let q = if group % 2 == 0 {
                    byte & 0x0F
                } else {
                    byte >> 4
                };
                isum += q as i32 * act.qs[b * BLOCK + i] as i32;
            }
            let (d, m) = (
                f16::from_bits(tile.d[r]).to_f32(),
                f16::from_bits(tile.m[r]).to_f32(),
            );
            *o += isum as f32 * d * act.d[b] + m * act.d[b] * act.sums[b] as f32;
        }
    }
}

fn tile_dot_q4k_scalar(tiles: &[TileQ4K], act: &Activations, out: &mut [f32; TILE_ROWS]) {
    *out = [0.0; TILE_ROWS];
    for (sb, tile) in tiles.iter().enumerate() {
        for sub in 0..SUBS {
            let b = sb * SUBS + sub;
            for (r, o) in out.iter_mut().enumerate() {
                let mut isum = 0i32;
                for i in 0..BLOCK {
                    let (group, lane) = (i / 4, i % 4);
                    let byte = tile.qs[sub][(group / 2 * TILE_ROWS + r) * 4 + lane];
                    let q = if group % 2 == 0 {
                        byte & 0x0F
                    } else {
                        byte >> 4
                    };
                    isum += q as i32 * act.qs[b * BLOCK + i] as i32;
                }
                let d = f16::from_bits(tile.d[r]).to_f32() * tile.scales[sub][r] as f32;
                let m = f16::from_bits(tile.dmin[r]).to_f32() * tile.mins[sub][r] as f32;
                *o += isum as f32 * d * act.d[b] - m * act.d[b] * act.sums[b] as f32;
            }
        }
    }
}

fn tile_dot_q6k_scalar(tiles: &[TileQ6K], act: &Activations, out: &mut [f32; TILE_ROWS]) {
    *out = [0.0; TILE_ROWS];
    for (sb, tile) in tiles.iter().enumerate() {
        for sub in 0..SUBS {
            let b = sb * SUBS + sub;
            for (r, o) in out.iter_mut().enumerate() {
                let mut isum = [0i32; 2];
                for i in 0..BLOCK {
                    let (group, lane) = (i / 4, i % 4);
                    let byte = tile.lo[sub][(group / 2 * TILE_ROWS + r) * 4 + lane];
                    let low = if group % 2 == 0 {
                        byte & 0x0F
                    } else {
                        byte >> 4
                    };
                    let pairs = tile.hi[sub][(group / 4) * 64 + r * 4 + lane];
                    let high = (pairs >> (2 * (group % 4))) & 3;
                    isum[i / Q6_K_UNIT] += (low | high << 4) as i32 * act.qs[b * BLOCK + i] as i32;
                }
                let mut scaled = 0i32;
                for (half, s) in isum.iter().enumerate() {
                    let offset = 32 * act.half_sums[2 * b + half];
                    scaled += (s - offset) * tile.scales[2 * sub + half][r] as i32;
                }
                *o += scaled as f32 * act.d[b] * f16::from_bits(tile.d[r]).to_f32();
            }
        }
    }
}

/// Q6_K: per 4-input group, the low nibble and the high pair (moved to bits
/// 4–5) are joined into the 6-bit value with one `vpternlogd`; each half
/// block's sums, less 32 times the activations' half sum, are multiplied
/// by their scales as integers, so the float work is once a block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
// Indices name a row and a half block across several arrays at once.
#[allow(clippy::needless_range_loop)]
unsafe fn tile_dot_q6k_avx512<const R: usize>(
    tiles: &[TileQ6K],
    acts: [&Activations; R],
    out: &mut [[f32; TILE_ROWS]; R],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    let low = _mm512_set1_epi8(0x0F);
    let high = _mm512_set1_epi8(0x30);
    for (sb, tile) in tiles.iter().enumerate() {
        let mut block_acc = [_mm512_setzero_ps(); R];
        for sub in 0..SUBS {
            // 53 lines a tile: seven ahead for each of its 8 blocks.
            prefetch_ahead(tile, sub * 7, 7);
            let b = sb * SUBS + sub;
            let lo = tile.lo[sub].as_ptr();
            let hi = tile.hi[sub].as_ptr();
            let mut sums = [[_mm512_setzero_si512(); 2]; R];
            for half in 0..2 {
                let pairs = _mm512_load_si512(hi.add(half * 64) as *const _);
                let highs = [
                    _mm512_slli_epi16(pairs, 4),
                    _mm512_slli_epi16(pairs, 2),
                    pairs,
                    _mm512_srli_epi16(pairs, 2),
                ];
                for p in 0..2 {
                    let nibbles = _mm512_load_si512(lo.add((half * 2 + p) * 64) as *const _);
                    let lows = [nibbles, _mm512_srli_epi16(nibbles, 4)];
                    for (g, lo4) in lows.into_iter().enumerate() {
                        let group = half * 4 + p * 2 + g;
                        let hi2 = _mm512_and_si512(highs[p * 2 + g], high);
                        // hi2 | (lo4 & 0x0F): 0xF8 is `A | (B & C)`.
                        let value = _mm512_ternarylogic_epi32::<0xF8>(hi2, lo4, low);
                        for r in 0..R {
                            let a = _mm512_set1_epi32(std::ptr::read_unaligned(
                                acts[r].qs.as_ptr().add(b * BLOCK + group * 4) as *const i32,
                            ));
                            sums[r][half] = _mm512_dpbusd_epi32(sums[r][half], value, a);
                        }
                    }
                }
            }
            let scales = [0, 1].map(|half| {
                _mm512_cvtepi8_epi32(_mm_load_si128(
                    tile.scales[2 * sub + half].as_ptr() as *const _
                ))
            });
            for r in 0..R {
                let mut scaled = _mm512_setzero_si512();
                for half in 0..2 {
                    let offset = _mm512_set1_epi32(32 * acts[r].half_sums[2 * b + half]);
                    scaled = _mm512_add_epi32(
                        scaled,
                        _mm512_mullo_epi32(_mm512_sub_epi32(sums[r][half], offset), scales[half]),
                    );
                }
                block_acc[r] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(scaled),
                    _mm512_set1_ps(acts[r].d[b]),
                    block_acc[r],
                );
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile.d.as_ptr() as *const _));
        for r in 0..R {
            acc[r] = _mm512_fmadd_ps(block_acc[r], d, acc[r]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_dot_q4k_avx512<const R: usize>(
    tiles: &[TileQ4K],
    acts: [&Activations; R],
    out: &mut [[f32; TILE_ROWS]; R],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    let low = _mm512_set1_epi8(0x0F);
    for (sb, tile) in tiles.iter().enumerate() {
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile.d.as_ptr() as *const _));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(tile.dmin.as_ptr() as *const _));
        for sub in 0..SUBS {
            // 37 lines a tile: five ahead for each of its 8 sub-blocks.
            prefetch_ahead(tile, sub * 5, 5);
            let b = sb * SUBS + sub;
            let mut s0 = [_mm512_setzero_si512(); R];
            let mut s1 = [_mm512_setzero_si512(); R];
            let w = tile.qs[sub].as_ptr();
            for pair in 0..4 {
                let v = _mm512_load_si512(w.add(pair * 64) as *const _);
                let lo = _mm512_and_si512(v, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                for r in 0..R {
                    let base = acts[r].qs.as_ptr().add(b * BLOCK);
                    let a0 = _mm512_set1_epi32(std::ptr::read_unaligned(
                        base.add(pair * 8) as *const i32
                    ));
                    let a1 = _mm512_set1_epi32(std::ptr::read_unaligned(
                        base.add(pair * 8 + 4) as *const i32
                    ));
                    s0[r] = _mm512_dpbusd_epi32(s0[r], lo, a0);
                    s1[r] = _mm512_dpbusd_epi32(s1[r], hi, a1);
                }
            }
            let bytes = |row: &[u8; TILE_ROWS]| {
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    row.as_ptr() as *const _
                )))
            };
            let scale = _mm512_mul_ps(d, bytes(&tile.scales[sub]));
            let min = _mm512_mul_ps(dmin, bytes(&tile.mins[sub]));
            for r in 0..R {
                let s = _mm512_cvtepi32_ps(_mm512_add_epi32(s0[r], s1[r]));
                let da = acts[r].d[b];
                acc[r] = _mm512_fmadd_ps(s, _mm512_mul_ps(scale, _mm512_set1_ps(da)), acc[r]);
                acc[r] = _mm512_fnmadd_ps(min, _mm512_set1_ps(da * acts[r].sums[b] as f32), acc[r]);
            }
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_dot_q4_1_avx512<const R: usize>(
    tiles: &[Tile41],
    acts: [&Activations; R],
    out: &mut [[f32; TILE_ROWS]; R],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    let low = _mm512_set1_epi8(0x0F);
    for (b, tile) in tiles.iter().enumerate() {
        prefetch_ahead(tile, 0, size_of::<Tile41>() / 64);
        let mut s0 = [_mm512_setzero_si512(); R];
        let mut s1 = [_mm512_setzero_si512(); R];
        let w = tile.qs.as_ptr();
        for pair in 0..4 {
            let v = _mm512_load_si512(w.add(pair * 64) as *const _);
            let lo = _mm512_and_si512(v, low);
            let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            for r in 0..R {
                let base = acts[r].qs.as_ptr().add(b * BLOCK);
                let a0 =
                    _mm512_set1_epi32(std::ptr::read_unaligned(base.add(pair * 8) as *const i32));
                let a1 = _mm512_set1_epi32(std::ptr::read_unaligned(
                    base.add(pair * 8 + 4) as *const i32
                ));
                s0[r] = _mm512_dpbusd_epi32(s0[r], lo, a0);
                s1[r] = _mm512_dpbusd_epi32(s1[r], hi, a1);
            }
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile.d.as_ptr() as *const _));
        let m = _mm512_cvtph_ps(_mm256_loadu_si256(tile.m.as_ptr() as *const _));
        for r in 0..R {
            let s = _mm512_cvtepi32_ps(_mm512_add_epi32(s0[r], s1[r]));
            let da = acts[r].d[b];
            acc[r] = _mm512_fmadd_ps(s, _mm512_mul_ps(d, _mm512_set1_ps(da)), acc[r]);
            acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(da * acts[r].sums[b] as f32), acc[r]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_dot_avx512<const R: usize>(
    tiles: &[Tile],
    acts: [&Activations; R],
    out: &mut [[f32; TILE_ROWS]; R],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        prefetch_ahead(tile, 0, size_of::<Tile>() / 64);
        // Two chains of four a row, so the dpbusd latency overlaps.
        let mut s0 = [_mm512_setzero_si512(); R];
        let mut s1 = [_mm512_setzero_si512(); R];
        let w = tile.qs.as_ptr();
        for g in (0..8).step_by(2) {
            let w0 = _mm512_load_si512(w.add(g * 64) as *const _);
            let w1 = _mm512_load_si512(w.add(g * 64 + 64) as *const _);
            for r in 0..R {
                let base = acts[r].qs.as_ptr().add(b * BLOCK);
                let a0 = _mm512_set1_epi32(std::ptr::read_unaligned(base.add(g * 4) as *const i32));
                let a1 =
                    _mm512_set1_epi32(std::ptr::read_unaligned(base.add(g * 4 + 4) as *const i32));
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, a0);
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, a1);
            }
        }
        let d = _mm512_loadu_ps(tile.d.as_ptr());
        for r in 0..R {
            let s = _mm512_sub_epi32(
                _mm512_add_epi32(s0[r], s1[r]),
                _mm512_set1_epi32(128 * acts[r].sums[b]),
            );
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(acts[r].d[b]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

/// Asks for `lines` cache lines from line `first` of the bytes
/// [`PREFETCH_BYTES`] past `tile`: a thread's tiles are one sequential
/// stream, and without this the hardware prefetcher does not run far
/// enough ahead for the loads to overlap the arithmetic (one thread read
/// Q4_K weights at 21 GB/s where a plain sum reads 35; with it, 36).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_ahead<T>(tile: &T, first: usize, lines: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let ahead = (tile as *const T as *const i8).wrapping_add(PREFETCH_BYTES + first * 64);
    for line in 0..lines {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line * 64)) };
    }
}

/// `x Wᵀ` over a [`PackedBlocks`] weight, for a few rows of f32 input.
pub struct BlockGemv<'a>(pub &'a PackedBlocks);

impl candle_core::CustomOp1 for BlockGemv<'_> {
    fn name(&self) -> &'static str {
        "block-gemv"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else {
            candle_core::bail!("{}: f32 input only", self.name());
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: contiguous input only", self.name());
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.0.k) {
            candle_core::bail!("{}: input {dims:?} is not {} wide", self.name(), self.0.k);
        }
        let m = (end - start) / self.0.k;
        let mut y = vec![0f32; m * self.0.n];
        gemv(self.0, &all[start..end], m, &mut y);
        *dims.last_mut().expect("checked above") = self.0.n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

/// The largest gap between `a` and `b`, relative to `b`'s largest
/// magnitude (tests of this kernel and of the layers using it).
#[cfg(test)]
pub(super) fn max_relative_gap(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Tensor};

    /// One of the repacking functions.
    type Pack = fn(&[u8], usize, usize) -> Option<PackedBlocks>;

    fn weight(n: usize, k: usize) -> QTensor {
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()
    }

    /// Against candle's own Q8_0 matmul: the same integer sums, but candle
    /// rounds each activation block's scale to f16 (a relative 5e-4 at
    /// most) where this kernel keeps it f32.
    #[test]
    fn matches_candles_q8_0_matmul() {
        let (n, k) = (48, 576);
        let q = weight(n, k);
        let packed = PackedBlocks::pack(&q.data().unwrap(), n, k).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 3, k), &Device::Cpu).unwrap();
        let want = candle_core::quantized::QMatMul::from_qtensor(q)
            .unwrap()
            .forward(&x)
            .unwrap();
        let got = x.apply_op1_no_bwd(&BlockGemv(&packed)).unwrap();
        assert_eq!(got.dims(), &[1, 3, n]);
        let gap = max_relative_gap(&got, &want);
        assert!(gap < 1e-3, "kernel disagrees: {gap}");
        // The portable path computes the same.
        let act = quantize(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..k]);
        let Tiles::Q8_0(tiles) = &packed.tiles else {
            unreachable!()
        };
        let mut scalar = [0f32; TILE_ROWS];
        tile_dot_scalar(&tiles[..k / BLOCK], &act, &mut scalar);
        assert_first_tile_is(&packed, &act, &scalar);
    }

    /// `n × k` random weights of `dtype`, repacked by `pack`, multiply 3
    /// rows like their dequantized weight (only the activations' 8-bit
    /// quantization differs), and the dispatched kernel's first tile sums
    /// what `scalar` does.
    fn check_against_dequantized(
        dtype: GgmlDType,
        (n, k): (usize, usize),
        pack: Pack,
        scalar: impl Fn(&Tiles, &Activations, &mut [f32; TILE_ROWS]),
    ) {
        let f = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&f, dtype).unwrap();
        let packed = pack(&q.data().unwrap(), n, k).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, k), &Device::Cpu).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        let want = x.matmul(&dense.t().unwrap()).unwrap();
        let got = x.apply_op1_no_bwd(&BlockGemv(&packed)).unwrap();
        assert_eq!(got.dims(), &[3, n]);
        let gap = max_relative_gap(&got, &want);
        assert!(gap < 2e-2, "{dtype:?} kernel disagrees: {gap}");
        let act = quantize(&x.to_vec2::<f32>().unwrap()[0]);
        let mut sums = [0f32; TILE_ROWS];
        scalar(&packed.tiles, &act, &mut sums);
        assert_first_tile_is(&packed, &act, &sums);
    }

    #[test]
    fn q4_1_matches_its_dequantized_weight() {
        let k = 96;
        check_against_dequantized(
            GgmlDType::Q4_1,
            (32, k),
            PackedBlocks::pack_q4_1,
            |t, a, o| {
                let Tiles::Q4_1(tiles) = t else {
                    unreachable!()
                };
                tile_dot_q4_1_scalar(&tiles[..k / BLOCK], a, o)
            },
        );
    }

    #[test]
    fn q4k_matches_its_dequantized_weight() {
        let k = 512;
        check_against_dequantized(
            GgmlDType::Q4K,
            (32, k),
            PackedBlocks::pack_q4k,
            |t, a, o| {
                let Tiles::Q4K(tiles) = t else { unreachable!() };
                tile_dot_q4k_scalar(&tiles[..k / SUPER], a, o)
            },
        );
    }

    #[test]
    fn q6k_matches_its_dequantized_weight() {
        let k = 512;
        check_against_dequantized(
            GgmlDType::Q6K,
            (32, k),
            PackedBlocks::pack_q6k,
            |t, a, o| {
                let Tiles::Q6K(tiles) = t else { unreachable!() };
                tile_dot_q6k_scalar(&tiles[..k / SUPER], a, o)
            },
        );
    }

    /// The dispatched kernel on tile 0 gives `want` (the scalar path's sums).
    fn assert_first_tile_is(packed: &PackedBlocks, act: &Activations, want: &[f32; TILE_ROWS]) {
        let mut fast = [0f32; TILE_ROWS];
        tile_dot(packed, 0, act, &mut fast);
        for (s, f) in want.iter().zip(&fast) {
            assert!((s - f).abs() <= 1e-3 * s.abs().max(1.0), "{s} vs {f}");
        }
    }

    /// Tiles give back the very bytes they were packed from: quantized
    /// weights for Q8_0 (whose scale goes through f32), arbitrary bytes
    /// for the formats whose every bit pattern is a block (every Q4_K
    /// scale and minimum packing, every Q6_K high pair).
    #[test]
    fn tiles_give_back_the_blocks_they_were_packed_from() {
        let (n, k) = (32, 512);
        let f = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let q8 = QTensor::quantize(&f, GgmlDType::Q8_0)
            .unwrap()
            .data()
            .unwrap()
            .to_vec();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut noise = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        let cases: [(GgmlDType, Vec<u8>, Pack); 4] = [
            (GgmlDType::Q8_0, q8, PackedBlocks::pack),
            (
                GgmlDType::Q4_1,
                noise(n * k / BLOCK * Q4_1_BYTES),
                PackedBlocks::pack_q4_1,
            ),
            (
                GgmlDType::Q4K,
                noise(n * k / SUPER * Q4_K_BYTES),
                PackedBlocks::pack_q4k,
            ),
            (
                GgmlDType::Q6K,
                noise(n * k / SUPER * Q6_K_BYTES),
                PackedBlocks::pack_q6k,
            ),
        ];
        for (dtype, data, pack) in cases {
            let packed = pack(&data, n, k).unwrap();
            assert_eq!(packed.dtype(), dtype);
            let back = packed.to_qtensor().unwrap();
            assert_eq!(back.dtype(), dtype);
            assert_eq!(back.shape().dims2().unwrap(), (n, k));
            assert!(
                back.data().unwrap().as_ref() == data.as_slice(),
                "{dtype:?} differs"
            );
        }
    }

    #[test]
    fn takes_only_the_weights_it_is_for() {
        assert!(
            PackedBlocks::for_weight(&weight(40, 576)).is_none(),
            "n % 16 != 0"
        );
        let f = Tensor::randn(0f32, 1.0, (48, 576), &Device::Cpu).unwrap();
        let q4 = QTensor::quantize(&f, GgmlDType::Q4_0).unwrap();
        assert!(PackedBlocks::for_weight(&q4).is_none(), "Q4_0");
        let f = Tensor::randn(0f32, 1.0, (48, 512), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let q = QTensor::quantize(&f, dtype).unwrap();
            assert_eq!(
                PackedBlocks::for_weight(&q).is_some(),
                supported(),
                "{dtype:?}"
            );
        }
        for k in [512, 576] {
            assert_eq!(
                PackedBlocks::for_weight(&weight(48, k)).is_some(),
                supported(),
                "Q8_0, {k} wide"
            );
        }
    }
}
