//! Softmax over the last dimension with a gradient, for training. candle's
//! fused `softmax_last_dim` has no backward pass and its composed
//! `softmax` keeps three full-size intermediates per call for the backward
//! pass; on attention scores (heads × positions²) in every layer that
//! dominates a training step's memory. This op keeps only its output:
//! `dx = y ⊙ (g − Σ(g ⊙ y))`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};

use crate::error::Result;

/// Softmax over the last dimension that backpropagates, storing only its
/// output. f32 tensors on the CPU take the one-output kernel; anything
/// else the composed candle ops.
pub fn softmax_last_dim_trainable(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        Ok(x.contiguous()?.apply_op1(SoftmaxLastDim)?)
    } else {
        Ok(candle_nn::ops::softmax(x, D::Minus1)?)
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim-trainable"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else {
            candle_core::bail!("{}: f32 only", self.name());
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: contiguous input only", self.name());
        };
        let data = &all[start..end];
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; data.len()];
        for (src, dst) in data.chunks(dim).zip(out.chunks_mut(dim)) {
            let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
            for d in dst.iter_mut() {
                *d *= inv;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_softmax_and_its_gradient() {
        let x = Var::new(
            &[[1.0f32, 2.0, -3.0, 0.5], [0.0, f32::NEG_INFINITY, 4.0, 1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let w = Tensor::new(
            &[[0.3f32, -1.0, 2.0, 0.7], [1.5, 0.2, -0.4, 0.9]],
            &Device::Cpu,
        )
        .unwrap();
        let ours = softmax_last_dim_trainable(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let g_ours = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g_theirs = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g_ours.get(x.as_tensor()).unwrap(),
            g_theirs.get(x.as_tensor()).unwrap(),
        );
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
