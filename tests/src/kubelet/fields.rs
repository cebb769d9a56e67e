//! Every field of the DaemonSet manifest and what kubelet (or the controller in front of it)
//! makes of it here: a CRI field, or a named decision. A field missing from [`TABLE`] fails the
//! test with its path, so a manifest change cannot slip past the test unmapped.

use serde_json::Value;

/// A field's path (dots between keys, `[]` for every list element, `*` for any key of a map)
/// and what is done with it.
pub const TABLE: &[(&str, &str)] = &[
    ("apiVersion", "apps/v1: checked"),
    ("kind", "DaemonSet: checked"),
    (
        "metadata.name",
        "pod names: <name>-<random suffix>, as the DaemonSet controller makes them",
    ),
    ("metadata.namespace", "PodSandboxMetadata.namespace"),
    (
        "metadata.labels.*",
        "the DaemonSet object's own labels: API only, no CRI effect",
    ),
    (
        "spec.selector.matchLabels.*",
        "controller: must select the template's labels (checked)",
    ),
    (
        "spec.updateStrategy.type",
        "RollingUpdate: the test's update replaces the pod",
    ),
    (
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        "1 (maxSurge 0): the old pod is deleted before the new one is created",
    ),
    ("spec.template.metadata.labels.*", "PodSandboxConfig.labels"),
    (
        "spec.template.spec.serviceAccountName",
        "a token (issued by the API mock), ca.crt and namespace mounted read-only at \
         /var/run/secrets/kubernetes.io/serviceaccount in every container",
    ),
    (
        "spec.template.spec.hostNetwork",
        "NamespaceOption.network = NODE (sandbox and containers); ports get hostPort = \
         containerPort",
    ),
    (
        "spec.template.spec.dnsPolicy",
        "ClusterFirstWithHostNet: PodSandboxConfig.dns_config = cluster DNS, \
         <ns>.svc/svc/cluster domain searches, ndots:5",
    ),
    (
        "spec.template.spec.priorityClassName",
        "system-node-critical: a critical pod, oom_score_adj -997 for its containers",
    ),
    (
        "spec.template.spec.tolerations[].operator",
        "scheduler only: no CRI effect",
    ),
    (
        "spec.template.spec.terminationGracePeriodSeconds",
        "StopContainer timeout",
    ),
    (
        "spec.template.spec.initContainers[].name",
        "ContainerMetadata.name",
    ),
    (
        "spec.template.spec.initContainers[].image",
        "ImageSpec; run to completion (exit 0) before the containers start",
    ),
    (
        "spec.template.spec.initContainers[].imagePullPolicy",
        "IfNotPresent: ImageStatus; an absent image would be pulled (no registry here: fails)",
    ),
    (
        "spec.template.spec.initContainers[].command[]",
        "ContainerConfig.command",
    ),
    (
        "spec.template.spec.initContainers[].securityContext.capabilities.drop[]",
        "Capability.drop_capabilities (names as written; the runtime adds CAP_)",
    ),
    (
        "spec.template.spec.initContainers[].volumeMounts[].name",
        "Mount.host_path (the volume's)",
    ),
    (
        "spec.template.spec.initContainers[].volumeMounts[].mountPath",
        "Mount.container_path",
    ),
    (
        "spec.template.spec.containers[].name",
        "ContainerMetadata.name",
    ),
    ("spec.template.spec.containers[].image", "ImageSpec"),
    (
        "spec.template.spec.containers[].imagePullPolicy",
        "IfNotPresent: ImageStatus; an absent image would be pulled (no registry here: fails)",
    ),
    (
        "spec.template.spec.containers[].args[]",
        "ContainerConfig.args (the image's entrypoint)",
    ),
    (
        "spec.template.spec.containers[].env[].name",
        "ContainerConfig.envs",
    ),
    (
        "spec.template.spec.containers[].env[].valueFrom.fieldRef.fieldPath",
        "downward API: spec.nodeName is the node's name (any other path fails)",
    ),
    (
        "spec.template.spec.containers[].envFrom[].configMapRef.name",
        "ContainerConfig.envs from the ConfigMap's data (before env; service variables only \
         where neither set one)",
    ),
    (
        "spec.template.spec.containers[].envFrom[].configMapRef.optional",
        "true: a missing ConfigMap adds nothing",
    ),
    (
        "spec.template.spec.containers[].ports[].name",
        "named port (the probes use numbers)",
    ),
    (
        "spec.template.spec.containers[].ports[].containerPort",
        "PortMapping.container_port and host_port (hostNetwork)",
    ),
    (
        "spec.template.spec.containers[].ports[].protocol",
        "PortMapping.protocol",
    ),
    (
        "spec.template.spec.containers[].livenessProbe.httpGet.path",
        "the test's prober: HTTP GET in the node's network namespace",
    ),
    (
        "spec.template.spec.containers[].livenessProbe.httpGet.port",
        "prober: port",
    ),
    (
        "spec.template.spec.containers[].livenessProbe.httpGet.host",
        "prober: address",
    ),
    (
        "spec.template.spec.containers[].livenessProbe.periodSeconds",
        "prober: interval",
    ),
    (
        "spec.template.spec.containers[].livenessProbe.failureThreshold",
        "prober: failures before kubelet would restart the container (the test fails instead)",
    ),
    (
        "spec.template.spec.containers[].readinessProbe.httpGet.path",
        "the test's prober: the pod is ready when it answers 2xx/3xx",
    ),
    (
        "spec.template.spec.containers[].readinessProbe.httpGet.port",
        "prober: port",
    ),
    (
        "spec.template.spec.containers[].readinessProbe.httpGet.host",
        "prober: address",
    ),
    (
        "spec.template.spec.containers[].readinessProbe.periodSeconds",
        "prober: interval",
    ),
    (
        "spec.template.spec.containers[].lifecycle.preStop.exec.command[]",
        "ExecSync in the container before StopContainer, within the grace period (what is \
         left of it is StopContainer's timeout, at least 2 s); a failure is an event only",
    ),
    (
        "spec.template.spec.containers[].resources.requests.cpu",
        "LinuxContainerResources.cpu_shares (milli-CPU × 1024 / 1000)",
    ),
    (
        "spec.template.spec.containers[].resources.requests.memory",
        "scheduler only (and the Burstable QoS class)",
    ),
    (
        "spec.template.spec.containers[].resources.limits.memory",
        "LinuxContainerResources.memory_limit_in_bytes",
    ),
    (
        "spec.template.spec.containers[].securityContext.privileged",
        "LinuxContainerSecurityContext.privileged; unprivileged: the default masked and \
         read-only paths",
    ),
    (
        "spec.template.spec.containers[].securityContext.allowPrivilegeEscalation",
        "false: LinuxContainerSecurityContext.no_new_privs",
    ),
    (
        "spec.template.spec.containers[].securityContext.capabilities.drop[]",
        "Capability.drop_capabilities (names as written; the runtime adds CAP_)",
    ),
    (
        "spec.template.spec.containers[].securityContext.capabilities.add[]",
        "Capability.add_capabilities (names as written; the runtime adds CAP_)",
    ),
    (
        "spec.template.spec.containers[].securityContext.seccompProfile.type",
        "LinuxContainerSecurityContext.seccomp (SecurityProfile)",
    ),
    (
        "spec.template.spec.containers[].volumeMounts[].name",
        "Mount.host_path (the volume's)",
    ),
    (
        "spec.template.spec.containers[].volumeMounts[].mountPath",
        "Mount.container_path",
    ),
    (
        "spec.template.spec.containers[].volumeMounts[].readOnly",
        "Mount.readonly",
    ),
    (
        "spec.template.spec.containers[].volumeMounts[].mountPropagation",
        "Mount.propagation (HostToContainer: PROPAGATION_HOST_TO_CONTAINER)",
    ),
    (
        "spec.template.spec.volumes[].name",
        "the volumeMounts' reference",
    ),
    (
        "spec.template.spec.volumes[].hostPath.path",
        "the node's path: the test's per-node directory for it (or the kernel's own file)",
    ),
    (
        "spec.template.spec.volumes[].hostPath.type",
        "checked as kubelet does: Directory must exist, DirectoryOrCreate is created 0755",
    ),
    (
        "spec.template.spec.volumes[].configMap.name",
        "the ConfigMap's data written as files, mounted read-only (kubelet always does)",
    ),
];

