//! Builds the kernel programs (`agent-ebpf`) with aya-build and embeds them in the agent.
//! `AYA_BUILD_SKIP=1` skips this (unit tests and tools that never load the programs); the
//! agent then reports at run time that it has no eBPF object and uses the procfs capture.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        println!("cargo:rustc-cfg=cordon_no_ebpf");
    }
    println!("cargo::rustc-check-cfg=cfg(cordon_no_ebpf)");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "cordon-agent-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
