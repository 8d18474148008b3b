//! NVRTC, loaded at run time from wherever CUDA puts it, so a user never adds symlinks.
//!
//! cudarc opens NVRTC by bare library names only (`libnvrtc.so`, `libnvrtc.so.12`, ...), on
//! the loader's search path. CUDA 13 ships `libnvrtc.so.13`, and the PyPI wheels
//! (`nvidia-cuda-nvrtc-cu12`, or `nvidia-cuda-nvrtc` for CUDA 13) put `libnvrtc.so.12` /
//! `.so.13` inside Python's `site-packages`, off that path. This module therefore finds the
//! library itself ([`crate::libsearch`]: `SPARSE_NVRTC`, sonames, the toolkit folders, the
//! wheels) and calls its C API, which is the same in CUDA 11, 12 and 13.
//!
//! NVRTC needs no GPU: `cargo xtask kernels` uses this on machines without one.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::error::{KernelError, Result};
use crate::libsearch::{self, LibSpec};

/// The environment variable naming the NVRTC library or its folder.
pub const NVRTC_ENV: &str = "SPARSE_NVRTC";

type Prog = *mut c_void;

/// The loaded library and the entry points used.
pub struct Nvrtc {
    _lib: libloading::Library,
    path: String,
    create: unsafe extern "C" fn(
        *mut Prog,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int,
    log_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    log: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    ptx_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    ptx: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    cubin_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    cubin: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    destroy: unsafe extern "C" fn(*mut Prog) -> c_int,
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
}

/// The output of one compilation.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// PTX (for `compute_XY` targets).
    pub ptx: Option<String>,
    /// The cubin (for `sm_XY` targets).
    pub cubin: Option<Vec<u8>>,
    /// NVRTC's log (warnings, and ptxas output with `--ptxas-options=-v`).
    pub log: String,
}

fn unavailable(msg: String) -> KernelError {
    KernelError::DeviceUnavailable(msg)
}

/// How NVRTC is found (see [`crate::libsearch`]).
pub const SPEC: LibSpec = LibSpec {
    env: NVRTC_ENV,
    names: &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
    wheel_dirs: &["nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib"],
};

/// The process-wide NVRTC, loaded on first use; a clear error naming every place searched
/// when it is not found.
pub fn nvrtc() -> Result<&'static Nvrtc> {
    static LIB: OnceLock<std::result::Result<Nvrtc, String>> = OnceLock::new();
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| unavailable(e.clone()))
}

fn load() -> std::result::Result<Nvrtc, String> {
    let (lib, path) = libsearch::open(&SPEC, |_| {}).map_err(|tried| {
        format!(
            "NVRTC not found (set {NVRTC_ENV} to libnvrtc.so.* or its folder, or `pip install \
             nvidia-cuda-nvrtc-cu12`); {tried}"
        )
    })?;
    let shown = path.display().to_string();
    bind(lib, shown.clone()).map_err(|e| format!("{shown}: {e}"))
}

fn bind(lib: libloading::Library, path: String) -> std::result::Result<Nvrtc, libloading::Error> {
    // SAFETY: the signatures are NVRTC's C API (nvrtc.h), unchanged from CUDA 11 to 13.
    unsafe {
        Ok(Nvrtc {
            create: *lib.get(b"nvrtcCreateProgram\0")?,
            compile: *lib.get(b"nvrtcCompileProgram\0")?,
            log_size: *lib.get(b"nvrtcGetProgramLogSize\0")?,
            log: *lib.get(b"nvrtcGetProgramLog\0")?,
            ptx_size: *lib.get(b"nvrtcGetPTXSize\0")?,
            ptx: *lib.get(b"nvrtcGetPTX\0")?,
            cubin_size: *lib.get(b"nvrtcGetCUBINSize\0")?,
            cubin: *lib.get(b"nvrtcGetCUBIN\0")?,
            destroy: *lib.get(b"nvrtcDestroyProgram\0")?,
            version: *lib.get(b"nvrtcVersion\0")?,
            error_string: *lib.get(b"nvrtcGetErrorString\0")?,
            _lib: lib,
            path,
        })
    }
}

