//! Keys and values of the positions a sequence has seen, per layer, in
//! preallocated chunks; [`LayerKv::truncate`] takes positions back (for
//! backtracking during constrained decoding) without copying. A
//! [`LayerKv::tracked`] one concatenates instead, so that gradients flow
//! through the cached keys and values (training on a shared prompt).

use candle_core::Tensor;

use crate::error::Result;

/// Positions added per allocation.
pub const KV_CHUNK: usize = 512;

/// One layer's keys and values, `(batch, kv_heads, positions, head_dim)`.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    /// Concatenate (differentiable) instead of writing in place.
    tracked: bool,
}

impl LayerKv {
    /// An empty cache whose appends concatenate, keeping the autograd
    /// graph: slower and never truncated, for training.
    pub fn tracked() -> Self {
        Self {
            tracked: true,
            ..Self::default()
        }
    }

    /// A tracked cache (see [`LayerKv::tracked`]) that starts with `k` and
    /// `v`: to continue from a prompt's keys and values held as leaves.
    pub fn tracked_from(k: Tensor, v: Tensor) -> Result<Self> {
        Ok(Self {
            len: k.dim(2)?,
            k: Some(k),
            v: Some(v),
            tracked: true,
        })
    }

    /// The keys and values held, `None` when empty.
    pub fn tensors(&self) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match (&self.k, &self.v) {
            (Some(k), Some(v)) if self.len > 0 => {
                Some((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?))
            }
            _ => None,
        })
    }

    /// Appends `k`, `v` (same layout, `seq` positions on dim 2) and returns
    /// all keys and values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        if self.tracked {
            let (k, v) = match (self.k.take(), self.v.take()) {
                (Some(old_k), Some(old_v)) => (
                    Tensor::cat(&[&old_k.narrow(2, 0, self.len)?, k], 2)?,
                    Tensor::cat(&[&old_v.narrow(2, 0, self.len)?, v], 2)?,
                ),
                _ => (k.clone(), v.clone()),
            };
            self.len = k.dim(2)?;
            self.k = Some(k.clone());
            self.v = Some(v.clone());
            return Ok((k, v));
        }
        let needed = self.len + seq;
        let capacity = self.k.as_ref().map(|t| t.dim(2)).transpose()?.unwrap_or(0);
        if needed > capacity {
            let grow = (needed - capacity).div_ceil(KV_CHUNK) * KV_CHUNK;
            self.k = Some(grow_along_positions(self.k.take(), k, grow)?);
            self.v = Some(grow_along_positions(self.v.take(), v, grow)?);
        }
        let (Some(all_k), Some(all_v)) = (&self.k, &self.v) else {
            unreachable!("allocated above")
        };
        all_k.slice_set(k, 2, self.len)?;
        all_v.slice_set(v, 2, self.len)?;
        self.len = needed;
        Ok((all_k.narrow(2, 0, needed)?, all_v.narrow(2, 0, needed)?))
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

fn grow_along_positions(old: Option<Tensor>, like: &Tensor, extra: usize) -> Result<Tensor> {
    let mut shape = like.dims().to_vec();
    shape[2] = extra;
    let fresh = Tensor::zeros(shape, like.dtype(), like.device())?;
    Ok(match old {
        None => fresh,
        Some(old) => Tensor::cat(&[&old, &fresh], 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn positions(from: u32, n: usize) -> Tensor {
        Tensor::arange(from, from + n as u32, &Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .reshape((1, 1, n, 1))
            .unwrap()
    }

    #[test]
    fn append_grows_and_truncate_takes_positions_back() {
        let mut kv = LayerKv::default();
        let (k, _) = kv.append(&positions(0, 3), &positions(0, 3)).unwrap();
        assert_eq!(k.dims(), &[1, 1, 3, 1]);
        // Cross a chunk boundary.
        let (k, v) = kv
            .append(&positions(3, KV_CHUNK), &positions(3, KV_CHUNK))
            .unwrap();
        assert_eq!(k.dim(2).unwrap(), KV_CHUNK + 3);
        let last: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(last[KV_CHUNK + 2], (KV_CHUNK + 2) as f32);
        kv.truncate(2);
        assert_eq!(kv.len(), 2);
        let (k, _) = kv.append(&positions(100, 1), &positions(100, 1)).unwrap();
        let got: Vec<f32> = k.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![0.0, 1.0, 100.0], "position 2 was overwritten");
    }
}
