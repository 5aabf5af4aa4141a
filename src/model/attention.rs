//! Attention of one new position over the KV cache (a decode step), as one
//! candle custom op on the CPU.
//!
//! Through candle's generic ops a decode step's attention is a batched
//! GEMM of one query row against the keys, a softmax and a second GEMM,
//! each with its own output tensor and packing, and it cost more than the
//! weights: SmolLM2 decoded 4.1 ms a step after a 64-token prompt and
//! 11.5 ms after 1,500 (`sqlagent --threads 2 bench --prompt-ids`), where
//! its keys and values at 1,500 positions are 69 MB, 1.5 ms of memory
//! reads. Here each query head walks its KV head's rows once for the
//! scores and once for the weighted sum, the heads split over candle's
//! thread pool. The keys and values are read in place from the cache's
//! preallocated (strided) storage.

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use crate::error::Result;

/// Whether [`attend_one_position`] runs for these tensors: f32 on the CPU.
pub fn runs_here(q: &Tensor, k: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == candle_core::DType::F32 && k.dtype() == q.dtype()
}

/// `softmax(q Kᵀ · scale) V` for one query position: `q` is `(b, kv_heads,
/// n_rep, head_dim)` (the `n_rep` query heads sharing a KV head stacked),
/// `k` and `v` are `(b, kv_heads, positions, head_dim)` with contiguous
/// rows (a narrowed cache is fine). Returns `(b, kv_heads, n_rep,
/// head_dim)`.
pub fn attend_one_position(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    Ok(q.contiguous()?
        .apply_op3_no_bwd(k, v, &OnePosition { scale })?)
}

struct OnePosition {
    scale: f32,
}

/// A `(b, heads, positions, head_dim)` tensor's rows: where row `(b, h,
/// t)` starts in its storage, when every row is contiguous.
struct Rows<'a> {
    data: &'a [f32],
    start: usize,
    batch_stride: usize,
    head_stride: usize,
    head_dim: usize,
}

impl<'a> Rows<'a> {
    fn of(storage: &'a CpuStorage, layout: &Layout, name: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("attention: {name} must be f32");
        };
        let (dims, stride) = (layout.dims(), layout.stride());
        // A dimension of size 1 may have any stride (candle calls such a
        // tensor contiguous without copying it).
        let rows_contiguous = dims.len() == 4
            && (dims[3] == 1 || stride[3] == 1)
            && (dims[2] == 1 || stride[2] == dims[3]);
        if !rows_contiguous {
            candle_core::bail!("attention: {name} rows must be contiguous ({dims:?}, {stride:?})");
        }
        Ok(Self {
            data,
            start: layout.start_offset(),
            batch_stride: stride[0],
            head_stride: stride[1],
            head_dim: dims[3],
        })
    }

    fn row(&self, b: usize, h: usize, t: usize) -> &'a [f32] {
        let at = self.start + b * self.batch_stride + h * self.head_stride + t * self.head_dim;
        &self.data[at..at + self.head_dim]
    }
}

impl candle_core::CustomOp3 for OnePosition {
    fn name(&self) -> &'static str {
        "attend-one-position"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            Rows::of(qs, ql, "q")?,
            Rows::of(ks, kl, "k")?,
            Rows::of(vs, vl, "v")?,
        );
        let (b, kv_heads, n_rep, hd) = ql.shape().dims4()?;
        let (kb, kh, positions, khd) = kl.shape().dims4()?;
        if (kb, kh, khd) != (b, kv_heads, hd) || vl.shape() != kl.shape() {
            candle_core::bail!(
                "attention: q {:?} does not fit k {:?} / v {:?}",
                ql.dims(),
                kl.dims(),
                vl.dims()
            );
        }
        let heads = b * kv_heads * n_rep;
        let mut out = vec![0f32; heads * hd];
        let out_at = out.as_mut_ptr() as usize;
        let scale = self.scale;
        candle_core::utils::barrier_pool().execute_chunked(heads, |range| {
            let mut scores = vec![0f32; positions];
            for head in range {
                let (bh, r) = (head / n_rep, head % n_rep);
                let (bi, g) = (bh / kv_heads, bh % kv_heads);
                // SAFETY: each head's `hd` outputs are written by one unit only.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut((out_at as *mut f32).add(head * hd), hd)
                };
                let head = Head {
                    query: q.row(bi, g, r),
                    keys: &k,
                    values: &v,
                    batch: bi,
                    kv_head: g,
                };
                attend(&head, scale, &mut scores, dst);
            }
        });
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }
}

/// One query head and the KV head it reads.
struct Head<'a> {
    query: &'a [f32],
    keys: &'a Rows<'a>,
    values: &'a Rows<'a>,
    batch: usize,
    kv_head: usize,
}

impl<'a> Head<'a> {
    fn key(&self, t: usize) -> &'a [f32] {
        self.keys.row(self.batch, self.kv_head, t)
    }

    fn value(&self, t: usize) -> &'a [f32] {
        self.values.row(self.batch, self.kv_head, t)
    }
}

