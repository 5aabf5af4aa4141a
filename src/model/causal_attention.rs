//! Causal attention for training, with memory linear in the sequence: a
//! candle custom op whose forward and backward recompute each query row's
//! scores instead of keeping the `(rows × positions)` score matrix.
//!
//! Through candle's generic ops, a training pass keeps every layer's
//! scores, their softmax and its intermediates for the backward pass: for
//! SmolLM2 (9 heads, 30 layers) and a 2,500-token schema prompt that is
//! about 30 × 3 × 9 × 2,500² × 4 bytes ≈ 20 GB, which is what made tuning
//! on an 11-table schema run out of memory. Here a row's scores live only
//! while that row is computed (the backward pass works them out again from
//! the queries, keys and values, as FlashAttention does): the op keeps
//! nothing but its output. Written for the CPU and f32 (the training
//! dtype); elsewhere the generic path runs.

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use crate::error::Result;

/// Whether [`causal_attention`] runs for these tensors: f32 on the CPU.
pub fn runs_here(q: &Tensor, k: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == candle_core::DType::F32 && k.dtype() == q.dtype()
}

/// `softmax(q Kᵀ · scale + causal mask) V`, differentiable in `q`, `k` and
/// `v`. `q` is `(b, kv_heads, n_rep · seq, head_dim)`: the `n_rep` query
/// heads that share a KV head stacked, each `seq` rows for the newest `seq`
/// positions; `k` and `v` are `(b, kv_heads, positions, head_dim)`, the
/// last `seq` positions being the queries' own. Query row `r` sees the
/// positions up to its own, `positions - seq + r % seq`. Returns a tensor
/// shaped like `q`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq: usize,
    scale: f32,
) -> Result<Tensor> {
    Ok(q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        CausalAttention { seq, scale },
    )?)
}

struct CausalAttention {
    seq: usize,
    scale: f32,
}

/// Sizes of one call: batch × KV heads groups of `rows` queries over
/// `positions` keys, `dim` wide.
#[derive(Clone, Copy)]
struct Dims {
    groups: usize,
    rows: usize,
    positions: usize,
    dim: usize,
    seq: usize,
}

impl Dims {
    fn of(q: &[usize], k: &[usize], v: &[usize], seq: usize) -> candle_core::Result<Self> {
        let ok = q.len() == 4
            && k.len() == 4
            && k == v
            && q[0] == k[0]
            && q[1] == k[1]
            && q[3] == k[3]
            && seq > 0
            && q[2].is_multiple_of(seq)
            && k[2] >= seq;
        if !ok {
            candle_core::bail!("causal attention: shapes q {q:?}, k {k:?}, v {v:?}, seq {seq}");
        }
        Ok(Self {
            groups: q[0] * q[1],
            rows: q[2],
            positions: k[2],
            dim: q[3],
            seq,
        })
    }

    /// The last position query row `r` may see.
    fn last_seen(&self, r: usize) -> usize {
        self.positions - self.seq + r % self.seq
    }
}

/// The row's softmax weights over positions `0..=last` into `p` (its
/// prefix), from the scores `scale · q·k_j`.
fn weights(q: &[f32], keys: &[f32], dim: usize, last: usize, scale: f32, p: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for (j, pj) in p[..=last].iter_mut().enumerate() {
        *pj = dot(q, &keys[j * dim..(j + 1) * dim]) * scale;
        max = max.max(*pj);
    }
    let mut sum = 0.0f32;
    for pj in &mut p[..=last] {
        *pj = (*pj - max).exp();
        sum += *pj;
    }
    let inv = 1.0 / sum;
    for pj in &mut p[..=last] {
        *pj *= inv;
    }
}

/// `a · b`, in eight lanes so that it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

fn slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    name: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("causal attention: {name} must be f32");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("causal attention: {name} must be contiguous"),
    }
}

