//! cuBLAS SGEMM, opened at run time like NVRTC ([`crate::libsearch`]): cudarc only tries
//! `libcublas.so.12` and older names on the loader path, while CUDA 13 ships
//! `libcublas.so.13` and the wheels keep it in `site-packages`. Its `libcublasLt` sibling is
//! loaded first from the same folder, so the dependency resolves without a loader path. The
//! four entry points used (`cublasCreate_v2`, `cublasSetStream_v2`, `cublasSgemm_v2`,
//! `cublasDestroy_v2`) have the same ABI in CUDA 11, 12 and 13.
//!
//! Verified only on a GPU.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::path::Path;

use crate::error::{KernelError, Result};
use crate::libsearch::{self, LibSpec};

/// How cuBLAS is found.
pub const SPEC: LibSpec = LibSpec {
    env: "SPARSE_CUBLAS",
    names: &["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
    wheel_dirs: &["nvidia/cu13/lib", "nvidia/cublas/lib"],
};

type Handle = *mut c_void;
type Sgemm = unsafe extern "C" fn(
    Handle,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    *const f32,
    *mut f32,
    c_int,
) -> c_int;

/// A cuBLAS handle bound to one stream.
pub struct Cublas {
    path: String,
    handle: Handle,
    sgemm: Sgemm,
    destroy: unsafe extern "C" fn(Handle) -> c_int,
    _libs: Vec<libloading::Library>,
}

fn err(what: &str, code: c_int) -> KernelError {
    KernelError::Backend(format!("cuBLAS {what} failed (status {code})"))
}

impl Cublas {
    /// Opens cuBLAS and creates a handle on `stream` (a `CUstream`).
    pub fn new(stream: *mut c_void) -> Result<Self> {
        let siblings = RefCell::new(Vec::new());
        let (lib, path) = libsearch::open(&SPEC, |p: &Path| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let lt = p.with_file_name(name.replacen("libcublas", "libcublasLt", 1));
            // SAFETY: cuBLASLt's initialisers only.
            if let Ok(l) = unsafe { libloading::Library::new(lt) } {
                siblings.borrow_mut().push(l);
            }
        })
        .map_err(|tried| {
            KernelError::DeviceUnavailable(format!(
                "cuBLAS not found (set SPARSE_CUBLAS to libcublas.so.* or its folder, or \
                 `pip install nvidia-cublas-cu12`); {tried}"
            ))
        })?;
        // SAFETY: the signatures are cuBLAS' v2 C API (cublas_api.h).
        unsafe {
            let create: unsafe extern "C" fn(*mut Handle) -> c_int =
                *lib.get(b"cublasCreate_v2\0").map_err(sym)?;
            let set_stream: unsafe extern "C" fn(Handle, *mut c_void) -> c_int =
                *lib.get(b"cublasSetStream_v2\0").map_err(sym)?;
            let sgemm: Sgemm = *lib.get(b"cublasSgemm_v2\0").map_err(sym)?;
            let destroy: unsafe extern "C" fn(Handle) -> c_int =
                *lib.get(b"cublasDestroy_v2\0").map_err(sym)?;
            let mut handle: Handle = std::ptr::null_mut();
            match create(&mut handle) {
                0 => {}
                rc => return Err(err("create", rc)),
            }
            if let rc @ 1.. = set_stream(handle, stream) {
                destroy(handle);
                return Err(err("set stream", rc));
            }
            let mut libs = siblings.into_inner();
            libs.push(lib);
            Ok(Cublas {
                path: path.display().to_string(),
                handle,
                sgemm,
                destroy,
                _libs: libs,
            })
        }
    }

    /// Where it was loaded from.
    pub fn describe(&self) -> String {
        format!("cuBLAS from {}", self.path)
    }

    /// Column-major `C = alpha·op(A)·op(B) + beta·C` (cuBLAS' own convention).
    ///
    /// # Safety
    /// The device buffers hold what the dimensions imply.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm(
        &self,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        beta: f32,
        c: u64,
        ldc: usize,
    ) -> Result<()> {
        let dim = |v: usize| {
            c_int::try_from(v).map_err(|_| {
                KernelError::InvalidArgument(format!("GEMM size {v} exceeds cuBLAS' int"))
            })
        };
        match (self.sgemm)(
            self.handle,
            c_int::from(ta),
            c_int::from(tb),
            dim(m)?,
            dim(n)?,
            dim(k)?,
            &alpha,
            a as *const f32,
            dim(lda.max(1))?,
            b as *const f32,
            dim(ldb.max(1))?,
            &beta,
            c as *mut f32,
            dim(ldc.max(1))?,
        ) {
            0 => Ok(()),
            rc => Err(err("SGEMM", rc)),
        }
    }
}

fn sym(e: libloading::Error) -> KernelError {
    KernelError::DeviceUnavailable(format!("cuBLAS lacks an entry point: {e}"))
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: the handle was created by this library and is destroyed once.
        unsafe { (self.destroy)(self.handle) };
    }
}
