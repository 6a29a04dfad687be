//! The CUDA C source of every kernel (`<kernel>/kernel.cu`, after the shared
//! `cuda/common.cuh`) and its compilation to PTX with NVRTC, which needs no GPU and no
//! driver: at run time in the `cuda` build, and in a test wherever libnvrtc is found.

use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

pub const COMMON: &str = include_str!("cuda/common.cuh");

/// The GPUs kiln's CUDA build targets: H100 and H200 (CUDA 13.0 emits PTX ISA 9.0, the
/// newest their driver 580 JIT-compiles).
pub const ARCH: &str = "sm_90";

/// The whole program NVRTC compiles for one kernel folder.
pub fn program(kernel: &str) -> Option<String> {
    let source = crate::KERNELS.iter().find(|k| k.name == kernel)?.cuda;
    Some(format!("#line 1 \"cuda/common.cuh\"\n{COMMON}\n#line 1 \"{kernel}/kernel.cu\"\n{source}"))
}

/// Whether libnvrtc (CUDA 13) can be loaded.
pub fn nvrtc_available() -> bool {
    // The cuda build links it: that binary does not start without it.
    #[cfg(feature = "cuda")]
    return true;
    // SAFETY: only tries to open the library.
    #[cfg(not(feature = "cuda"))]
    unsafe {
        cudarc::nvrtc::sys::is_culib_present()
    }
}

/// Compiles one kernel folder's source to PTX for `ARCH`; the error carries NVRTC's log.
pub fn compile(kernel: &str) -> Result<String, String> {
    let program = program(kernel).ok_or_else(|| format!("no CUDA kernel `{kernel}`"))?;
    let options = CompileOptions {
        arch: Some(ARCH),
        options: vec!["--std=c++17".into()],
        name: Some(format!("{kernel}.cu")),
        ..Default::default()
    };
    compile_ptx_with_opts(program, options).map(|ptx| ptx.to_src()).map_err(|e| format!("{kernel}: {e:?}"))
}

/// The entry points the host code launches, per kernel folder: each must be in its PTX.
pub const ENTRY_POINTS: &[(&str, &[&str])] = &[
    ("adamw", &["adamw_sum_squares", "adamw_norm", "adamw_step", "cast_f32_bf16", "cast_bf16_f32"]),
    (
        "attention",
        &[
            "attention_fwd_f32",
            "attention_fwd_bf16",
            "attention_bwd_delta_f32",
            "attention_bwd_delta_bf16",
            "attention_bwd_dq_f32",
            "attention_bwd_dq_bf16",
            "attention_bwd_dkv_f32",
            "attention_bwd_dkv_bf16",
        ],
    ),
    ("cross_entropy", &["cross_entropy_f32", "cross_entropy_bf16", "cross_entropy_sum"]),
    ("rms_norm", &["rms_norm_fwd_f32", "rms_norm_fwd_bf16", "rms_norm_bwd_f32", "rms_norm_bwd_bf16", "rms_norm_dw"]),
    ("rope", &["rope_f32", "rope_bf16"]),
    ("swiglu", &["swiglu_fwd_f32", "swiglu_fwd_bf16", "swiglu_bwd_f32", "swiglu_bwd_bf16"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel folder has a CPU twin and CUDA source, its entry points listed, and
    /// each in its source.
    #[test]
    fn every_kernel_has_cuda_source_and_entry_points() {
        let folders: Vec<&str> = crate::KERNELS.iter().map(|k| k.name).collect();
        let listed: Vec<&str> = ENTRY_POINTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, folders);
        for kernel in crate::KERNELS {
            assert!(
                kernel.cuda.contains("extern \"C\" __global__"),
                "kernel `{}` has no CUDA entry point",
                kernel.name
            );
            assert!(!kernel.cpu.is_empty(), "kernel `{}` has no CPU twin", kernel.name);
        }
        for (name, entries) in ENTRY_POINTS {
            let source = program(name).unwrap();
            for entry in *entries {
                let stem = entry.strip_suffix("_f32").or_else(|| entry.strip_suffix("_bf16")).unwrap_or(entry);
                assert!(source.contains(stem), "{name}: no `{stem}` in its source");
            }
        }
    }
}