impl candle_core::CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims(), l2.dims(), l3.dims(), self.seq)?;
        let (q, k, v) = (
            slice(s1, l1, "q")?,
            slice(s2, l2, "k")?,
            slice(s3, l3, "v")?,
        );
        let mut out = vec![0.0f32; q.len()];
        let out_at = out.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(d.groups * d.rows, |range| {
            let mut p = vec![0.0f32; d.positions];
            for row in range {
                let (g, r) = (row / d.rows, row % d.rows);
                let kv = g * d.positions * d.dim..(g + 1) * d.positions * d.dim;
                let last = d.last_seen(r);
                let qr = &q[row * d.dim..(row + 1) * d.dim];
                weights(qr, &k[kv.clone()], d.dim, last, self.scale, &mut p);
                // SAFETY: each row's `dim` outputs are written by one unit only.
                let y = unsafe {
                    std::slice::from_raw_parts_mut((out_at as *mut f32).add(row * d.dim), d.dim)
                };
                let values = &v[kv];
                for (j, &pj) in p[..=last].iter().enumerate() {
                    axpy(y, pj, &values[j * d.dim..(j + 1) * d.dim]);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = Dims::of(q.dims(), k.dims(), v.dims(), self.seq)?;
        let flat = |t: &Tensor| t.contiguous()?.flatten_all()?.to_vec1::<f32>();
        let (qs, ks, vs, ys, dys) = (flat(q)?, flat(k)?, flat(v)?, flat(res)?, flat(grad_res)?);
        let mut dq = vec![0.0f32; qs.len()];
        let mut dk = vec![0.0f32; ks.len()];
        let mut dv = vec![0.0f32; vs.len()];
        // Each group's rows are dealt round-robin to `parts` workers (later
        // rows see more positions); each worker sums its own key and value
        // gradients, added together after.
        let parts = candle_core::utils::get_num_threads().max(1);
        let group_kv = d.positions * d.dim;
        let partials = Mutex::new(Vec::new());
        candle_core::utils::barrier_pool().execute_chunked(d.groups * parts, |range| {
            for work in range {
                let (g, part) = (work / parts, work % parts);
                let kv = g * group_kv..(g + 1) * group_kv;
                let (keys, values) = (&ks[kv.clone()], &vs[kv]);
                let mut gk = vec![0.0f32; group_kv];
                let mut gv = vec![0.0f32; group_kv];
                let mut gq = Vec::new();
                let mut p = vec![0.0f32; d.positions];
                for r in (part..d.rows).step_by(parts) {
                    let row = g * d.rows + r;
                    let at = row * d.dim..(row + 1) * d.dim;
                    let (qr, yr, dyr) = (&qs[at.clone()], &ys[at.clone()], &dys[at]);
                    let last = d.last_seen(r);
                    weights(qr, keys, d.dim, last, self.scale, &mut p);
                    let dy_y = dot(dyr, yr);
                    let mut dqr = vec![0.0f32; d.dim];
                    for (j, &pj) in p[..=last].iter().enumerate() {
                        let at = j * d.dim..(j + 1) * d.dim;
                        let ds = pj * (dot(dyr, &values[at.clone()]) - dy_y) * self.scale;
                        axpy(&mut dqr, ds, &keys[at.clone()]);
                        axpy(&mut gk[at.clone()], ds, qr);
                        axpy(&mut gv[at], pj, dyr);
                    }
                    gq.push((row, dqr));
                }
                let mut all = partials.lock().unwrap_or_else(|e| e.into_inner());
                all.push((g, gk, gv, gq));
            }
        });
        let partials = partials.into_inner().unwrap_or_else(|e| e.into_inner());
        for (g, gk, gv, gq) in partials {
            let kv = g * group_kv..(g + 1) * group_kv;
            axpy(&mut dk[kv.clone()], 1.0, &gk);
            axpy(&mut dv[kv], 1.0, &gv);
            for (row, dqr) in gq {
                dq[row * d.dim..(row + 1) * d.dim].copy_from_slice(&dqr);
            }
        }
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_abs_diff as max_diff;
    use candle_core::{DType, Device, Var};

    /// The same attention through candle's generic ops, with an explicit
    /// additive causal mask.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, seq: usize, scale: f64) -> Tensor {
        let rows = q.dim(2).unwrap();
        let positions = k.dim(2).unwrap();
        let offset = positions - seq;
        let mask: Vec<f32> = (0..rows)
            .flat_map(|r| {
                (0..positions).map(move |j| {
                    if j <= offset + r % seq {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (rows, positions), &Device::Cpu).unwrap();
        let att = (q * scale).unwrap().matmul(&k.t().unwrap()).unwrap();
        let att = att.broadcast_add(&mask).unwrap();
        let att = crate::model::softmax::softmax_last_dim_trainable(&att).unwrap();
        att.matmul(v).unwrap()
    }

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Var {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn output_and_gradients_match_the_masked_softmax_of_generic_ops() {
        // 2 batches × 2 KV heads, 3 query heads each, 5 new positions after
        // 4 cached ones, head width 12 (not a multiple of 8).
        let (seq, cached, dim, n_rep) = (5, 4, 12, 3);
        let q = random((2, 2, n_rep * seq, dim), 1);
        let k = random((2, 2, cached + seq, dim), 2);
        let v = random((2, 2, cached + seq, dim), 3);
        let w = random((2, 2, n_rep * seq, dim), 4);
        let scale = 1.0 / (dim as f64).sqrt();
        let ours = causal_attention(&q, &k, &v, seq, scale as f32).unwrap();
        let theirs = reference(&q, &k, &v, seq, scale);
        assert!(max_diff(&ours, &theirs) < 1e-5);
        // A loss that weighs every output differently.
        let loss = |y: &Tensor| (y * w.as_tensor()).unwrap().sum_all().unwrap();
        let g_ours = loss(&ours).backward().unwrap();
        let g_theirs = loss(&theirs).backward().unwrap();
        for var in [&q, &k, &v] {
            let (a, b) = (
                g_ours.get(var.as_tensor()).unwrap(),
                g_theirs.get(var.as_tensor()).unwrap(),
            );
            assert_eq!(a.dtype(), DType::F32);
            assert!(max_diff(a, b) < 1e-5, "{}", max_diff(a, b));
        }
    }
}
