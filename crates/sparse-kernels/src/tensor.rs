//! [`Tensor`]: a shaped f32 buffer on a device, and [`Storage`], the enum that forwards ops
//! to the backend that owns the data (candle style).

use crate::device::Device;
use crate::error::{shape_err, KernelError, Result};

/// The data of a tensor on its device. Ops match on this to pick their backend; the CUDA
/// backend adds its variant here.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// Host memory (rayon backend).
    Cpu(Vec<f32>),
}

/// A dense, row-major (contiguous) f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    /// A zero tensor.
    pub fn zeros(shape: &[usize], device: Device) -> Result<Tensor> {
        Self::from_vec(shape, vec![0.0; shape.iter().product()], device)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: Device) -> Result<Tensor> {
        Self::from_vec(shape, vec![value; shape.iter().product()], device)
    }

    /// Wraps host data; errors if the length does not match the shape.
    pub fn from_vec(shape: &[usize], data: Vec<f32>, device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return shape_err(
                "tensor",
                format!("{} values for shape {shape:?} ({n} elements)", data.len()),
            );
        }
        match device {
            Device::Cpu => Ok(Tensor {
                shape: shape.to_vec(),
                storage: Storage::Cpu(data),
            }),
            Device::Cuda(o) => Device::cuda(o).map(|_| unreachable!("no CUDA backend")),
        }
    }

    /// A CPU tensor from host data (the common case in tests and data loading).
    pub fn cpu(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        Self::from_vec(shape, data, Device::Cpu)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        match self.storage {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The storage (for backends).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Host values (for CPU tensors without a copy).
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
        }
    }

    /// Mutable host values.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
        }
    }

    /// A copy of the values on the host.
    pub fn to_vec(&self) -> Vec<f32> {
        self.as_slice().to_vec()
    }

    /// Consumes the tensor, returning host values.
    pub fn into_vec(self) -> Vec<f32> {
        match self.storage {
            Storage::Cpu(v) => v,
        }
    }

    /// The same data under another shape with the same element count (also `flatten`).
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            return shape_err(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            );
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage,
        })
    }

    /// Flattens all dims after the first: `[B, ...] -> [B, rest]`.
    pub fn flatten(self) -> Result<Tensor> {
        let b = *self.shape.first().unwrap_or(&1);
        let rest = self.numel() / b.max(1);
        self.reshape(&[b, rest])
    }

    /// Errors unless the shape equals `expected`.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return shape_err(
                op,
                format!("expected shape {expected:?}, got {:?}", self.shape),
            );
        }
        Ok(())
    }

    /// Errors unless both tensors are on the same device.
    pub fn same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device() != other.device() {
            return Err(KernelError::DeviceMismatch {
                op,
                a: self.device(),
                b: other.device(),
            });
        }
        Ok(())
    }
}
