//! [`TensorOf`]: a shaped buffer on a device, and [`Storage`], the enum every op dispatches
//! on (candle style). [`Tensor`] (f32) carries activations, weights and gradients;
//! [`IndexTensor`] (u32) carries labels, max-pool argmaxes and counters.
//!
//! Host access is explicit and fallible: [`TensorOf::to_host`] copies to the host (the
//! named boundary for logging, checkpoints and export), [`TensorOf::into_host`] moves out
//! without a copy when the data already is on the host. Ops of the CPU backend borrow the
//! host buffer through crate-private accessors that fail, never panic, on other devices.

use std::sync::Arc;

use crate::backend::CudaStorage;
use crate::device::Device;
use crate::error::{shape_err, KernelError, Result};

/// Element types a tensor can hold (plain bytes, so they can be copied to a device).
pub trait Elem:
    bytemuck::Pod + Default + PartialEq + Send + Sync + std::fmt::Debug + 'static
{
}
impl Elem for f32 {}
impl Elem for u32 {}
impl Elem for u64 {}
impl Elem for f64 {}

/// The data of a tensor on its device.
#[derive(Debug)]
pub enum Storage<T> {
    /// Host memory (rayon backend), shared copy-on-write: a clone shares the buffer, and
    /// the first mutable borrow of a shared buffer copies it ([`Arc::make_mut`]). So a tensor
    /// that two consumers read (a residual block's input, the gradient into both of its
    /// branches) costs no copy, and tensors keep value semantics.
    Cpu(Arc<Vec<T>>),
    /// CUDA device memory (a GPU, or the emulated device's host memory).
    Cuda(CudaStorage<T>),
}

impl<T: Elem> Clone for Storage<T> {
    fn clone(&self) -> Self {
        match self {
            Storage::Cpu(v) => Storage::Cpu(Arc::clone(v)),
            Storage::Cuda(s) => Storage::Cuda(s.clone()),
        }
    }
}

impl<T: Elem> Storage<T> {
    /// Places host data on `device`.
    pub fn from_host(data: Vec<T>, device: Device) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(Arc::new(data))),
            d => Ok(Storage::Cuda(CudaStorage::from_host(&data, d)?)),
        }
    }

    /// `len` zeros on `device` (allocated zeroed there, no upload).
    pub fn zeros(len: usize, device: Device) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(Arc::new(vec![T::default(); len]))),
            d => Ok(Storage::Cuda(CudaStorage::zeros(len, d)?)),
        }
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.device(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A host copy of the data.
    pub fn to_host(&self) -> Result<Vec<T>> {
        match self {
            Storage::Cpu(v) => Ok(v.to_vec()),
            Storage::Cuda(s) => s.to_host(),
        }
    }
}

/// A fresh [`TensorOf::generation`].
fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A dense, row-major (contiguous) tensor of `T` on a device.
#[derive(Debug)]
pub struct TensorOf<T> {
    shape: Vec<usize>,
    storage: Storage<T>,
    generation: u64,
}

impl<T: Elem> Clone for TensorOf<T> {
    fn clone(&self) -> Self {
        TensorOf {
            shape: self.shape.clone(),
            storage: self.storage.clone(),
            generation: self.generation,
        }
    }
}

/// An f32 tensor: activations, weights, gradients, optimizer state, scores.
pub type Tensor = TensorOf<f32>;
/// A u32 tensor: labels, max-pool argmaxes, activity counters.
pub type IndexTensor = TensorOf<u32>;

