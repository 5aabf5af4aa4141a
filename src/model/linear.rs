//! The one linear layer every projection of the model goes through.
//!
//! A [`Linear`] holds its weight as a [`QMatMul`], which covers dense
//! (f32/f16/bf16) and GGUF-quantized weights alike, or, for the quantized
//! CPU weights the block kernel takes, only as that kernel's tiles (one
//! copy of the weight in memory, not the file's blocks beside the tiles
//! beside candle's own repacked ones); plus an optional bias and the LoRA
//! deltas of any adapters attached (one per adapter slot), applied
//! unmerged on top of the base weight, quantized or not.

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use std::sync::Arc;

use super::gemv::{BlockGemv, PackedBlocks};
use super::weights::EmbeddingTable;
use crate::error::Result;
use crate::lora::{AdapterError, LoraDelta};

/// Number of input rows from which a quantized CPU weight the block
/// kernel does not take goes through a GEMM: candle's quantized GEMM where
/// it has a fast one (see [`has_fast_quantized_gemm`]), else tile-by-tile
/// dequantization and a dense GEMM (a prompt of many tokens is
/// compute-bound, and dense f32 GEMM is faster there than one quantized dot
/// product per output). A weight the block kernel takes goes through it at
/// any number of rows, four rows a pass over its tiles: `sqlagent
/// --threads 2 bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf
/// --prompt-ids IDS` prefilled 40 ids at 890 tokens/s that way (a row a
/// pass) against 400 dequantized, 512 ids at 678 against 597.
pub const DENSE_PREFILL_MIN_ROWS: usize = 16;

/// Most f32 bytes of weight dequantized at once on the dense prefill path:
/// the weight is never dequantized whole (an 8B model's would be 32 GB).
const DENSE_TILE_BYTES: usize = 8 << 20;

/// Whether candle multiplies many rows with a `(n, k)` weight of `dtype`
/// in a quantized GEMM faster than dequantizing it: its repacked x86
/// kernels (AVX-512 VNNI tiles, AMX for Q4_K) take Q4_K, Q6_K and Q8_0 with
/// `k` a multiple of 256 and `n` of 16. Measured with
/// `scripts/bench-vs-llamacpp` on the Llama-3.2-1B shape (Q4_K_M, 2
/// threads): prefill 162 tokens/s through them against 51 dequantized.
pub fn has_fast_quantized_gemm(dtype: GgmlDType, n: usize, k: usize) -> bool {
    cfg!(target_arch = "x86_64")
        && matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K | GgmlDType::Q8_0)
        && k.is_multiple_of(256)
        && n.is_multiple_of(16)
}

/// How a [`Linear`] holds its weight.
#[derive(Debug, Clone)]
enum Weight {
    /// Dense or quantized, multiplied by candle's kernels.
    Candle(QMatMul),
    /// Quantized, held only as the block kernel's tiles, which multiply
    /// any number of rows; the GGUF blocks are rebuilt from them for
    /// anything else (dequantizing, merging an adapter).
    Packed(PackedBlocks),
}

/// `y = x Wᵀ (+ b)` with `W` of shape `(out_features, in_features)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
    fast_kernels: bool,
    /// LoRA deltas by adapter slot (`None`: that adapter leaves this layer alone).
    adapters: Vec<Option<LoraDelta>>,
}

