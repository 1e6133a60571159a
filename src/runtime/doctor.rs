//! `vidflow doctor`: what a GPU run would need, checked in a second without opening a model.
//!
//! A GPU run fails deep inside ONNX Runtime when one shared library is missing, with a message
//! naming a provider rather than the file. This module looks for every piece the way the dynamic
//! loader would (`LD_LIBRARY_PATH`, the `ldconfig` cache, the default folders), and also in the
//! Python `nvidia/*/lib` and `tensorrt_libs` folders of site-packages, where the pip wheels put
//! them but where the loader does not look. Each missing piece comes with the command that fixes
//! it. The probes take an injected [`SearchPath`], so tests run them on fake folders.

use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::library::{find_library, ORT_LIBRARY_ENV};
use super::Device;

/// The ONNX Runtime release vidflow is built against (`ort` API 1.31); its GPU wheel needs CUDA 13.
pub const ORT_VERSION: &str = "1.31.1";

/// The pip command that installs the GPU build of ONNX Runtime.
pub const ORT_GPU_INSTALL: &str = "pip install onnxruntime-gpu==1.31.1";

/// Where a search folder comes from; only some of them are searched by the dynamic loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    LdLibraryPath,
    LdconfigCache,
    SystemDir,
    /// `/usr/local/cuda/lib64` and the like: where the toolkit installs, which the loader only
    /// searches when `ld.so.conf` or `LD_LIBRARY_PATH` names it.
    CudaToolkit,
    /// `site-packages/nvidia/*/lib`, `site-packages/tensorrt_libs`: pip wheels.
    SitePackages,
}

impl Origin {
    /// Whether `dlopen("libX.so.N")` (what ONNX Runtime's providers do) finds a library here.
    pub fn on_loader_path(self) -> bool {
        matches!(
            self,
            Origin::LdLibraryPath | Origin::LdconfigCache | Origin::SystemDir
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Origin::LdLibraryPath => "LD_LIBRARY_PATH",
            Origin::LdconfigCache => "ldconfig cache",
            Origin::SystemDir => "system folder",
            Origin::CudaToolkit => "CUDA toolkit folder",
            Origin::SitePackages => "Python site-packages",
        }
    }
}

/// The folders (and `ldconfig` entries) searched, in the loader's order, pip folders last.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    pub dirs: Vec<(PathBuf, Origin)>,
    /// `soname -> path` from `ldconfig -p`, searched after `LD_LIBRARY_PATH`.
    pub ld_cache: Vec<(String, PathBuf)>,
}

impl SearchPath {
    /// Only these folders (tests).
    pub fn from_dirs(dirs: Vec<(PathBuf, Origin)>) -> SearchPath {
        SearchPath {
            dirs,
            ld_cache: Vec::new(),
        }
    }

    /// What this machine's loader searches, then the CUDA toolkit and Python site-packages
    /// folders (`extra_site_packages` first: the folder the ONNX Runtime wheel sits in).
    pub fn system(extra_site_packages: &[PathBuf]) -> SearchPath {
        let mut dirs = Vec::new();
        if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
            for d in std::env::split_paths(&v).filter(|d| !d.as_os_str().is_empty()) {
                dirs.push((d, Origin::LdLibraryPath));
            }
        }
        for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
            dirs.push((PathBuf::from(d), Origin::SystemDir));
        }
        for d in [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/local/cuda/targets/sbsa-linux/lib",
            "/usr/local/TensorRT/lib",
        ] {
            dirs.push((PathBuf::from(d), Origin::CudaToolkit));
        }
        let mut sites: Vec<PathBuf> = extra_site_packages.to_vec();
        sites.extend(site_packages());
        let mut seen = std::collections::BTreeSet::new();
        for sp in sites {
            if !seen.insert(sp.clone()) {
                continue;
            }
            for d in pip_library_dirs(&sp) {
                dirs.push((d, Origin::SitePackages));
            }
        }
        SearchPath {
            dirs,
            ld_cache: ldconfig_cache(),
        }
    }

    /// The first place holding `soname`: an exact file, or a versioned file `soname.X.Y` beside it.
    fn find(&self, soname: &str) -> Option<(PathBuf, Origin)> {
        let in_dirs = |pred: &dyn Fn(Origin) -> bool| {
            self.dirs
                .iter()
                .filter(|(_, o)| pred(*o))
                .find_map(|(d, o)| find_in_dir(d, soname).map(|p| (p, *o)))
        };
        in_dirs(&|o| o == Origin::LdLibraryPath)
            .or_else(|| {
                self.ld_cache
                    .iter()
                    .find(|(n, p)| n == soname && p.exists())
                    .map(|(_, p)| (p.clone(), Origin::LdconfigCache))
            })
            .or_else(|| in_dirs(&|o| o != Origin::LdLibraryPath))
    }
}

fn find_in_dir(dir: &Path, soname: &str) -> Option<PathBuf> {
    let exact = dir.join(soname);
    if exact.is_file() {
        return Some(exact);
    }
    let prefix = format!("{soname}.");
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    versioned.sort();
    versioned.pop()
}

/// `site-packages/nvidia/*/lib` (CUDA 12 per-component and CUDA 13 `cu13` wheels) and
/// `site-packages/tensorrt_libs` (the TensorRT wheels).
fn pip_library_dirs(site_packages: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(site_packages.join("nvidia")) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("lib"))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        out.extend(subs);
    }
    let trt = site_packages.join("tensorrt_libs");
    if trt.is_dir() {
        out.push(trt);
    }
    out
}

