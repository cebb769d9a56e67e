//! `cargo xtask setup`: make a fresh Debian 12 machine able to build, test, demo and bench
//! sixlane, and check the kernel. Idempotent, and fast when nothing is missing (one dpkg query,
//! one rustup query, one `bpf-linker --version`).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::sh;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Also install what `cargo xtask bench` needs (traffic generators and peers).
    #[arg(long)]
    pub bench: bool,
    /// Only check; install nothing.
    #[arg(long)]
    pub check: bool,
}

/// Debian packages, by purpose. Everything a command needs is installed before it runs.
const BUILD: &[&str] = &[
    // bpf-linker against Debian's LLVM 22.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "build-essential",
    "pkg-config",
];
const TEST: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "ethtool",
    "procps",
    "util-linux",
    "kmod",
    "bpftool",
    "curl",
    "socat",
    // The kind e2e dry run: shellcheck, and a venv for the pinned manifest validator (PyPI).
    "shellcheck",
    "python3-venv",
    // CNI plugin tests: the reference plugins (host-local compatibility, portmap/bandwidth
    // chaining, bench peers), ip6tables for portmap, a private containerd + runc, and a static
    // busybox for the locally built OCI image.
    "containernetworking-plugins",
    "iptables",
    "containerd",
    "runc",
    "busybox-static",
    // The CRI test's gRPC client (k8s-cri) generates its code with protoc at build time.
    "protobuf-compiler",
    // The image (cargo xtask image): a Debian base from packages, built without a daemon; the
    // DaemonSet test's API server certificates.
    "mmdebstrap",
    "buildah",
    "openssl",
    // NAT64 tests: a real DNS64 resolver (unbound's dns64 module) and dig to query it.
    "unbound",
    "dnsutils",
    // The service tests' HTTP backends.
    "nginx-light",
    // BGP: the agent's routing engine (BIRD 2), and the upstream router the tests peer with
    // (FRR: zebra, bgpd, bfdd, vtysh). Their packaged services are disabled (`quiet_services`).
    "bird2",
    "frr",
];
const BENCH: &[&str] = &[
    "iperf3",
    "qperf",
    "wrk",
    "nginx-light",
    "hyperfine",
    "nftables",
    // NAT64 peer: Tayga (stateless, TUN) + nft masquerade.
    "tayga",
    // Neighbor Discovery peer (the ndp scenario's `ndppd` mode).
    "ndppd",
];

/// The nightly toolchain the eBPF crate is built with (aya-build runs `rustup run nightly`).
const NIGHTLY: &str = "nightly";

/// What `setup` found, for callers that want to report it.
#[derive(Debug, Default)]
pub struct Report {
    pub installed: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<Report> {
    let mut report = Report::default();
    if !nix::unistd::geteuid().is_root() {
        bail!("sixlane's setup and tests need root (apt, network namespaces, BPF); run as root");
    }
    let mut want: Vec<&str> = BUILD.iter().chain(TEST).copied().collect();
    if args.bench {
        want.extend_from_slice(BENCH);
    }
    apt(&want, args.check, &mut report)?;
    quiet_services(&report)?;
    toolchain(args.check, &mut report)?;
    bpf_linker(args.check, &mut report)?;
    kernel(args.check)?;
    if report.installed.is_empty() {
        eprintln!("setup: everything in place");
    } else {
        eprintln!("setup: installed {}", report.installed.join(", "));
    }
    Ok(report)
}

fn missing_packages(pkgs: &[&str]) -> anyhow::Result<Vec<String>> {
    // One query for all: `dpkg-query` prints a status line for known packages and fails for
    // unknown ones, so read the output rather than the exit code.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(pkgs)
        .output()
        .context("running dpkg-query (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status.starts_with("ii").then_some(name)
        })
        .collect();
    Ok(pkgs
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| (*p).to_owned())
        .collect())
}

