//! Kubernetes' name syntax (apimachinery's `validation` rules), for configuration keys that
//! hold names of Kubernetes things: node names, namespaces, label keys and values, classes. It
//! imports nothing of the crate, so every configuration section can use it.

/// A DNS-1123 label (`namespace`, a pool name): lower-case alphanumerics and `-`, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_part(s)
}

/// A DNS-1123 subdomain (a node name, a label key's prefix): dot-separated parts spelled like
/// labels, at most 253 in all (apimachinery limits the parts' lengths no further).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_part)
}

fn is_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both
/// ends.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// A qualified name (a label key, `spec.loadBalancerClass`): an optional DNS subdomain prefix
/// and `/`, then a name part (as a non-empty label value).
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_rules() {
        for ok in ["a", "web-1", "0"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("node-a.example.com"));
        assert!(
            is_dns_subdomain(&"a".repeat(64)),
            "only the whole is limited"
        );
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(!is_dns_subdomain("node_a") && !is_dns_subdomain("a..b"));
        for ok in ["", "v1.2", "A_b-c"] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a.", "a b", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
        for ok in ["app", "sixlane.io/lb", "app.kubernetes.io/name", "Rack_1"] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in ["", "/lb", "sixlane.io/", "Sixlane.IO/lb", "a/b/c", "-x"] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }
}