/// Site-packages folders of the active Python environments: the virtual environment or conda
/// prefix in use, `.venv` of the current directory, and what `python3` reports.
fn site_packages() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    // Absolute, so the `export LD_LIBRARY_PATH=…` printed for it works from any folder.
    if let Ok(cwd) = std::env::current_dir() {
        prefixes.push(cwd.join(".venv"));
    }
    let mut out = Vec::new();
    for prefix in prefixes {
        if let Ok(rd) = std::fs::read_dir(prefix.join("lib")) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    out.push(e.path().join("site-packages"));
                }
            }
        }
    }
    let script =
        "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]: print(p)";
    if let Ok(o) = Command::new("python3").args(["-c", script]).output() {
        if o.status.success() {
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(PathBuf::from)
                    .filter(|p| p.is_dir()),
            );
        }
    }
    out
}

/// `soname -> path` entries of this architecture from `ldconfig -p`.
fn ldconfig_cache() -> Vec<(String, PathBuf)> {
    let exe = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .copied()
        .unwrap_or("ldconfig");
    let Ok(out) = Command::new(exe).arg("-p").output() else {
        return Vec::new();
    };
    parse_ldconfig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_ldconfig(text: &str) -> Vec<(String, PathBuf)> {
    let arch = if cfg!(target_arch = "x86_64") {
        Some("x86-64")
    } else if cfg!(target_arch = "aarch64") {
        Some("AArch64")
    } else {
        None
    };
    text.lines()
        .filter_map(|l| {
            let (left, path) = l.trim().split_once(" => ")?;
            let (name, flags) = left.split_once(' ')?;
            if arch.is_some_and(|a| !flags.contains(a)) {
                return None;
            }
            Some((name.to_string(), PathBuf::from(path.trim())))
        })
        .collect()
}

/// How a library reports its version once loaded.
#[derive(Debug, Clone, Copy)]
enum VersionSymbol {
    /// `int f(int*)`, CUDA-style encoding `major*1000 + minor*10`.
    CudaRuntime(&'static str),
    /// `status f(libraryPropertyType, int*)`, queried for major, minor, patch.
    Property(&'static str),
    /// `size_t f(void)` or `int f(void)`, encoding `major*10000 + minor*100 + patch`.
    Packed(&'static str),
}

/// One library a device needs.
#[derive(Debug, Clone)]
pub struct LibSpec {
    /// Stable key in the JSON (`cudart`, `cudnn`, …).
    pub key: &'static str,
    pub label: &'static str,
    /// The soname ONNX Runtime 1.31's GPU providers load.
    pub soname: &'static str,
    /// Other major versions, reported when found because they are the usual mix-up.
    pub other_sonames: &'static [&'static str],
    version_symbol: Option<VersionSymbol>,
    /// The command that installs it.
    pub install: &'static str,
    /// Whether TensorRT (and not CUDA) is what needs it.
    pub tensorrt_only: bool,
}

const TRT_INSTALL: &str = "pip install tensorrt-cu13-libs==10.16.1.11 (TensorRT 10 for CUDA 13; \
     TensorRT 11 has another soname), or NVIDIA's TensorRT 10.x tarball for CUDA 13, then put its \
     lib folder on LD_LIBRARY_PATH";

/// Every library the cuda and tensorrt devices need, as ONNX Runtime 1.31.1's GPU providers link
/// them (CUDA 13, cuDNN 9, TensorRT 10).
pub fn gpu_libraries() -> Vec<LibSpec> {
    let spec = |key, label, soname, other, sym, install, tensorrt_only| LibSpec {
        key,
        label,
        soname,
        other_sonames: other,
        version_symbol: sym,
        install,
        tensorrt_only,
    };
    vec![
        spec(
            "cudart",
            "CUDA runtime",
            "libcudart.so.13",
            &["libcudart.so.12"],
            Some(VersionSymbol::CudaRuntime("cudaRuntimeGetVersion")),
            "pip install \"nvidia-cuda-runtime~=13.0\"",
            false,
        ),
        spec(
            "cublas",
            "cuBLAS",
            "libcublas.so.13",
            &["libcublas.so.12"],
            Some(VersionSymbol::Property("cublasGetProperty")),
            "pip install \"nvidia-cublas~=13.0\"",
            false,
        ),
        spec(
            "cublaslt",
            "cuBLASLt",
            "libcublasLt.so.13",
            &["libcublasLt.so.12"],
            Some(VersionSymbol::Packed("cublasLtGetVersion")),
            "pip install \"nvidia-cublas~=13.0\"",
            false,
        ),
        spec(
            "curand",
            "cuRAND",
            "libcurand.so.10",
            &[],
            Some(VersionSymbol::Property("curandGetProperty")),
            "pip install \"nvidia-curand~=10.0\"",
            false,
        ),
        spec(
            "cufft",
            "cuFFT",
            "libcufft.so.12",
            &["libcufft.so.11"],
            Some(VersionSymbol::Property("cufftGetProperty")),
            "pip install \"nvidia-cufft~=12.0\"",
            false,
        ),
        spec(
            "cudnn",
            "cuDNN",
            "libcudnn.so.9",
            &["libcudnn.so.8"],
            Some(VersionSymbol::Packed("cudnnGetVersion")),
            "pip install \"nvidia-cudnn-cu13~=9.0\"",
            false,
        ),
        spec(
            "nvinfer",
            "TensorRT",
            "libnvinfer.so.10",
            &["libnvinfer.so.11", "libnvinfer.so.8"],
            Some(VersionSymbol::Packed("getInferLibVersion")),
            TRT_INSTALL,
            true,
        ),
        spec(
            "nvinfer_plugin",
            "TensorRT plugins",
            "libnvinfer_plugin.so.10",
            &["libnvinfer_plugin.so.11"],
            None,
            TRT_INSTALL,
            true,
        ),
        spec(
            "nvonnxparser",
            "TensorRT ONNX parser",
            "libnvonnxparser.so.10",
            &["libnvonnxparser.so.11"],
            Some(VersionSymbol::Packed("getNvOnnxParserVersion")),
            TRT_INSTALL,
            true,
        ),
    ]
}

/// The state of one library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibStatus {
    /// On the loader's path, and it loads.
    Found,
    /// Present, but in a folder the loader does not search (pip wheels, the CUDA toolkit).
    NotOnLoaderPath,
    /// Present, but `dlopen` fails (a dependency missing, a broken file).
    DoesNotLoad,
    /// Only another major version is present.
    OtherVersion,
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct LibraryReport {
    pub key: &'static str,
    pub label: &'static str,
    pub soname: &'static str,
    pub status: LibStatus,
    pub path: Option<PathBuf>,
    pub found_in: Option<&'static str>,
    pub version: Option<String>,
    /// `file name` or the symbol the version was read from.
    pub version_from: Option<String>,
    pub load_error: Option<String>,
    /// What to do, when the status is not `found`.
    pub fix: Option<String>,
}

impl LibraryReport {
    pub fn ready(&self) -> bool {
        self.status == LibStatus::Found
    }

    /// One line saying what is wrong, for messages.
    pub fn problem(&self) -> String {
        let at = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        };
        match self.status {
            LibStatus::Found => format!("{} found at {}", self.soname, at(&self.path)),
            LibStatus::NotOnLoaderPath => format!(
                "{} ({}) is at {}, in a folder the dynamic loader does not search",
                self.soname,
                self.label,
                at(&self.path)
            ),
            LibStatus::DoesNotLoad => format!(
                "{} ({}) at {} does not load: {}",
                self.soname,
                self.label,
                at(&self.path),
                self.load_error.as_deref().unwrap_or("unknown error")
            ),
            LibStatus::OtherVersion => format!(
                "{} ({}) is missing; only {} was found, another major version",
                self.soname,
                self.label,
                at(&self.path)
            ),
            LibStatus::Missing => format!("{} ({}) is not found", self.soname, self.label),
        }
    }
}

/// Looks for one library in `search`: its path, where it was found, whether it loads, its version.
pub fn probe_library(spec: &LibSpec, search: &SearchPath) -> LibraryReport {
    let mut r = LibraryReport {
        key: spec.key,
        label: spec.label,
        soname: spec.soname,
        status: LibStatus::Missing,
        path: None,
        found_in: None,
        version: None,
        version_from: None,
        load_error: None,
        fix: None,
    };
    let Some((path, origin)) = search.find(spec.soname) else {
        if let Some((other, path, origin)) = spec
            .other_sonames
            .iter()
            .find_map(|s| search.find(s).map(|(p, o)| (*s, p, o)))
        {
            r.status = LibStatus::OtherVersion;
            r.version = version_from_file_name(&path, other);
            r.version_from = r.version.as_ref().map(|_| "file name".into());
            r.path = Some(path);
            r.found_in = Some(origin.describe());
        }
        r.fix = Some(spec.install.to_string());
        return r;
    };
    r.version = version_from_file_name(&path, spec.soname);
    r.version_from = r.version.as_ref().map(|_| "file name".into());
    r.found_in = Some(origin.describe());
    match load_version(&path, spec.version_symbol) {
        Ok(Some((v, sym))) => {
            r.version = Some(v);
            r.version_from = Some(sym.into());
        }
        Ok(None) => {}
        Err(e) => r.load_error = Some(e),
    }
    r.status = if r.load_error.is_some() {
        LibStatus::DoesNotLoad
    } else if origin.on_loader_path() {
        LibStatus::Found
    } else {
        LibStatus::NotOnLoaderPath
    };
    let dir = path
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    r.fix = match r.status {
        LibStatus::Found => None,
        LibStatus::NotOnLoaderPath => Some(format!(
            "export LD_LIBRARY_PATH={dir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
        )),
        _ => Some(format!(
            "reinstall it ({}); if a library it needs is reported missing, install that too",
            spec.install
        )),
    };
    r.path = Some(path);
    r
}

/// `13.0.48` from `libcudart.so.13.0.48` (after following links); `13` from `libcudart.so.13`.
fn version_from_file_name(path: &Path, soname: &str) -> Option<String> {
    let stem = soname.split(".so").next()?;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    [real.as_path(), path]
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .filter_map(|n| n.strip_prefix(stem)?.strip_prefix(".so."))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .max_by_key(|v| v.len())
        .map(str::to_string)
}

/// Loads the library (it stays loaded) and asks it for its version.
fn load_version(
    path: &Path,
    symbol: Option<VersionSymbol>,
) -> Result<Option<(String, &'static str)>, String> {
    // SAFETY: loading runs the library's initialisers, as ONNX Runtime's providers would; the
    // symbols are called with the C signatures NVIDIA documents for them.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    let version = symbol.and_then(|s| unsafe { call_version(&lib, s) });
    // Unloading CUDA libraries is fragile (their atexit handlers); the process keeps them.
    std::mem::forget(lib);
    Ok(version)
}

unsafe fn call_version(
    lib: &libloading::Library,
    symbol: VersionSymbol,
) -> Option<(String, &'static str)> {
    match symbol {
        VersionSymbol::CudaRuntime(name) => {
            let f = lib
                .get::<unsafe extern "C" fn(*mut c_int) -> c_int>(name.as_bytes())
                .ok()?;
            let mut v = 0;
            (f(&mut v) == 0 && v > 0).then(|| (format!("{}.{}", v / 1000, (v % 1000) / 10), name))
        }
        VersionSymbol::Property(name) => {
            let f = lib
                .get::<unsafe extern "C" fn(c_int, *mut c_int) -> c_int>(name.as_bytes())
                .ok()?;
            let mut parts = [0; 3];
            for (i, p) in parts.iter_mut().enumerate() {
                if f(i as c_int, p) != 0 {
                    return None;
                }
            }
            Some((format!("{}.{}.{}", parts[0], parts[1], parts[2]), name))
        }
        VersionSymbol::Packed(name) => {
            let f = lib
                .get::<unsafe extern "C" fn() -> usize>(name.as_bytes())
                .ok()?;
            // `int` returns leave garbage in the upper half of the register.
            let v = f() & 0xffff_ffff;
            (v > 0).then(|| {
                (
                    format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100),
                    name,
                )
            })
        }
    }
}

/// The ONNX Runtime library: where, why that one, its version and compiled-in providers.
#[derive(Debug, Clone, Serialize)]
pub struct OrtReport {
    pub path: Option<PathBuf>,
    pub found_by: Option<String>,
    pub version: Option<String>,
    pub build_info: Option<String>,
    pub providers: Vec<String>,
    pub error: Option<String>,
}

impl OrtReport {
    pub fn has_provider(&self, name: &str) -> bool {
        self.providers.iter().any(|p| p == name)
    }

    /// `site-packages` when the library is the one inside the onnxruntime wheel.
    fn wheel_site_packages(&self) -> Option<PathBuf> {
        let capi = self.path.as_ref()?.parent()?;
        let pkg = capi.parent()?;
        (capi.file_name()? == "capi" && pkg.file_name()?.to_str()?.starts_with("onnxruntime"))
            .then(|| pkg.parent().map(Path::to_path_buf))
            .flatten()
    }
}

/// Locates and loads ONNX Runtime (as `vidflow` would with these settings) and asks it for its
/// version and providers. Meant for a process that has not loaded ONNX Runtime yet.
pub fn probe_ort(requested: Option<&Path>) -> OrtReport {
    let mut r = OrtReport {
        path: None,
        found_by: None,
        version: None,
        build_info: None,
        providers: Vec::new(),
        error: None,
    };
    let (path, source) = match find_library(requested) {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    r.path = Some(path.clone());
    r.found_by = Some(source.to_string());
    match ort_version_string(&path) {
        Ok(v) => r.version = Some(v),
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    }
    if let Err(e) = ort::init_from(&path) {
        r.error = Some(format!(
            "cannot load ONNX Runtime from {}: {e}",
            path.display()
        ));
        return r;
    }
    r.build_info = Some(ort::info().trim().to_string());
    match available_providers() {
        Ok(p) => r.providers = p,
        Err(e) => r.error = Some(format!("cannot list the execution providers: {e}")),
    }
    r
}

/// `OrtGetApiBase()->GetVersionString()`, read without initialising `ort`, so a library too old
/// for `ort` still shows its version.
fn ort_version_string(path: &Path) -> Result<String, String> {
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release; the library stays
    // loaded (ort loads the same file next), so the returned string stays valid while copied.
    unsafe {
        let lib = libloading::Library::new(path)
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let get = lib
            .get::<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase")
            .map_err(|_| {
                format!(
                    "{} does not export OrtGetApiBase: not ONNX Runtime",
                    path.display()
                )
            })?;
        let base = get();
        if base.is_null() {
            return Err("OrtGetApiBase returned null".into());
        }
        let v = CStr::from_ptr(((*base).GetVersionString)())
            .to_string_lossy()
            .into_owned();
        std::mem::forget(lib);
        Ok(v)
    }
}

/// The execution providers compiled into the loaded ONNX Runtime.
fn available_providers() -> Result<Vec<String>, String> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut n: c_int = 0;
    // SAFETY: the C API's documented use: the array is released with ReleaseAvailableProviders.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut list, &mut n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Err("GetAvailableProviders failed".into());
        }
        if list.is_null() {
            return Ok(Vec::new());
        }
        let out = (0..n as usize)
            .map(|i| CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned())
            .collect();
        let status = (api.ReleaseAvailableProviders)(list, n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub index: usize,
    pub name: String,
    pub memory_mib: Option<u64>,
}

/// The GPUs the NVIDIA driver shows; none is a normal answer.
#[derive(Debug, Clone, Serialize)]
pub struct GpuReport {
    /// `libcuda`, `/proc/driver/nvidia`, `nvidia-smi`, or `none`.
    pub source: String,
    pub driver_version: Option<String>,
    pub devices: Vec<GpuDevice>,
    pub note: Option<String>,
}

/// GPUs through the driver library, else `/proc/driver/nvidia`, else `nvidia-smi`.
pub fn probe_gpu() -> GpuReport {
    let note = match probe_libcuda() {
        Ok(r) => return r,
        Err(e) => Some(e),
    };
    if let Some(r) = probe_proc() {
        return r;
    }
    if let Some(r) = probe_nvidia_smi() {
        return r;
    }
    GpuReport {
        source: "none".into(),
        driver_version: None,
        devices: Vec::new(),
        note,
    }
}

fn probe_libcuda() -> Result<GpuReport, String> {
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type OutInt = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type Mem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    // SAFETY: the CUDA driver API's documented signatures; the library stays loaded.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .map_err(|e| format!("no NVIDIA driver library (libcuda.so.1): {e}"))?;
        let sym = |n: &str| format!("libcuda.so.1 lacks {n}");
        let init = lib.get::<Init>(b"cuInit").map_err(|_| sym("cuInit"))?;
        let driver = lib
            .get::<OutInt>(b"cuDriverGetVersion")
            .map_err(|_| sym("cuDriverGetVersion"))?;
        let count = lib
            .get::<OutInt>(b"cuDeviceGetCount")
            .map_err(|_| sym("cuDeviceGetCount"))?;
        let get = lib
            .get::<Get>(b"cuDeviceGet")
            .map_err(|_| sym("cuDeviceGet"))?;
        let name = lib
            .get::<Name>(b"cuDeviceGetName")
            .map_err(|_| sym("cuDeviceGetName"))?;
        let mem = lib.get::<Mem>(b"cuDeviceTotalMem_v2").ok();
        let mut v = 0;
        let driver_version =
            (driver(&mut v) == 0).then(|| format!("CUDA {}.{}", v / 1000, (v % 1000) / 10));
        let rc = init(0);
        let mut devices = Vec::new();
        let mut note = None;
        if rc != 0 {
            note = Some(format!(
                "cuInit failed with CUDA error {rc} (100 = no device)"
            ));
        } else {
            let mut n = 0;
            if count(&mut n) == 0 {
                for i in 0..n {
                    let mut dev = 0;
                    if get(&mut dev, i) != 0 {
                        continue;
                    }
                    let mut buf = [0 as c_char; 256];
                    let label = if name(buf.as_mut_ptr(), buf.len() as c_int, dev) == 0 {
                        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
                    } else {
                        "unknown".into()
                    };
                    let memory_mib = mem.as_ref().and_then(|m| {
                        let mut bytes = 0usize;
                        (m(&mut bytes, dev) == 0).then_some(bytes as u64 >> 20)
                    });
                    devices.push(GpuDevice {
                        index: i as usize,
                        name: label,
                        memory_mib,
                    });
                }
            }
        }
        std::mem::forget(lib);
        Ok(GpuReport {
            source: "libcuda".into(),
            driver_version,
            devices,
            note,
        })
    }
}

