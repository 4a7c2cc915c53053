//! `cargo xtask bindgen`: generate the raw driver bindings from `cuda.h`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The one place the CUDA header version is pinned: the PyPI wheel that ships it.
pub const HEADER_REQUIREMENT: &str = "nvidia-cuda-runtime-cu12==12.9.79";
/// `CUDA_VERSION` of that header; any other header is refused.
const HEADER_CUDA_VERSION: u32 = 12090;
/// Where the generated file lives, relative to the workspace root.
const OUTPUT: &str = "cuda-vmm-sys/src/bindings.rs";

/// The one entry-point list (`for_each_entry_point!` in cuda-vmm-sys), read as text
/// so that this task builds even when `bindings.rs` does not.
const ENTRY_POINT_LIST: &str = include_str!("../../cuda-vmm-sys/src/entry_points.rs");

/// The function-pointer typedefs (from `cudaTypedefs.h`) of every entry point
/// that the loader table resolves: the `PFN_*` of each `symbol: PFN_type,` line
/// of the entry-point list.
fn entry_point_types(list: &str) -> Result<Vec<&str>, String> {
    let body = list
        .split_once("$callback! {")
        .map(|(_, rest)| rest)
        .ok_or("entry_points.rs: no `$callback! {` list")?;
    let body = body
        .split_once('}')
        .map(|(body, _)| body)
        .ok_or("entry_points.rs: unterminated list")?;
    let mut types = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pfn = line
            .strip_suffix(',')
            .and_then(|l| l.split_once(':'))
            .map(|(symbol, pfn)| (symbol.trim(), pfn.trim()))
            .filter(|(symbol, pfn)| {
                symbol.starts_with("cu")
                    && pfn.starts_with("PFN_")
                    && pfn.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .map(|(_, pfn)| pfn)
            .ok_or_else(|| format!("entry_points.rs: not `symbol: PFN_type,`: `{line}`"))?;
        types.push(pfn);
    }
    if types.is_empty() {
        return Err("entry_points.rs: the entry-point list is empty".to_string());
    }
    Ok(types)
}

/// Types the VMM API needs beyond those the entry points pull in.
const EXTRA_TYPES: &[&str] = &[
    "CUresult",
    "CUdevice",
    "CUcontext",
    "CUdeviceptr",
    "CUdevice_attribute",
    "CUmem.*",
    "CUarrayMapInfo.*",
    "CUarraySparseSubresourceType.*",
    "CUmemOperationType.*",
    "CUmemHandleType.*",
    "CUdriverProcAddress_flags.*",
    "CUdriverProcAddressQueryResult.*",
    "CUmemAllocationCompType.*",
    "CUmemRangeHandleType.*",
    "CUmulticastGranularity_flags.*",
    "CUstream_flags.*",
    "CUevent_flags.*",
    "CUevent_wait_flags.*",
    "CUstreamCaptureStatus.*",
];

/// Enums whose values are bits that may be OR-ed together.
const BITSET_ENUMS: &[&str] = &["CUmemAllocationHandleType_enum"];

/// What `cargo xtask bindgen [--check] [--cuda-include DIR]` was asked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    check: bool,
    include: Option<PathBuf>,
}

impl Options {
    fn parse(args: &mut lexopt::Parser) -> Result<Options, String> {
        let mut options = Options::default();
        while let Some(arg) = args
            .next()
            .map_err(|e| crate::argument_error(e, "bindgen"))?
        {
            match arg {
                lexopt::Arg::Long("check") => options.check = true,
                lexopt::Arg::Long("cuda-include") => {
                    let dir = crate::flag_value(args, "cuda-include", "bindgen", "a directory")?;
                    options.include = Some(PathBuf::from(dir));
                }
                other => return Err(crate::unknown_argument(&other, "bindgen")),
            }
        }
        Ok(options)
    }
}