impl<T: Elem> TensorOf<T> {
    /// A tensor of `T::default()` (zero).
    pub fn zeros(shape: &[usize], device: Device) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let Some(n) = n else {
            return shape_err("tensor", format!("shape {shape:?} overflows"));
        };
        Ok(TensorOf {
            shape: shape.to_vec(),
            storage: Storage::zeros(n, device)?,
            generation: next_generation(),
        })
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T, device: Device) -> Result<Self> {
        Self::from_vec(shape, vec![value; shape.iter().product()], device)
    }

    /// Places host data on `device`; errors if the length does not match the shape or the
    /// device cannot be used.
    pub fn from_vec(shape: &[usize], data: Vec<T>, device: Device) -> Result<Self> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return shape_err(
                "tensor",
                format!("{} values for shape {shape:?} ({n} elements)", data.len()),
            );
        }
        Ok(TensorOf {
            shape: shape.to_vec(),
            storage: Storage::from_host(data, device)?,
            generation: next_generation(),
        })
    }

    /// A CPU tensor from host data (the common case in tests and data loading).
    pub fn cpu(shape: &[usize], data: Vec<T>) -> Result<Self> {
        Self::from_vec(shape, data, Device::Cpu)
    }

    /// Wraps existing storage; errors if its length does not match the shape.
    pub fn from_storage(shape: &[usize], storage: Storage<T>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if storage.len() != n {
            return shape_err(
                "tensor",
                format!(
                    "{} values for shape {shape:?} ({n} elements)",
                    storage.len()
                ),
            );
        }
        Ok(TensorOf {
            shape: shape.to_vec(),
            storage,
            generation: next_generation(),
        })
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
        self.storage.device()
    }

    /// The storage (for backends).
    pub fn storage(&self) -> &Storage<T> {
        &self.storage
    }

    /// A host copy of the values: the named boundary where device data reaches the host
    /// (logging, checkpoints, export, tests).
    pub fn to_host(&self) -> Result<Vec<T>> {
        self.storage.to_host()
    }

    /// The values on the host, without a copy when they already are there.
    pub fn into_host(self) -> Result<Vec<T>> {
        match self.storage {
            Storage::Cpu(v) => Ok(Arc::try_unwrap(v).unwrap_or_else(|v| v.to_vec())),
            Storage::Cuda(s) => s.to_host(),
        }
    }

    /// The tensor on `device`: moved without a copy when it already is there.
    pub fn to_device(self, device: Device) -> Result<Self> {
        if self.device() == device {
            return Ok(self);
        }
        let shape = self.shape.clone();
        Self::from_vec(&shape, self.into_host()?, device)
    }

    /// The host buffer of a CPU tensor (CPU backend only).
    pub(crate) fn cpu_data(&self) -> Result<&[T]> {
        match &self.storage {
            Storage::Cpu(v) => Ok(v),
            Storage::Cuda(s) => Err(not_host(s.device())),
        }
    }

    /// A number that changes whenever a host tensor's contents may have changed: it is
    /// fresh for every new tensor and for every mutable borrow of the host buffer (clones
    /// and reshapes keep it). So an unchanged generation means unchanged contents, which
    /// lets the optimizer skip work it already did ([`MaskPolicy::Active`]). Device
    /// kernels write through shared references, so it says nothing about device tensors.
    ///
    /// [`MaskPolicy::Active`]: crate::ops::optim::MaskPolicy::Active
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The mutable host buffer of a CPU tensor (CPU backend only), copied first when a
    /// clone shares it. Moves the [`generation`](Self::generation) on.
    pub(crate) fn cpu_data_mut(&mut self) -> Result<&mut [T]> {
        self.generation = next_generation();
        match &mut self.storage {
            Storage::Cpu(v) => Ok(Arc::<Vec<T>>::make_mut(v).as_mut_slice()),
            Storage::Cuda(s) => Err(not_host(s.device())),
        }
    }

    /// The same data under another shape with the same element count (also `flatten`).
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.numel() {
            return shape_err(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            );
        }
        Ok(TensorOf {
            shape: shape.to_vec(),
            storage: self.storage,
            generation: self.generation,
        })
    }

    /// Flattens all dims after the first: `[B, ...] -> [B, rest]`.
    pub fn flatten(self) -> Result<Self> {
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
    pub fn same_device<U: Elem>(&self, op: &'static str, other: &TensorOf<U>) -> Result<()> {
        same(op, self.device(), other.device())
    }
}

pub(crate) fn same(op: &'static str, a: Device, b: Device) -> Result<()> {
    if a != b {
        return Err(KernelError::DeviceMismatch { op, a, b });
    }
    Ok(())
}

fn not_host(device: Device) -> KernelError {
    KernelError::InvalidArgument(format!(
        "tensor on {device:?} read as host memory by the CPU backend"
    ))
}
