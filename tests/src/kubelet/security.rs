//! What kubelet makes of a container's security context, resources and the pod's namespaces:
//! the CRI's `LinuxContainerSecurityContext`, `LinuxContainerResources` and `NamespaceOption`.

use k8s_cri::v1::{
    Capability, LinuxContainerResources, LinuxContainerSecurityContext, NamespaceMode,
    NamespaceOption, SecurityProfile, security_profile::ProfileType,
};
use serde_json::Value;

use super::value::strings;

/// kubelet's masked paths for a container without `procMount: Unmasked` (pkg/securitycontext).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// kubelet's read-only paths, likewise: `/proc/sys` among them.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// The priority from which kubelet treats a pod as critical (`system-node-critical` is above).
const CRITICAL_CLASSES: &[&str] = &["system-node-critical", "system-cluster-critical"];
/// kubelet's `oom_score_adj` for critical pods' containers.
const CRITICAL_OOM_SCORE_ADJ: i64 = -997;

/// The node's network (hostNetwork), a PID namespace per container, IPC shared in the pod:
/// kubelet's namespaces for this pod.
pub fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Requests and limits as kubelet turns them into cgroup settings, with the critical pods'
/// OOM score.
pub fn resources(spec: &Value, c: &Value) -> LinuxContainerResources {
    let r = &c["resources"];
    let cpu_shares = match r["requests"]["cpu"].as_str() {
        // kubelet: milli-CPU × 1024 / 1000, at least 2.
        Some(cpu) => (milli_cpu(cpu) * 1024 / 1000).max(2),
        // No request: the minimum.
        None => 2,
    };
    let oom_score_adj = spec["priorityClassName"]
        .as_str()
        .filter(|p| CRITICAL_CLASSES.contains(p))
        .map_or(0, |_| CRITICAL_OOM_SCORE_ADJ);
    LinuxContainerResources {
        cpu_shares,
        memory_limit_in_bytes: r["limits"]["memory"].as_str().map_or(0, bytes),
        oom_score_adj,
        ..Default::default()
    }
}

fn milli_cpu(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().expect("milli-CPU"),
        None => (q.parse::<f64>().expect("CPU") * 1000.0) as i64,
    }
}

/// A memory quantity (`256Mi`, `1G`, bytes).
fn bytes(q: &str) -> i64 {
    let units = [
        ("Ki", 1i64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    units
        .iter()
        .find_map(|(u, m)| {
            q.strip_suffix(u)
                .map(|n| n.parse::<i64>().expect("quantity") * m)
        })
        .unwrap_or_else(|| q.parse().expect("quantity"))
}

/// The container's security context as kubelet passes it to the runtime.
pub fn security_context(c: &Value) -> LinuxContainerSecurityContext {
    let sc = &c["securityContext"];
    let privileged = sc["privileged"] == true;
    let seccomp = match sc["seccompProfile"]["type"].as_str() {
        Some("RuntimeDefault") => ProfileType::RuntimeDefault,
        Some("Unconfined") => ProfileType::Unconfined,
        Some(other) => panic!("seccompProfile type {other} is not mapped"),
        // kubelet without --seccomp-default (its default): unconfined.
        None => ProfileType::Unconfined,
    };
    let caps = &sc["capabilities"];
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: strings(&caps["add"]),
            drop_capabilities: strings(&caps["drop"]),
            add_ambient_capabilities: vec![],
        }),
        privileged,
        namespace_options: Some(namespaces()),
        no_new_privs: sc["allowPrivilegeEscalation"] == false,
        // Privileged containers get neither (the runtime ignores them then anyway).
        masked_paths: if privileged {
            vec![]
        } else {
            MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        },
        readonly_paths: if privileged {
            vec![]
        } else {
            READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        },
        seccomp: Some(SecurityProfile {
            profile_type: seccomp as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubelet_reads_them() {
        assert_eq!(milli_cpu("50m"), 50);
        assert_eq!(milli_cpu("1.5"), 1500);
        assert_eq!(bytes("256Mi"), 256 << 20);
        assert_eq!(bytes("64Mi"), 64 << 20);
        assert_eq!(bytes("1G"), 1_000_000_000);
        assert_eq!(bytes("1000"), 1000);
    }
}