pub fn run(args: &mut lexopt::Parser) -> Result<(), String> {
    let Options { check, include } = Options::parse(args)?;
    let include = match include {
        Some(dir) => {
            if !dir.join("cuda.h").is_file() {
                return Err(format!("--cuda-include {}: no cuda.h there", dir.display()));
            }
            dir
        }
        None => find_include_dir()?,
    };
    check_header_version(&include)?;
    let generated = generate(&include)?;
    let root = workspace_root();
    let results = results_table(&generated)?;
    for (rel, text) in [(OUTPUT, &generated), (RESULTS_OUTPUT, &results)] {
        let out = root.join(rel);
        if check {
            let committed = std::fs::read_to_string(&out)
                .map_err(|e| format!("cannot read {}: {e}", out.display()))?;
            if committed != *text {
                return Err(format!(
                    "{rel} is stale; run `cargo xtask bindgen`.\n{}",
                    diff_summary(&committed, text)
                ));
            }
            println!("fresh: {rel} matches {}", include.display());
        } else {
            std::fs::write(&out, text)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!(
                "wrote {rel} ({} lines) from {}",
                text.lines().count(),
                include.display()
            );
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// Looks for `cuda.h`: `CUDA_PATH`/`CUDA_HOME`, `/usr/local/cuda/include`, then an
/// installed or unpacked `nvidia-cuda-runtime-cu12` wheel.
fn find_include_dir() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(v) = std::env::var_os(var) {
            candidates.push(PathBuf::from(v).join("include"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    for site in python_site_dirs() {
        candidates.push(site.join("nvidia/cuda_runtime/include"));
    }
    candidates.push(workspace_root().join("target/cuda-header/nvidia/cuda_runtime/include"));
    for dir in candidates {
        if dir.join("cuda.h").is_file() && header_version(&dir) == Some(HEADER_CUDA_VERSION) {
            return Ok(dir);
        }
        tried.push(dir.display().to_string());
    }
    Err(format!(
        "no cuda.h of CUDA_VERSION {HEADER_CUDA_VERSION} found. Looked in:\n  {}\n\
         Install the pinned header with `python3 -m pip install {HEADER_REQUIREMENT}`,\n\
         or pass `--cuda-include DIR`.",
        tried.join("\n  ")
    ))
}

fn python_site_dirs() -> Vec<PathBuf> {
    let script = "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)";
    let Ok(out) = Command::new("python3").args(["-c", script]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn header_version(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("cuda.h")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("#define CUDA_VERSION"))
        .and_then(|v| v.trim().parse().ok())
}

fn check_header_version(dir: &Path) -> Result<(), String> {
    match header_version(dir) {
        Some(HEADER_CUDA_VERSION) => Ok(()),
        Some(v) => Err(format!(
            "{}/cuda.h has CUDA_VERSION {v}; the bindings are pinned to {HEADER_CUDA_VERSION} \
             ({HEADER_REQUIREMENT})",
            dir.display()
        )),
        None => Err(format!("{}/cuda.h has no CUDA_VERSION line", dir.display())),
    }
}

fn generate(include: &Path) -> Result<String, String> {
    let header = "#include <cuda.h>\n#include <cudaTypedefs.h>\n";
    let mut builder = bindgen::Builder::default()
        .header_contents("cuda_vmm_wrapper.h", header)
        .clang_arg(format!("-I{}", include.display()))
        .raw_line(format!(
            "// Generated by bindgen from cuda.h (CUDA_VERSION {HEADER_CUDA_VERSION}, PyPI {HEADER_REQUIREMENT}).\n\
             // Regenerate with: cargo xtask bindgen\n\
             // Verify with:     cargo xtask bindgen --check"
        ))
        .default_enum_style(bindgen::EnumVariation::NewType { is_bitfield: false, is_global: false })
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .derive_eq(true)
        .derive_hash(true)
        .layout_tests(true)
        .use_core()
        .generate_comments(true)
        .formatter(bindgen::Formatter::Prettyplease)
        .allowlist_var("CUDA_VERSION")
        .allowlist_var("CU_MEM_.*")
        .allowlist_var("CU_MEMHOSTALLOC_.*")
        .allowlist_var("CU_LAUNCH_PARAM_.*");
    for name in BITSET_ENUMS {
        builder = builder.bitfield_enum(*name);
    }
    for name in entry_point_types(ENTRY_POINT_LIST)?
        .iter()
        .chain(EXTRA_TYPES)
    {
        builder = builder.allowlist_type(*name);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    match result {
        Ok(Ok(bindings)) => Ok(bindings.to_string()),
        Ok(Err(e)) => Err(format!(
            "bindgen failed on {}/cuda.h: {e}",
            include.display()
        )),
        Err(_) => Err(
            "bindgen could not load libclang. Install it (Debian/Ubuntu: \
             `apt-get install libclang-dev`) or point LIBCLANG_PATH at the directory holding \
             libclang.so."
                .to_string(),
        ),
    }
}

fn diff_summary(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let first = old_lines
        .iter()
        .zip(&new_lines)
        .position(|(a, b)| a != b)
        .unwrap_or(old_lines.len().min(new_lines.len()));
    let mut s = format!(
        "committed: {} lines, regenerated: {} lines; first difference at line {}:\n",
        old_lines.len(),
        new_lines.len(),
        first + 1
    );
    for (tag, lines) in [("-", &old_lines), ("+", &new_lines)] {
        for line in lines.iter().skip(first).take(5) {
            s.push_str(&format!("{tag} {line}\n"));
        }
    }
    s
}

/// Where the generated `CUresult` name/description table lives.
pub const RESULTS_OUTPUT: &str = "cuda-vmm-sys/src/results.rs";

/// Builds `results.rs` (every `CUresult` code with its name and header
/// description) from the generated bindings text.
pub fn results_table(bindings: &str) -> Result<String, String> {
    let start = bindings
        .find("impl cudaError_enum {")
        .ok_or("generated bindings have no `impl cudaError_enum` block")?;
    let block = &bindings[start..];
    let end = block
        .find("\n}\n")
        .ok_or("unterminated `impl cudaError_enum` block")?;
    let block = &block[..end];
    let mut rows = Vec::new();
    let mut doc = String::new();
    let mut lines = block.lines().skip(1).peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("///") {
            doc.push_str(rest.trim());
            doc.push(' ');
        } else if let Some(rest) = t.strip_prefix("/**") {
            let mut text = rest.to_string();
            while !text.contains("*/") {
                match lines.next() {
                    Some(l) => {
                        text.push(' ');
                        text.push_str(l.trim());
                    }
                    None => break,
                }
            }
            doc.push_str(text.trim_end_matches("*/"));
            doc.push(' ');
        } else if let Some(rest) = t.strip_prefix("pub const ") {
            let mut decl = rest.to_string();
            while !decl.contains(';') {
                match lines.next() {
                    Some(l) => decl.push_str(l.trim()),
                    None => break,
                }
            }
            let name = decl
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let value: String = decl
                .rsplit('(')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let value: u32 = value
                .parse()
                .map_err(|_| format!("cannot parse value of {name}"))?;
            let text = doc.split_whitespace().collect::<Vec<_>>().join(" ");
            rows.push((value, name, text));
            doc.clear();
        }
    }
    if rows.len() < 50 {
        return Err(format!(
            "only {} CUresult codes parsed; expected ~100",
            rows.len()
        ));
    }
    let mut out = String::new();
    out.push_str(
        "// Generated by `cargo xtask bindgen` from the CUresult docs in bindings.rs. Do not edit.\n\
         //! Names and header descriptions of every `CUresult` code.\n\n\
         use crate::bindings::CUresult;\n\n\
         /// `(code, name, description)` for every `CUresult` the header defines.\n\
         pub const RESULT_CODES: &[(u32, &str, &str)] = &[\n",
    );
    for (v, n, d) in &rows {
        out.push_str(&format!("    ({v}, {n:?}, {d:?}),\n"));
    }
    out.push_str(
        "];\n\n\
         /// The header's name for `code` (`\"CUDA_ERROR_OUT_OF_MEMORY\"`), or `None` if unknown.\n\
         pub fn result_name(code: CUresult) -> Option<&'static str> {\n\
         \x20   RESULT_CODES.iter().find(|r| r.0 == code.0).map(|r| r.1)\n\
         }\n\n\
         /// The header's description of `code`, or `None` if unknown.\n\
         pub fn result_description(code: CUresult) -> Option<&'static str> {\n\
         \x20   RESULT_CODES.iter().find(|r| r.0 == code.0).map(|r| r.2)\n\
         }\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(&mut lexopt::Parser::from_args(args))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(Options::default()));
        assert_eq!(
            parse(&["--check", "--cuda-include", "--dir"]),
            Ok(Options {
                check: true,
                include: Some(PathBuf::from("--dir")),
            })
        );
        let unknown = |a: &str| Err(format!("unknown argument `{a}` to `cargo xtask bindgen`"));
        assert_eq!(parse(&["x"]), unknown("x"));
        assert_eq!(parse(&["-c"]), unknown("-c"));
        assert_eq!(parse(&["--check=1"]), unknown("--check=1"));
        assert_eq!(parse(&["--cuda-include=d"]), unknown("--cuda-include=d"));
        assert_eq!(
            parse(&["--cuda-include"]),
            Err("--cuda-include needs a directory".to_string())
        );
    }

    #[test]
    fn reads_every_typedef_of_the_entry_point_list() {
        let types = entry_point_types(ENTRY_POINT_LIST).expect("the list parses");
        assert_eq!(types.len(), 75);
        assert!(types.contains(&"PFN_cuStreamIsCapturing_v10000"));
        assert_eq!(types.first(), Some(&"PFN_cuInit_v2000"));
        assert!(types.contains(&"PFN_cuMemAddressReserve_v10020"));
        assert_eq!(types.last(), Some(&"PFN_cuDeviceSetMemPool_v11020"));
    }

    #[test]
    fn refuses_a_malformed_list() {
        assert!(entry_point_types("no list here").is_err());
        assert!(entry_point_types("$callback! {\n}").is_err());
        assert!(entry_point_types("$callback! {\n cuInit PFN_cuInit_v2000,\n}").is_err());
    }
}