impl Nvrtc {
    /// The file it was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// NVRTC's version (major, minor).
    pub fn version(&self) -> (i32, i32) {
        let (mut a, mut b) = (0, 0);
        // SAFETY: two out-parameters.
        unsafe { (self.version)(&mut a, &mut b) };
        (a, b)
    }

    fn err(&self, what: &str, code: c_int) -> KernelError {
        // SAFETY: NVRTC returns a static string for every code.
        let s = unsafe { CStr::from_ptr((self.error_string)(code)) };
        KernelError::Backend(format!("NVRTC {what}: {}", s.to_string_lossy()))
    }

    /// Compiles `src` (named `name` in messages) with `options` (`--gpu-architecture=sm_90`,
    /// ...). A compile error carries NVRTC's log.
    pub fn compile(&self, src: &str, name: &str, options: &[String]) -> Result<Compiled> {
        let c_src = CString::new(src).map_err(|_| KernelError::Backend("NUL in source".into()))?;
        let c_name = CString::new(name).map_err(|_| KernelError::Backend("NUL in name".into()))?;
        let c_opts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()).expect("options have no NUL"))
            .collect();
        let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the program is destroyed below.
        unsafe {
            let rc = (self.create)(
                &mut prog,
                c_src.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if rc != 0 {
                return Err(self.err("create program", rc));
            }
            let rc = (self.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
            let log = self.read_text(prog, self.log_size, self.log);
            let out = if rc != 0 {
                Err(KernelError::Backend(format!(
                    "NVRTC could not compile {name} ({}):\n{log}",
                    options.join(" ")
                )))
            } else {
                let ptx =
                    Some(self.read_text(prog, self.ptx_size, self.ptx)).filter(|p| !p.is_empty());
                let cubin = self.read_bytes(prog, self.cubin_size, self.cubin);
                Ok(Compiled { ptx, cubin, log })
            };
            (self.destroy)(&mut prog);
            out
        }
    }

    unsafe fn read_bytes(
        &self,
        prog: Prog,
        size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
        get: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    ) -> Option<Vec<u8>> {
        let mut n = 0usize;
        if size(prog, &mut n) != 0 || n == 0 {
            return None;
        }
        let mut buf = vec![0u8; n];
        (get(prog, buf.as_mut_ptr() as *mut c_char) == 0).then_some(buf)
    }

    unsafe fn read_text(
        &self,
        prog: Prog,
        size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
        get: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    ) -> String {
        let mut b = self.read_bytes(prog, size, get).unwrap_or_default();
        while b.last() == Some(&0) {
            b.pop();
        }
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// Per-kernel resource use parsed from ptxas' verbose log (`--ptxas-options=-v`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelResources {
    /// The kernel's name.
    pub name: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of spill stores.
    pub spill_stores: u32,
    /// Bytes of spill loads.
    pub spill_loads: u32,
    /// Bytes of static shared memory.
    pub shared_bytes: u32,
}

/// Parses ptxas' `-v` output into one record per entry function.
pub fn parse_resources(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    let num_before = |line: &str, unit: &str| -> Option<u32> {
        let i = line.find(unit)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(KernelResources {
                name,
                ..Default::default()
            });
        } else if let Some(k) = out.last_mut() {
            if line.contains("spill stores") {
                k.spill_stores = num_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads = num_before(line, "bytes spill loads").unwrap_or(0);
            }
            if line.contains("Used") && line.contains("registers") {
                k.registers = num_before(line, "registers").unwrap_or(0);
                k.shared_bytes = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_verbose_output() {
        let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'k' for 'sm_90'\n\
ptxas info    : Function properties for k\nptxas         .     0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
ptxas info    : Used 14 registers, used 1 barriers, 1024 bytes smem\n";
        let r = parse_resources(log);
        assert_eq!(
            r,
            vec![KernelResources {
                name: "k".into(),
                registers: 14,
                spill_stores: 8,
                spill_loads: 4,
                shared_bytes: 1024
            }]
        );
    }
}