fn probe_proc() -> Option<GpuReport> {
    let root = Path::new("/proc/driver/nvidia");
    let version = std::fs::read_to_string(root.join("version")).ok()?;
    let mut gpus: Vec<PathBuf> = std::fs::read_dir(root.join("gpus"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    gpus.sort();
    let devices = gpus
        .iter()
        .enumerate()
        .map(|(index, g)| GpuDevice {
            index,
            name: std::fs::read_to_string(g.join("information"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string()))
                })
                .unwrap_or_else(|| "unknown".into()),
            memory_mib: None,
        })
        .collect();
    Some(GpuReport {
        source: "/proc/driver/nvidia".into(),
        driver_version: version.lines().next().map(|l| l.trim().to_string()),
        devices,
        note: Some("libcuda.so.1 does not load, so CUDA cannot use these GPUs".into()),
    })
}

fn probe_nvidia_smi() -> Option<GpuReport> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut driver_version = None;
    let devices = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(index, l)| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            driver_version = f.get(1).map(|v| v.to_string());
            GpuDevice {
                index,
                name: f.first().unwrap_or(&"unknown").to_string(),
                memory_mib: f.get(2).and_then(|m| m.parse().ok()),
            }
        })
        .collect();
    Some(GpuReport {
        source: "nvidia-smi".into(),
        driver_version,
        devices,
        note: Some("libcuda.so.1 does not load, so CUDA cannot use these GPUs".into()),
    })
}

