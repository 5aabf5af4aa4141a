//! The one linear layer every projection of the model goes through.
//!
//! A [`Linear`] holds its weight as a [`QMatMul`], which covers dense
//! (f32/f16/bf16) and GGUF-quantized weights alike, plus an optional bias.
//! Adapters (LoRA) extend this type, never the model file.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::error::Result;

/// Number of input rows from which a quantized CPU weight is dequantized on
/// the fly and multiplied with a dense GEMM: a prompt of many tokens is
/// compute-bound, and dense f32 GEMM is several times faster there than
/// quantized dot products; a single decode row stays memory-bound and keeps
/// the quantized kernel.
pub const DENSE_PREFILL_MIN_ROWS: usize = 16;

/// `y = x Wᵀ (+ b)` with `W` of shape `(out_features, in_features)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
    dense_prefill: bool,
}

impl Linear {
    /// Wraps a dense weight `(out, in)` and optional bias `(out,)`.
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            weight: QMatMul::Tensor(weight),
            bias,
            in_features,
            out_features,
            dense_prefill: false,
        })
    }

    /// Wraps a quantized weight `(out, in)` and optional bias `(out,)`.
    pub fn from_quantized(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.shape().dims2()?;
        Ok(Self {
            weight: QMatMul::from_qtensor(weight)?,
            bias,
            in_features,
            out_features,
            dense_prefill: false,
        })
    }

    /// Enables the dense-GEMM path for many-row inputs on quantized CPU
    /// weights (see [`DENSE_PREFILL_MIN_ROWS`]). Off, every input goes
    /// through the quantized kernel, bit-for-bit like llama.cpp-style runtimes.
    pub fn with_dense_prefill(mut self, on: bool) -> Self {
        self.dense_prefill = on;
        self
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The GGML type of a quantized weight, `None` for dense weights.
    pub fn quantized_dtype(&self) -> Option<GgmlDType> {
        match &self.weight {
            QMatMul::QTensor(q) => Some(q.dtype()),
            _ => None,
        }
    }

    /// The weight as a dense tensor (dequantized when quantized).
    pub fn dense_weight(&self) -> Result<Tensor> {
        Ok(match &self.weight {
            QMatMul::QTensor(q) => q.dequantize(&q.device())?,
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.clone(),
        })
    }

    /// Applies the layer to `x` of shape `(.., in_features)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            QMatMul::QTensor(q)
                if self.dense_prefill
                    && x.device().is_cpu()
                    && rows(x) >= DENSE_PREFILL_MIN_ROWS =>
            {
                let w = q.dequantize(&q.device())?;
                let x = x.to_dtype(DType::F32)?;
                x.broadcast_matmul(&w.t()?)?
            }
            weight => weight.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

fn rows(x: &Tensor) -> usize {
    let dims = x.dims();
    dims[..dims.len().saturating_sub(1)].iter().product()
}