impl Linear {
    /// Wraps a dense weight `(out, in)` and optional bias `(out,)`.
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            weight: Weight::Candle(QMatMul::Tensor(weight)),
            bias,
            in_features,
            out_features,
            fast_kernels: false,
            adapters: Vec::new(),
        })
    }

    /// Wraps a quantized weight `(out, in)` and optional bias `(out,)`.
    ///
    /// `fast_kernels` enables this crate's CPU paths: a weight the block
    /// kernel takes (see [`super::gemv::takes`]) is repacked into its tiles
    /// and `weight` dropped, every input then going through that kernel;
    /// another weight is dequantized tile by tile for a dense GEMM on
    /// many-row inputs where candle has no fast quantized GEMM (see
    /// [`DENSE_PREFILL_MIN_ROWS`]). Off, every input goes through candle's
    /// quantized kernels, bit-for-bit like its `quantized_llama`.
    pub fn from_quantized(
        weight: QTensor,
        bias: Option<Tensor>,
        fast_kernels: bool,
    ) -> Result<Self> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let packed = fast_kernels
            .then(|| PackedBlocks::for_weight(&weight))
            .flatten();
        let weight = match packed {
            Some(packed) => Weight::Packed(packed),
            None => Weight::Candle(QMatMul::from_qtensor(weight)?),
        };
        Ok(Self {
            weight,
            bias,
            in_features,
            out_features,
            fast_kernels,
            adapters: Vec::new(),
        })
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
            Weight::Candle(QMatMul::QTensor(q)) => Some(q.dtype()),
            Weight::Packed(packed) => Some(packed.dtype()),
            Weight::Candle(_) => None,
        }
    }

    /// Bytes of the weight as held (what a decode step reads).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
            Weight::Packed(packed) => packed.size_in_bytes(),
        }
    }

    /// The weight as a dense tensor (dequantized when quantized).
    pub fn dense_weight(&self) -> Result<Tensor> {
        Ok(match &self.weight {
            Weight::Candle(QMatMul::QTensor(q)) => q.dequantize(&q.device())?,
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.clone(),
            Weight::Packed(packed) => packed.to_qtensor()?.dequantize(&Device::Cpu)?,
        })
    }

    /// Rows `ids` of the weight, for a head tied to the token embeddings:
    /// `ids` of shape `(..)` gives `(.., in_features)`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match &self.weight {
            Weight::Candle(weight) => weight.embedding(ids)?,
            Weight::Packed(packed) => {
                let mut dims = ids.dims().to_vec();
                dims.push(self.in_features);
                let rows: Vec<usize> = ids
                    .flatten_all()?
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|id| id as usize)
                    .collect();
                packed.rows(&rows)?.reshape(dims)?
            }
        })
    }

    /// The weight as an embedding table of its own (for a head tied to
    /// the embeddings that is about to change).
    pub fn embedding_table(&self) -> Result<EmbeddingTable> {
        Ok(match &self.weight {
            Weight::Candle(QMatMul::QTensor(q)) => EmbeddingTable::Quantized(q.clone()),
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                EmbeddingTable::Dense(t.clone())
            }
            Weight::Packed(packed) => EmbeddingTable::Quantized(Arc::new(packed.to_qtensor()?)),
        })
    }

    /// Whether the weight is held only as the block kernel's tiles.
    pub fn held_as_tiles(&self) -> bool {
        matches!(self.weight, Weight::Packed(_))
    }

    /// Replaces a quantized weight by its dense f32 dequantization, so
    /// gradients flow through the layer (training); dense weights stay.
    pub fn make_dense(&mut self) -> Result<()> {
        if self.quantized_dtype().is_some() {
            self.weight = Weight::Candle(QMatMul::Tensor(self.dense_weight()?));
        }
        Ok(())
    }

    /// Attaches `delta` as adapter `slot`, to be applied unmerged when a
    /// forward pass asks for that slot.
    pub fn set_adapter(&mut self, slot: usize, delta: LoraDelta) -> Result<(), AdapterError> {
        self.check_fits(&delta)?;
        if self.adapters.len() <= slot {
            self.adapters.resize(slot + 1, None);
        }
        self.adapters[slot] = Some(delta);
        Ok(())
    }

    /// Adds `delta` into the weight for good: `W + scale · B A`. A
    /// quantized weight becomes dense f32 (exact, at 4 bytes a weight).
    pub fn merge(&mut self, delta: &LoraDelta) -> Result<()> {
        self.check_fits(delta)
            .map_err(|kind| crate::Error::invalid("adapter", kind.to_string()))?;
        let weight = self.dense_weight()?;
        let dtype = match &self.weight {
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dtype(),
            _ => DType::F32,
        };
        let update = delta.weight()?.to_device(weight.device())?;
        let merged = (weight.to_dtype(DType::F32)? + update.to_dtype(DType::F32)?)?;
        self.weight = Weight::Candle(QMatMul::Tensor(merged.to_dtype(dtype)?));
        Ok(())
    }

    /// Whether `delta` has this layer's shape.
    pub fn check_fits(&self, delta: &LoraDelta) -> Result<(), AdapterError> {
        let (want, found) = (
            [self.out_features, self.in_features],
            [delta.out_features(), delta.in_features()],
        );
        if want != found {
            return Err(AdapterError::ShapeMismatch {
                tensor: "B·A".into(),
                expected: want.to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }

    /// Applies the layer to `x` of shape `(.., in_features)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }

    /// [`Linear::forward`] plus, when `adapter` names a slot with a delta
    /// for this layer, `scale · B (A x)`.
    pub fn forward_with(&self, x: &Tensor, adapter: Option<usize>) -> Result<Tensor> {
        let y = self.base_forward(x)?;
        match adapter
            .and_then(|s| self.adapters.get(s))
            .and_then(Option::as_ref)
        {
            Some(delta) => Ok((&y + delta.forward(x)?.to_dtype(y.dtype())?)?),
            None => Ok(y),
        }
    }

    /// [`Linear::forward_with`] for training: gradients flow to `x` (and
    /// to the adapter's factors) but no gradient is computed for the
    /// frozen weight, which would cost as much as the one for `x` and keep
    /// a weight-sized tensor per layer alive. Needs a dense weight
    /// ([`Linear::make_dense`]).
    pub fn forward_frozen(&self, x: &Tensor, adapter: Option<usize>) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Candle(QMatMul::Tensor(w))
                if x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 =>
            {
                x.contiguous()?
                    .apply_op1(FrozenMatmul { weight: w.clone() })?
            }
            _ => self.base_forward(x)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match adapter
            .and_then(|s| self.adapters.get(s))
            .and_then(Option::as_ref)
        {
            Some(delta) => Ok((&y + delta.forward(x)?)?),
            None => Ok(y),
        }
    }

    fn base_forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            // Each tile of weights stays in cache while every row passes
            // over it. Tiles are only made for CPU weights.
            Weight::Packed(packed) => {
                let y = x
                    .to_dtype(DType::F32)?
                    .contiguous()?
                    .apply_op1_no_bwd(&BlockGemv(packed))?;
                y.to_dtype(x.dtype())?
            }
            Weight::Candle(QMatMul::QTensor(q)) if x.device().is_cpu() => {
                let many_rows = rows(x) >= DENSE_PREFILL_MIN_ROWS;
                let fast_gemm =
                    has_fast_quantized_gemm(q.dtype(), self.out_features, self.in_features);
                if many_rows && self.fast_kernels && !fast_gemm {
                    dense_by_tiles(q, x)?
                } else {
                    QMatMul::QTensor(q.clone()).forward(x)?
                }
            }
            Weight::Candle(weight) => weight.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// `x Wᵀ` for a quantized CPU `W`, dequantized [`DENSE_TILE_BYTES`] of
/// rows at a time, each tile multiplied with a dense GEMM.
fn dense_by_tiles(q: &QTensor, x: &Tensor) -> Result<Tensor> {
    let (n, k) = q.shape().dims2()?;
    let x = x.to_dtype(DType::F32)?;
    let tile_rows = (DENSE_TILE_BYTES / (4 * k)).clamp(16, n.max(16));
    if tile_rows >= n {
        return Ok(x.broadcast_matmul(&q.dequantize(&Device::Cpu)?.t()?)?);
    }
    let data = q.data()?;
    let row_bytes = data.len() / n;
    let mut parts = Vec::with_capacity(n.div_ceil(tile_rows));
    for start in (0..n).step_by(tile_rows) {
        let end = (start + tile_rows).min(n);
        let bytes = std::borrow::Cow::Borrowed(&data[start * row_bytes..end * row_bytes]);
        let storage = QStorage::from_data(bytes, &Device::Cpu, q.dtype())?;
        let tile = QTensor::new(storage, (end - start, k))?.dequantize(&Device::Cpu)?;
        parts.push(x.broadcast_matmul(&tile.t()?)?);
    }
    Ok(Tensor::cat(&parts, x.rank() - 1)?)
}

fn rows(x: &Tensor) -> usize {
    let dims = x.dims();
    dims[..dims.len().saturating_sub(1)].iter().product()
}

/// `x Wᵀ` with a constant `W`: the backward pass gives `x` its gradient
/// `g W` and never computes one for `W`.
struct FrozenMatmul {
    weight: Tensor,
}

impl candle_core::CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(all) = storage else {
            candle_core::bail!("{}: f32 only", self.name());
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: contiguous input only", self.name());
        };
        let x = Tensor::from_slice(&all[start..end], layout.shape(), &candle_core::Device::Cpu)?;
        let y = x.broadcast_matmul(&self.weight.t()?)?.contiguous()?;
        let shape = y.shape().clone();
        let (storage, y_layout) = y.storage_and_layout();
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = &*storage else {
            candle_core::bail!("{}: unexpected output storage", self.name());
        };
        let Some((a, b)) = y_layout.contiguous_offsets() else {
            candle_core::bail!("{}: non-contiguous output", self.name());
        };
        Ok((candle_core::CpuStorage::F32(data[a..b].to_vec()), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.weight)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemv::max_relative_gap as max_gap;
    use super::*;

    /// With the fast kernels, a weight the block kernel takes is held only
    /// as its tiles, multiplies any number of rows (one, a group of four
    /// and a rest, a prompt) like candle's kernels on the file's blocks,
    /// and gives back exactly those blocks' rows (a tied embedding's
    /// lookups) and dequantization.
    #[test]
    fn a_weight_held_as_tiles_alone_computes_what_the_file_s_blocks_do() {
        let (n, k) = (48, 512);
        let dense = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q4_1,
        ] {
            let q = QTensor::quantize(&dense, dtype).unwrap();
            let exact = Linear::from_quantized(q, None, false).unwrap();
            let q = QTensor::quantize(&dense, dtype).unwrap();
            let file_bytes = q.storage_size_in_bytes();
            let fast = Linear::from_quantized(q, None, true).unwrap();
            assert_eq!(fast.quantized_dtype(), Some(dtype));
            if !super::super::gemv::supported() {
                assert_eq!(
                    fast.weight_bytes(),
                    file_bytes,
                    "{dtype:?}: file blocks kept"
                );
                continue;
            }
            assert!(
                matches!(fast.weight, Weight::Packed(_)),
                "{dtype:?}: held as tiles only"
            );
            assert!(fast.weight_bytes() < file_bytes * 9 / 8, "{dtype:?}");
            for rows in [1, 5, 40] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, k), &Device::Cpu).unwrap();
                let gap = max_gap(&fast.forward(&x).unwrap(), &exact.forward(&x).unwrap());
                assert!(gap < 2e-2, "{dtype:?}, {rows} rows: {gap}");
            }
            let ids = Tensor::new(&[[3u32, 0, 47], [16, 15, 17]], &Device::Cpu).unwrap();
            let rows = fast.embedding(&ids).unwrap();
            assert_eq!(rows.dims(), &[2, 3, k]);
            assert_eq!(
                max_gap(&rows, &exact.embedding(&ids).unwrap()),
                0.0,
                "{dtype:?} rows"
            );
            let (a, b) = (fast.dense_weight().unwrap(), exact.dense_weight().unwrap());
            assert_eq!(max_gap(&a, &b), 0.0, "{dtype:?} dequantized");
            let mut dense_fast = fast.clone();
            dense_fast.make_dense().unwrap();
            assert_eq!(dense_fast.quantized_dtype(), None);
            assert_eq!(
                max_gap(&dense_fast.dense_weight().unwrap(), &b),
                0.0,
                "{dtype:?} made dense"
            );
        }
    }
}