/// One thing a device lacks and the command that fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceVerdict {
    pub device: String,
    pub ready: bool,
    pub missing: Vec<Missing>,
}

/// Everything `vidflow doctor` reports, in the order of its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub onnxruntime: OrtReport,
    pub libraries: Vec<LibraryReport>,
    pub gpu: GpuReport,
    pub devices: Vec<DeviceVerdict>,
    /// One `export LD_LIBRARY_PATH=…` covering every library found outside the loader's path.
    pub ld_library_path: Option<String>,
}

impl DoctorReport {
    pub fn verdict(&self, device: Device) -> &DeviceVerdict {
        let name = device.to_string();
        self.devices
            .iter()
            .find(|d| d.device == name)
            .expect("a verdict for every device")
    }
}

/// Runs every probe on this machine.
pub fn diagnose(ort_library: Option<&Path>) -> DoctorReport {
    let onnxruntime = probe_ort(ort_library);
    let extra: Vec<PathBuf> = onnxruntime.wheel_site_packages().into_iter().collect();
    let search = SearchPath::system(&extra);
    let libraries = gpu_libraries()
        .iter()
        .map(|s| probe_library(s, &search))
        .collect();
    assemble(onnxruntime, libraries, probe_gpu(), &search)
}

/// The verdicts from the probes' results (pure: tests feed it made-up reports).
pub fn assemble(
    onnxruntime: OrtReport,
    libraries: Vec<LibraryReport>,
    gpu: GpuReport,
    search: &SearchPath,
) -> DoctorReport {
    let ort_missing = |provider: &str| -> Option<Missing> {
        if let Some(e) = &onnxruntime.error {
            return Some(Missing {
                what: format!("ONNX Runtime: {e}"),
                fix: format!(
                    "`make setup` for the CPU build; for a GPU: {}",
                    ort_gpu_fix(&onnxruntime, search)
                ),
            });
        }
        (!onnxruntime.has_provider(provider)).then(|| Missing {
            what: format!(
                "{provider} is not compiled into the ONNX Runtime at {} (a CPU build)",
                onnxruntime
                    .path
                    .as_ref()
                    .map_or("?".into(), |p| p.display().to_string())
            ),
            fix: ort_gpu_fix(&onnxruntime, search),
        })
    };
    let lib_missing = |tensorrt: bool| -> Vec<Missing> {
        libraries
            .iter()
            .filter(|l| (tensorrt || !gpu_libraries_tensorrt_only(l.key)) && !l.ready())
            .map(|l| Missing {
                what: l.problem(),
                fix: l.fix.clone().unwrap_or_default(),
            })
            .collect()
    };
    let gpu_missing = || -> Option<Missing> {
        gpu.devices.is_empty().then(|| Missing {
            what: match (&gpu.source[..], &gpu.note) {
                ("none", Some(n)) => format!("no NVIDIA GPU is visible ({n})"),
                (_, Some(n)) => format!("no NVIDIA GPU is usable ({n})"),
                _ => "no NVIDIA GPU is visible".into(),
            },
            fix: "run on a machine with an NVIDIA GPU and its driver (libcuda.so.1, driver for \
                  CUDA 13 or newer); in a container, start it with the GPU passed through \
                  (e.g. `docker run --gpus all`)"
                .into(),
        })
    };
    let mut cpu = Vec::new();
    cpu.extend(ort_missing("CPUExecutionProvider"));
    let mut cuda = Vec::new();
    cuda.extend(ort_missing("CUDAExecutionProvider"));
    cuda.extend(lib_missing(false));
    cuda.extend(gpu_missing());
    let mut trt = Vec::new();
    trt.extend(ort_missing("TensorrtExecutionProvider"));
    trt.extend(lib_missing(true));
    trt.extend(gpu_missing());
    let verdict = |device: Device, missing: Vec<Missing>| DeviceVerdict {
        device: device.to_string(),
        ready: missing.is_empty(),
        missing,
    };
    let mut dirs: Vec<String> = Vec::new();
    for l in &libraries {
        if l.status == LibStatus::NotOnLoaderPath {
            if let Some(d) = l.path.as_ref().and_then(|p| p.parent()) {
                let d = d.display().to_string();
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
    }
    let ld_library_path = (!dirs.is_empty()).then(|| {
        format!(
            "export LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}",
            dirs.join(":")
        )
    });
    DoctorReport {
        devices: vec![
            verdict(Device::Cpu, cpu),
            verdict(Device::Cuda, cuda),
            verdict(Device::TensorRt, trt),
        ],
        onnxruntime,
        libraries,
        gpu,
        ld_library_path,
    }
}

fn gpu_libraries_tensorrt_only(key: &str) -> bool {
    gpu_libraries()
        .iter()
        .any(|s| s.key == key && s.tensorrt_only)
}

/// The GPU build's install command, and the path to point vidflow at: the installed wheel's
/// library when one is in a searched site-packages, else the path relative to site-packages.
fn ort_gpu_fix(ort: &OrtReport, search: &SearchPath) -> String {
    let lib = format!("libonnxruntime.so.{ORT_VERSION}");
    let installed = search
        .dirs
        .iter()
        .filter(|(_, o)| *o == Origin::SitePackages)
        .filter_map(|(d, _)| d.ancestors().find(|a| a.join("onnxruntime/capi").is_dir()))
        .chain(ort.wheel_site_packages().as_deref())
        .map(|sp| sp.join("onnxruntime/capi"))
        .find(|capi| capi.join("libonnxruntime_providers_cuda.so").is_file());
    let target = match installed {
        Some(capi) => capi.join(&lib).display().to_string(),
        None => format!("<site-packages>/onnxruntime/capi/{lib}"),
    };
    format!(
        "{ORT_GPU_INSTALL} (CUDA 13 build), then `export {ORT_LIBRARY_ENV}={target}` (or pass \
         --ort-lib)"
    )
}

/// Checks that TensorRT can be loaded the way ONNX Runtime's TensorRT provider loads it, before
/// any session is created; `Err` is one message naming the library and how to get it.
pub fn check_tensorrt_libraries(search: &SearchPath) -> Result<(), String> {
    let problems: Vec<String> = gpu_libraries()
        .iter()
        .filter(|s| s.key == "nvinfer")
        .map(|s| probe_library(s, search))
        .filter(|r| !r.ready())
        .map(|r| format!("{}; fix: {}", r.problem(), r.fix.unwrap_or_default()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "TensorRT cannot be loaded: {} (`vidflow doctor` checks every GPU library)",
            problems.join("; ")
        ))
    }
}

/// The report as text, for a person.
pub fn render_text(r: &DoctorReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let o = &r.onnxruntime;
    let _ = writeln!(s, "ONNX Runtime");
    match &o.path {
        Some(p) => {
            let _ = writeln!(
                s,
                "  library     {} (found by {})",
                p.display(),
                o.found_by.as_deref().unwrap_or("?")
            );
        }
        None => {
            let _ = writeln!(s, "  library     not found");
        }
    }
    if let Some(v) = &o.version {
        let _ = writeln!(s, "  version     {v}");
    }
    if let Some(b) = &o.build_info {
        let _ = writeln!(s, "  build       {b}");
    }
    if !o.providers.is_empty() {
        let _ = writeln!(s, "  providers   {}", o.providers.join(", "));
    }
    if let Some(e) = &o.error {
        let _ = writeln!(s, "  error       {e}");
    }
    let _ = writeln!(s, "\nGPU libraries");
    for l in &r.libraries {
        let state = match l.status {
            LibStatus::Found => "found",
            LibStatus::NotOnLoaderPath => "not on loader path",
            LibStatus::DoesNotLoad => "does not load",
            LibStatus::OtherVersion => "other version only",
            LibStatus::Missing => "missing",
        };
        let mut line = format!("  {:<22} {:<24} {state}", l.label, l.soname);
        if let Some(v) = &l.version {
            let _ = write!(
                line,
                ", version {v} ({})",
                l.version_from.as_deref().unwrap_or("")
            );
        }
        if let Some(p) = &l.path {
            let _ = write!(
                line,
                "\n  {:<47} {} [{}]",
                "",
                p.display(),
                l.found_in.unwrap_or("")
            );
        }
        let _ = writeln!(s, "{line}");
    }
    let g = &r.gpu;
    let _ = writeln!(s, "\nGPU");
    if g.devices.is_empty() {
        let _ = writeln!(s, "  none visible");
    }
    for d in &g.devices {
        let mem = d.memory_mib.map_or(String::new(), |m| format!(", {m} MiB"));
        let _ = writeln!(s, "  [{}] {}{mem}", d.index, d.name);
    }
    if let Some(v) = &g.driver_version {
        let _ = writeln!(s, "  driver      {v} (via {})", g.source);
    }
    if let Some(n) = &g.note {
        let _ = writeln!(s, "  note        {n}");
    }
    let _ = writeln!(s, "\nDevices");
    for d in &r.devices {
        if d.ready {
            let _ = writeln!(s, "  {:<9} ready", d.device);
            continue;
        }
        let _ = writeln!(s, "  {:<9} not ready", d.device);
        for m in &d.missing {
            let _ = writeln!(s, "    - {}\n      fix: {}", m.what, m.fix);
        }
    }
    if let Some(l) = &r.ld_library_path {
        let _ = writeln!(
            s,
            "\nLibraries from pip wheels are not on the loader's path; for vidflow:\n  {l}"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str) -> LibSpec {
        gpu_libraries().into_iter().find(|s| s.key == key).unwrap()
    }

    #[test]
    fn a_versioned_file_in_a_searched_folder_is_found_with_its_version() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("libcudart.so.13.0.48"), b"not an ELF").unwrap();
        let search = SearchPath::from_dirs(vec![(d.path().to_path_buf(), Origin::LdLibraryPath)]);
        let r = probe_library(&spec("cudart"), &search);
        assert_eq!(
            r.path.as_deref(),
            Some(d.path().join("libcudart.so.13.0.48").as_path())
        );
        assert_eq!(r.version.as_deref(), Some("13.0.48"));
        assert_eq!(r.version_from.as_deref(), Some("file name"));
        assert_eq!(r.found_in, Some("LD_LIBRARY_PATH"));
        // A fake file does not load, and says so rather than passing as ready.
        assert_eq!(r.status, LibStatus::DoesNotLoad);
    }

    #[test]
    fn a_symlinked_soname_takes_the_version_of_its_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("libcudnn.so.9.14.0"), b"x").unwrap();
        std::os::unix::fs::symlink("libcudnn.so.9.14.0", d.path().join("libcudnn.so.9")).unwrap();
        let search = SearchPath::from_dirs(vec![(d.path().to_path_buf(), Origin::SitePackages)]);
        let r = probe_library(&spec("cudnn"), &search);
        assert_eq!(
            r.path.as_deref(),
            Some(d.path().join("libcudnn.so.9").as_path())
        );
        assert_eq!(r.version.as_deref(), Some("9.14.0"));
    }

    #[test]
    fn a_missing_cudnn_yields_its_install_command() {
        let d = tempfile::tempdir().unwrap();
        let search = SearchPath::from_dirs(vec![(d.path().to_path_buf(), Origin::SystemDir)]);
        let r = probe_library(&spec("cudnn"), &search);
        assert_eq!(r.status, LibStatus::Missing);
        assert_eq!(
            r.fix.as_deref(),
            Some("pip install \"nvidia-cudnn-cu13~=9.0\"")
        );
        assert_eq!(r.problem(), "libcudnn.so.9 (cuDNN) is not found");
    }

    #[test]
    fn only_another_major_version_is_not_the_library() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("libcudart.so.12"), b"x").unwrap();
        let search = SearchPath::from_dirs(vec![(d.path().to_path_buf(), Origin::SystemDir)]);
        let r = probe_library(&spec("cudart"), &search);
        assert_eq!(r.status, LibStatus::OtherVersion);
        assert!(r.fix.unwrap().contains("nvidia-cuda-runtime~=13.0"));
    }

    #[test]
    fn the_ldconfig_cache_is_parsed_for_this_architecture() {
        let text = "3 libs found in cache `/etc/ld.so.cache'\n\
            \tlibcudnn.so.9 (libc6,x86-64) => /opt/x/libcudnn.so.9\n\
            \tlibcudnn.so.9 (libc6) => /opt/x32/libcudnn.so.9\n\
            \tlibcudnn.so.9 (libc6,AArch64) => /opt/arm/libcudnn.so.9\n";
        let parsed = parse_ldconfig(text);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                parsed,
                vec![(
                    "libcudnn.so.9".to_string(),
                    PathBuf::from("/opt/x/libcudnn.so.9")
                )]
            );
        }
    }

    #[test]
    fn a_missing_tensorrt_is_one_message_naming_the_library_and_its_install() {
        let empty = tempfile::tempdir().unwrap();
        let search = SearchPath::from_dirs(vec![(empty.path().to_path_buf(), Origin::SystemDir)]);
        let msg = check_tensorrt_libraries(&search).unwrap_err();
        assert_eq!(
            msg,
            format!(
                "TensorRT cannot be loaded: libnvinfer.so.10 (TensorRT) is not found; fix: \
                 {TRT_INSTALL} (`vidflow doctor` checks every GPU library)"
            )
        );
    }

    fn cpu_ort() -> OrtReport {
        OrtReport {
            path: Some(PathBuf::from("lib/libonnxruntime.so.1.31.1")),
            found_by: Some("--ort-lib".into()),
            version: Some("1.31.1".into()),
            build_info: None,
            providers: vec!["CPUExecutionProvider".into()],
            error: None,
        }
    }

    #[test]
    fn verdicts_name_every_missing_piece_with_its_fix() {
        let empty = tempfile::tempdir().unwrap();
        let search = SearchPath::from_dirs(vec![(empty.path().to_path_buf(), Origin::SystemDir)]);
        let libs = gpu_libraries()
            .iter()
            .map(|s| probe_library(s, &search))
            .collect();
        let gpu = GpuReport {
            source: "none".into(),
            driver_version: None,
            devices: Vec::new(),
            note: None,
        };
        let r = assemble(cpu_ort(), libs, gpu, &search);
        assert!(r.verdict(Device::Cpu).ready);
        let cuda = r.verdict(Device::Cuda);
        assert!(!cuda.ready);
        assert!(cuda.missing[0].fix.contains(ORT_GPU_INSTALL), "{cuda:?}");
        assert!(cuda.missing[0].fix.contains(ORT_LIBRARY_ENV));
        assert!(cuda
            .missing
            .iter()
            .any(|m| m.what.contains("libcudnn.so.9") && m.fix.contains("nvidia-cudnn-cu13")));
        assert!(!cuda.missing.iter().any(|m| m.what.contains("libnvinfer")));
        assert!(cuda
            .missing
            .iter()
            .any(|m| m.what.contains("no NVIDIA GPU")));
        let trt = r.verdict(Device::TensorRt);
        assert!(trt.missing[0].what.contains("TensorrtExecutionProvider"));
        assert!(trt
            .missing
            .iter()
            .any(|m| m.what.contains("libnvinfer.so.10") && m.fix.contains("tensorrt-cu13-libs")));
        assert_eq!(r.ld_library_path, None);
    }

    #[test]
    fn pip_folders_found_outside_the_loader_path_get_one_export_line() {
        let sp = tempfile::tempdir().unwrap();
        let lib = sp.path().join("nvidia/cudnn/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libcudnn.so.9"), b"x").unwrap();
        let dirs = pip_library_dirs(sp.path());
        assert_eq!(dirs, vec![lib.clone()]);
        let search = SearchPath::from_dirs(vec![(lib.clone(), Origin::SitePackages)]);
        let mut r = probe_library(&spec("cudnn"), &search);
        // As if it had loaded: the fake file does not, but the folder rule is what is tested.
        r.status = LibStatus::NotOnLoaderPath;
        let gpu = GpuReport {
            source: "none".into(),
            driver_version: None,
            devices: Vec::new(),
            note: None,
        };
        let report = assemble(cpu_ort(), vec![r], gpu, &search);
        assert_eq!(
            report.ld_library_path.unwrap(),
            format!(
                "export LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}",
                lib.display()
            )
        );
    }
}