/// One head: scores against every key, softmax, weighted sum of values.
fn attend(head: &Head, scale: f32, scores: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature the function enables.
        return unsafe { attend_avx512(head, scale, scores, out) };
    }
    attend_portable(head, scale, scores, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(head: &Head, scale: f32, scores: &mut [f32], out: &mut [f32]) {
    attend_portable(head, scale, scores, out)
}

/// The loops, written so that the compiler vectorizes them (16 lanes of
/// independent sums) for whatever features the caller enables.
#[inline(always)]
fn attend_portable(head: &Head, scale: f32, scores: &mut [f32], out: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for (t, s) in scores.iter_mut().enumerate() {
        *s = dot(head.query, head.key(t)) * scale;
        max = max.max(*s);
    }
    for s in scores.iter_mut() {
        *s = exp_of_non_positive(*s - max);
    }
    let inv = 1.0 / sum(scores);
    out.fill(0.0);
    for (t, &s) in scores.iter().enumerate() {
        let p = s * inv;
        for (o, x) in out.iter_mut().zip(head.value(t)) {
            *o += p * x;
        }
    }
}

/// `eˣ` for `x ≤ 0` within 5e-7 relative (libm's `expf` is a call per
/// value that the compiler cannot vectorize, and a softmax over a long
/// cache takes one per position, head and layer): `x = n ln 2 + r` with
/// `n` whole and `|r| ≤ ½ ln 2` (ln 2 split in two parts so that `r` keeps
/// its precision), `2ⁿ` built in the exponent bits, `eʳ` from its degree-6
/// Taylor polynomial. Below −87 it returns `e⁻⁸⁷` (≈ 0 beside the
/// softmax's largest term, which is 1).
#[inline(always)]
fn exp_of_non_positive(x: f32) -> f32 {
    /// 1.5 · 2²³: adding and subtracting it rounds to a whole number.
    const ROUND: f32 = 12_582_912.0;
    /// ln 2 = LN2_HI + LN2_LO, LN2_HI exact in few bits so `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, D};

    /// Against candle's ops on the same numbers: scores, softmax, sum.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Tensor {
        let att = (q * scale as f64).unwrap().matmul(&k.t().unwrap()).unwrap();
        let att = candle_nn::ops::softmax(&att, D::Minus1).unwrap();
        att.matmul(&v.contiguous().unwrap()).unwrap()
    }

    #[test]
    fn matches_candles_ops_on_a_narrowed_cache() {
        let dev = Device::Cpu;
        let (b, kv_heads, n_rep, hd, capacity, len) = (2, 3, 3, 64, 40, 27);
        let q = Tensor::randn(0f32, 1.0, (b, kv_heads, n_rep, hd), &dev).unwrap();
        // A cache's storage holds more positions than are in use.
        let k_all = Tensor::randn(0f32, 1.0, (b, kv_heads, capacity, hd), &dev).unwrap();
        let v_all = Tensor::randn(0f32, 1.0, (b, kv_heads, capacity, hd), &dev).unwrap();
        let (k, v) = (
            k_all.narrow(2, 0, len).unwrap(),
            v_all.narrow(2, 0, len).unwrap(),
        );
        assert!(!k.is_contiguous());
        let scale = 1.0 / (hd as f32).sqrt();
        let got = attend_one_position(&q, &k, &v, scale).unwrap();
        let want = reference(&q, &k.contiguous().unwrap(), &v, scale);
        assert_eq!(got.dims(), want.dims());
        let gap = crate::model::max_abs_diff(&got, &want);
        assert!(gap < 1e-5, "gap {gap}");
    }

    #[test]
    fn exp_agrees_with_libm() {
        let mut worst = 0f32;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (want, got) = (x.exp(), exp_of_non_positive(x));
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!(exp_of_non_positive(-1e30) < 1e-37);
        assert_eq!(exp_of_non_positive(0.0), 1.0);
    }

    #[test]
    fn odd_head_dims_and_bad_shapes() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 2, 24), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 5, 24), &dev).unwrap();
        let got = attend_one_position(&q, &k, &k, 0.3).unwrap();
        let want = reference(&q, &k, &k, 0.3);
        let gap = crate::model::max_abs_diff(&got, &want);
        assert!(gap < 1e-5, "gap {gap}");
        // One position, laid out as a transposed `(b, seq, heads, hd)`.
        let one = Tensor::randn(0f32, 1.0, (1, 1, 3, 24), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let q3 = Tensor::randn(0f32, 1.0, (1, 3, 2, 24), &dev).unwrap();
        let got = attend_one_position(&q3, &one, &one, 0.3).unwrap();
        let want = reference(&q3, &one.contiguous().unwrap(), &one, 0.3);
        assert!(crate::model::max_abs_diff(&got, &want) < 1e-5);
        let other = Tensor::randn(0f32, 1.0, (1, 2, 5, 24), &dev).unwrap();
        assert!(attend_one_position(&q, &other, &other, 0.3).is_err());
        let half = k.to_dtype(DType::F16).unwrap();
        assert!(!runs_here(&q, &half));
    }
}