/// Installs missing packages without starting their services (nginx, unbound, containerd, BIRD
/// and FRR are started by the tests and the demo inside namespaces, never on the host).
fn apt(pkgs: &[&str], check: bool, report: &mut Report) -> anyhow::Result<()> {
    let missing = missing_packages(pkgs)?;
    if missing.is_empty() {
        return Ok(());
    }
    if check {
        bail!("missing Debian packages: {}", missing.join(" "));
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        fs::write(
            policy,
            "#!/bin/sh\n# written by sixlane's xtask setup: no service starts\nexit 101\n",
        )
        .context("writing /usr/sbin/policy-rc.d")?;
        sh::run(Command::new("chmod").args(["0755", "/usr/sbin/policy-rc.d"]))?;
    }
    let res = (|| {
        sh::run(
            Command::new("apt-get")
                .args(["-qq", "update"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        sh::run(
            Command::new("apt-get")
                .args([
                    "-qq",
                    "-o",
                    "Dpkg::Use-Pty=0",
                    "install",
                    "-y",
                    "--no-install-recommends",
                ])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    })();
    if own_policy {
        let _ = fs::remove_file(policy);
    }
    res?;
    let still = missing_packages(pkgs)?;
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    report.installed.extend(missing);
    Ok(())
}

/// Packages whose postinst enables a system service the tests must not meet: the host's own
/// BIRD or FRR would answer on the default control sockets and, on a host, hold port 179; its
/// ndppd would proxy for the host's interfaces. The tests, the demo and the bench run private
/// instances in namespaces; the packaged ones stay stopped.
const SERVICES: &[(&str, &str)] = &[("bird2", "bird"), ("frr", "frr"), ("ndppd", "ndppd")];

/// Stops and disables the packaged services of what this run installed (a service that was
/// there before is the machine owner's business). apt ran with a policy that started nothing;
/// this keeps them from starting at the next boot too.
fn quiet_services(report: &Report) -> anyhow::Result<()> {
    let systemd = Path::new("/run/systemd/system").exists();
    for (package, service) in SERVICES {
        if !report.installed.iter().any(|p| p == package) {
            continue;
        }
        if systemd {
            sh::run(Command::new("systemctl").args(["disable", "--now", service]))?;
        } else if Path::new("/etc/init.d").join(service).exists() {
            sh::run(Command::new("update-rc.d").args([service, "disable"]))?;
        }
    }
    Ok(())
}

fn toolchain(check: bool, report: &mut Report) -> anyhow::Result<()> {
    if !sh::succeeds("rustup", &["--version"]) {
        bail!("rustup not found: sixlane builds its eBPF object with `rustup run nightly`");
    }
    let toolchains = sh::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        if check {
            bail!("the nightly toolchain is missing (rustup toolchain install nightly)");
        }
        sh::run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy,rustfmt",
        ]))?;
        report.installed.push("nightly toolchain".into());
    }
    let installed = sh::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    for comp in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(comp)) {
            if check {
                bail!(
                    "nightly is missing {comp} (rustup component add {comp} --toolchain nightly)"
                );
            }
            sh::run(Command::new("rustup").args([
                "component",
                "add",
                comp,
                "--toolchain",
                NIGHTLY,
            ]))?;
            report.installed.push(format!("nightly {comp}"));
        }
    }
    Ok(())
}

/// bpf-linker built against Debian's LLVM 22 (crates.io's default feature wants an LLVM that
/// Debian does not ship).
fn bpf_linker(check: bool, report: &mut Report) -> anyhow::Result<()> {
    if sh::succeeds("bpf-linker", &["--version"]) {
        return Ok(());
    }
    if check {
        bail!("bpf-linker is missing (cargo xtask setup builds it)");
    }
    eprintln!("setup: building bpf-linker against LLVM 22 (a few minutes, once)");
    sh::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
                "--locked",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )?;
    if !sh::succeeds("bpf-linker", &["--version"]) {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    report.installed.push("bpf-linker".into());
    Ok(())
}

fn kernel_version() -> anyhow::Result<(u32, u32)> {
    let rel = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut it = rel.trim().split(['.', '-']);
    let major = it.next().and_then(|s| s.parse().ok());
    let minor = it.next().and_then(|s| s.parse().ok());
    match (major, minor) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("cannot parse kernel release {rel:?}"),
    }
}

/// bpffs mounted (mounts it if not), BTF present, kernel new enough for TCX.
fn kernel(check: bool) -> anyhow::Result<()> {
    let (major, minor) = kernel_version()?;
    if (major, minor) < (6, 6) {
        bail!("kernel {major}.{minor} is too old: sixlane needs Linux ≥ 6.6 (TCX links)");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): build it with CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    if !is_bpffs("/sys/fs/bpf")? {
        if check {
            bail!("bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)");
        }
        fs::create_dir_all("/sys/fs/bpf").context("creating /sys/fs/bpf")?;
        sh::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
            .context("mounting bpffs at /sys/fs/bpf")?;
        eprintln!("setup: mounted bpffs at /sys/fs/bpf");
    }
    if !Path::new("/run/netns").exists() {
        fs::create_dir_all("/run/netns").context("creating /run/netns")?;
    }
    Ok(())
}

fn is_bpffs(path: &str) -> anyhow::Result<bool> {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => Ok(st.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("statfs {path}")),
    }
}
