//! [`CudaStorage`]: a typed device buffer, freed when dropped.

use std::marker::PhantomData;
use std::sync::Arc;

use super::runtime::DevPtr;
use super::{context, GpuContext};
use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::tensor::Elem;

/// Device memory on a CUDA device (real or emulated): `len` values of `T`.
pub struct CudaStorage<T> {
    ptr: DevPtr,
    len: usize,
    ctx: Arc<GpuContext>,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for CudaStorage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({:?}, {} values)",
            self.ctx.device(),
            self.len
        )
    }
}

fn bytes_of<T>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or_else(|| KernelError::InvalidArgument(format!("{len} values overflow memory")))
}

impl<T: Elem> CudaStorage<T> {
    /// `len` zeroed values on `device`.
    pub fn zeros(len: usize, device: Device) -> Result<Self> {
        let ctx = context(device)?;
        let ptr = ctx.runtime().alloc_zeroed(bytes_of::<T>(len)?)?;
        Ok(CudaStorage {
            ptr,
            len,
            ctx,
            _t: PhantomData,
        })
    }

    /// Uploads host data to `device`.
    pub fn from_host(data: &[T], device: Device) -> Result<Self> {
        let s = Self::zeros(data.len(), device)?;
        // SAFETY: the buffer holds exactly `data.len()` values.
        unsafe { s.ctx.runtime().upload(s.ptr, bytemuck::cast_slice(data))? };
        Ok(s)
    }

    /// Copies to the host (waits for queued work).
    pub fn to_host(&self) -> Result<Vec<T>> {
        let mut v = vec![T::zeroed(); self.len];
        // SAFETY: the buffer holds exactly `len` values.
        unsafe {
            self.ctx
                .runtime()
                .download(self.ptr, bytemuck::cast_slice_mut(&mut v))?
        };
        Ok(v)
    }

    /// A device-side copy.
    pub fn try_clone(&self) -> Result<Self> {
        let s = Self::zeros(self.len, self.ctx.device())?;
        // SAFETY: both buffers hold `len` values.
        unsafe {
            self.ctx
                .runtime()
                .copy(s.ptr, self.ptr, bytes_of::<T>(self.len)?)?
        };
        Ok(s)
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.ctx.device()
    }

    /// The context.
    pub fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The device address.
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Elem> Clone for CudaStorage<T> {
    fn clone(&self) -> Self {
        // Like cudarc's own Clone, this fails only when the device is out of memory.
        self.try_clone()
            .unwrap_or_else(|e| panic!("copying a tensor on {:?}: {e}", self.device()))
    }
}

impl<T> Drop for CudaStorage<T> {
    fn drop(&mut self) {
        let bytes = self.len * std::mem::size_of::<T>();
        // SAFETY: allocated by this runtime with this size, and dropped once.
        unsafe { self.ctx.runtime().free(self.ptr, bytes) };
    }
}