/// Every leaf of `v` (a scalar, or an empty list or map) as its path's segments: map keys
/// (which may hold dots, like label keys), `[]` appended for list elements.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                leaves(v, path, out);
                path.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let last = path.pop().expect("a list is a map's value");
            path.push(format!("{last}[]"));
            a.iter().for_each(|v| leaves(v, path, out));
            path.pop();
            path.push(last);
        }
        _ => out.push(path.clone()),
    }
}

/// Whether a path is matched by `pattern` (`*` stands for one map key).
fn matches(pattern: &str, path: &[String]) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == "*" || a == b)
}

/// The manifest's fields that [`TABLE`] does not map (empty: every field is accounted for).
pub fn unmapped(manifest: &Value) -> Vec<String> {
    let mut all = Vec::new();
    leaves(manifest, &mut Vec::new(), &mut all);
    let mut out: Vec<String> = all
        .into_iter()
        .filter(|f| !TABLE.iter().any(|(p, _)| matches(p, f)))
        .map(|f| f.join("."))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_reported_with_its_path() {
        let ds = serde_json::json!({
            "apiVersion": "apps/v1",
            "metadata": {"labels": {"app.kubernetes.io/name": "b"}},
            "spec": {"template": {"spec": {
                "hostNetwork": true,
                "hostPID": true,
                "containers": [{"name": "x", "stdin": true}, {"name": "y"}],
            }}},
        });
        assert_eq!(
            unmapped(&ds),
            [
                "spec.template.spec.containers[].stdin",
                "spec.template.spec.hostPID"
            ]
        );
    }
}
