//! The host launcher: the `cuda-emulated` device. Each `kernels/<family>.cu` is compiled once
//! as C++ with the machine's compiler (`$CXX`, else `c++`, `g++` or `clang++`), together with
//! `kernels/host/cuda_host.h` and one `emu_launch_<kernel>(dims, params)` entry per kernel,
//! into a shared library cached under `$SPARSE_EMU_CACHE` (default: the system temp folder)
//! by a hash of its source. Launches take cuLaunchKernel's parameter array and run the
//! grid on the calling thread (see the header). Device memory is host memory, and GEMM is
//! the CPU backend's.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use super::runtime::{DevPtr, GemmCall, LaunchDims, Runtime};
use super::sources::{Family, HOST_HEADER};
use crate::error::{KernelError, Result};

/// The environment variable naming the folder of compiled kernel libraries.
pub const CACHE_ENV: &str = "SPARSE_EMU_CACHE";

type Entry = unsafe extern "C" fn(*const LaunchDims, *mut *mut c_void) -> c_int;

struct Module {
    _lib: libloading::Library,
    entries: HashMap<String, Entry>,
}

/// The emulated device's runtime.
pub struct HostRuntime {
    compiler: String,
    modules: Mutex<HashMap<Family, Arc<Module>>>,
}

const ALIGN: usize = 256;

fn layout(bytes: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(bytes.max(1), ALIGN).expect("allocation size overflows")
}

/// The C++ compiler the host launcher uses, or why there is none.
pub fn compiler() -> Result<String> {
    static FOUND: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut tried = Vec::new();
            let from_env = std::env::var("CXX").ok().filter(|s| !s.is_empty());
            for c in from_env
                .into_iter()
                .chain(["c++", "g++", "clang++"].map(String::from))
            {
                let ok = Command::new(&c)
                    .arg("--version")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(c);
                }
                tried.push(c);
            }
            Err(format!(
                "cuda-emulated needs a C++17 compiler to build the kernels, and none was found \
                 (tried {}; set CXX)",
                tried.join(", ")
            ))
        })
        .clone()
        .map_err(KernelError::DeviceUnavailable)
}

impl HostRuntime {
    /// A runtime using the first C++ compiler found.
    pub fn new() -> Result<Self> {
        Ok(HostRuntime {
            compiler: compiler()?,
            modules: Mutex::new(HashMap::new()),
        })
    }

    fn module(&self, family: Family) -> Result<Arc<Module>> {
        let mut map = self
            .modules
            .lock()
            .map_err(|_| KernelError::Backend("host module table poisoned".into()))?;
        if let Some(m) = map.get(&family) {
            return Ok(m.clone());
        }
        let m = Arc::new(self.build(family)?);
        map.insert(family, m.clone());
        Ok(m)
    }

    /// The translation unit compiled for `family`.
    pub fn translation_unit(family: Family) -> String {
        let mut tu = String::from("#line 1 \"cuda_host.h\"\n");
        tu.push_str(HOST_HEADER);
        tu.push_str(&format!("\n#line 1 \"{}\"\n", family.file()));
        tu.push_str(&family.source());
        tu.push('\n');
        for k in family.kernels() {
            tu.push_str(&format!("EMU_EXPORT({k})\n"));
        }
        tu
    }

    fn flags() -> [&'static str; 6] {
        [
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            "-fno-fast-math",
            "-x",
        ]
    }

