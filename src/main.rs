use std::process::ExitCode;

// Training allocates and frees activation-sized buffers every step; mimalloc reuses them
// where the system allocator returns them to the kernel and faults them back in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    kiln::cli::main_with(std::env::args_os(), &kiln::Registry::default())
}
