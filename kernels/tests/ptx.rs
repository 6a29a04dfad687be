//! NVRTC compiles every kernel to PTX for sm_90, every entry point the host launches
//! present. Needs libnvrtc.so.13 (`pip install nvidia-cuda-nvrtc==13.0.88`, its
//! `nvidia/cu13/lib` on LD_LIBRARY_PATH: `just test` and CI set this up) but no GPU.
//! Its own harness: where the library is missing it reports "skipped", never "passed".

use kiln_kernels::ptx::{self, ENTRY_POINTS};

fn main() {
    println!("\nrunning 1 test");
    if !ptx::nvrtc_available() {
        println!("test every_kernel_compiles_to_ptx ... skipped: libnvrtc.so.13 not found (`just test` installs it)");
        println!("\ntest result: ok. 0 passed; 0 failed; 1 skipped\n");
        return;
    }
    let mut failures = Vec::new();
    for (name, entries) in ENTRY_POINTS {
        match ptx::compile(name) {
            Ok(ptx) => {
                if !ptx.contains(&format!(".target {}", ptx::ARCH)) {
                    failures.push(format!("{name}: the PTX does not target {}", ptx::ARCH));
                }
                for entry in *entries {
                    if !ptx.contains(&format!(".entry {entry}(")) {
                        failures.push(format!("{name}: no entry point `{entry}` in the PTX"));
                    }
                }
            }
            Err(log) => failures.push(log),
        }
    }
    if failures.is_empty() {
        println!("test every_kernel_compiles_to_ptx ... ok ({} kernels)", ENTRY_POINTS.len());
        println!("\ntest result: ok. 1 passed; 0 failed; 0 skipped\n");
    } else {
        println!("test every_kernel_compiles_to_ptx ... FAILED\n\n{}", failures.join("\n\n"));
        println!("\ntest result: FAILED. 0 passed; 1 failed; 0 skipped\n");
        std::process::exit(1);
    }
}