    fn build(&self, family: Family) -> Result<Module> {
        let tu = Self::translation_unit(family);
        let key = fnv1a(&format!("{}\n{:?}\n{tu}", self.compiler, Self::flags()));
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| {
            KernelError::Backend(format!(
                "cannot create the kernel cache {}: {e}",
                dir.display()
            ))
        })?;
        let stem = family.file().trim_end_matches(".cu");
        let lib_path = dir.join(format!("{stem}-{key:016x}.so"));
        if !lib_path.exists() {
            self.compile(&tu, &dir, stem, &lib_path)?;
        }
        // SAFETY: the library is ours, built from the kernel sources above.
        let lib = unsafe { libloading::Library::new(&lib_path) }.map_err(|e| {
            KernelError::Backend(format!("cannot load {}: {e}", lib_path.display()))
        })?;
        let mut entries = HashMap::new();
        for k in family.kernels() {
            let sym = format!("emu_launch_{k}\0");
            // SAFETY: EMU_EXPORT defines every entry with this signature.
            let f: Entry =
                unsafe { lib.get::<Entry>(sym.as_bytes()).map(|s| *s) }.map_err(|e| {
                    KernelError::Backend(format!("{}: no entry for kernel {k}: {e}", family.file()))
                })?;
            entries.insert(k, f);
        }
        Ok(Module { _lib: lib, entries })
    }

    fn compile(&self, tu: &str, dir: &Path, stem: &str, out: &Path) -> Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{stem}-"))
            .suffix(".cpp")
            .tempfile_in(dir)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, tu.as_bytes())?;
                Ok(f)
            })
            .map_err(|e| KernelError::Backend(format!("cannot write the kernel source: {e}")))?;
        let tmp_lib = tmp.path().with_extension("so");
        let o = Command::new(&self.compiler)
            .args(Self::flags())
            .arg("c++")
            .arg(tmp.path())
            .arg("-o")
            .arg(&tmp_lib)
            .output()
            .map_err(|e| KernelError::Backend(format!("cannot run {}: {e}", self.compiler)))?;
        if !o.status.success() {
            let _ = std::fs::remove_file(&tmp_lib);
            return Err(KernelError::Backend(format!(
                "{} could not compile kernels/{stem}.cu for the host:\n{}",
                self.compiler,
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        // Atomic publish: concurrent processes build the same bytes under the same name.
        std::fs::rename(&tmp_lib, out)
            .map_err(|e| KernelError::Backend(format!("cannot store {}: {e}", out.display())))
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sparse-train-emu"))
}

/// FNV-1a, 64 bit: a hash that is stable across Rust versions (the cache key).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Runtime for HostRuntime {
    fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        // Launches run synchronously here, so the host clock is the device time.
        let t = std::time::Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    fn describe(&self) -> String {
        format!(
            "CUDA kernels emulated on the host ({}; slow, for correctness)",
            self.compiler
        )
    }

    fn alloc_zeroed(&self, bytes: usize) -> Result<DevPtr> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout(bytes)) };
        if p.is_null() {
            return Err(KernelError::Backend(format!(
                "emulated device: out of memory allocating {bytes} bytes"
            )));
        }
        Ok(p as DevPtr)
    }

    unsafe fn free(&self, ptr: DevPtr, bytes: usize) {
        std::alloc::dealloc(ptr as *mut u8, layout(bytes));
    }

    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len());
        Ok(())
    }

    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len());
        Ok(())
    }

    unsafe fn copy(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        std::ptr::copy(src as *const u8, dst as *mut u8, bytes);
        Ok(())
    }

    unsafe fn zero(&self, dst: DevPtr, bytes: usize) -> Result<()> {
        std::ptr::write_bytes(dst as *mut u8, 0, bytes);
        Ok(())
    }

    unsafe fn launch(
        &self,
        family: Family,
        kernel: &str,
        dims: &LaunchDims,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        let m = self.module(family)?;
        let f = m.entries.get(kernel).ok_or_else(|| {
            KernelError::Backend(format!("{} has no kernel {kernel}", family.file()))
        })?;
        match f(dims, params.as_mut_ptr()) {
            0 => Ok(()),
            rc => Err(KernelError::Backend(format!(
                "emulated launch of {kernel} with {dims:?} refused ({})",
                if rc == 1 { "block size" } else { "empty grid" }
            ))),
        }
    }

    unsafe fn gemm(&self, g: &GemmCall) -> Result<()> {
        let a = std::slice::from_raw_parts(g.a as *const f32, g.m * g.k);
        let b = std::slice::from_raw_parts(g.b as *const f32, g.k * g.n);
        let c = std::slice::from_raw_parts_mut(g.c as *mut f32, g.m * g.n);
        crate::ops::gemm::cpu::sgemm(g.m, g.n, g.k, g.alpha, a, g.ta, b, g.tb, g.beta, c, true);
        Ok(())
    }
}
