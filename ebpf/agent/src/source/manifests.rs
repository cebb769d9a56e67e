//! The static source: a directory of ordinary Kubernetes YAML or JSON (Service, EndpointSlice,
//! Node, ServiceCIDR; multi-document files and `List`s allowed), re-read when it changes.
//!
//! Objects are parsed into the same k8s-openapi types the watchers produce and go through the
//! same store and reconcile. Each read of the directory is one complete snapshot
//! ([`Change::Replace`] per kind), so a Service and its slices in different files appear
//! together. A directory that does not parse keeps the previous snapshot in force (and the error
//! is logged and counted): write files atomically (write a temporary file, then rename) or a
//! half-written file is read as a broken one until it is complete.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Deserialize as _;
use serde_json::Value;

use crate::{
    Error, Result,
    source::store::{Change, Kind, Object},
};

/// Turns one API object (as JSON) into an [`Object`]; `List`s are flattened. Kinds the agent
/// does not use give nothing (a directory may hold Deployments next to the Services).
pub fn objects_from_value(v: Value, out: &mut Vec<Object>) -> Result<()> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (api_version, kind) {
        (_, "List" | "ServiceList" | "EndpointSliceList" | "NodeList" | "ServiceCIDRList") => {
            let items = match v.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => return Err(Error::ManifestItems { kind: kind.into() }),
            };
            for (i, item) in items.into_iter().enumerate() {
                // Typed lists leave kind/apiVersion off their items.
                let item = match (kind, item) {
                    ("ServiceList", Value::Object(mut m)) => {
                        m.entry("kind").or_insert("Service".into());
                        m.entry("apiVersion").or_insert("v1".into());
                        Value::Object(m)
                    }
                    ("EndpointSliceList", Value::Object(mut m)) => {
                        m.entry("kind").or_insert("EndpointSlice".into());
                        m.entry("apiVersion")
                            .or_insert("discovery.k8s.io/v1".into());
                        Value::Object(m)
                    }
                    ("NodeList", Value::Object(mut m)) => {
                        m.entry("kind").or_insert("Node".into());
                        m.entry("apiVersion").or_insert("v1".into());
                        Value::Object(m)
                    }
                    ("ServiceCIDRList", Value::Object(mut m)) => {
                        m.entry("kind").or_insert("ServiceCIDR".into());
                        m.entry("apiVersion")
                            .or_insert("networking.k8s.io/v1".into());
                        Value::Object(m)
                    }
                    (_, item) => item,
                };
                objects_from_value(item, out).map_err(|e| Error::ManifestItem {
                    index: i,
                    source: Box::new(e),
                })?;
            }
            Ok(())
        }
        ("v1", "Service") => {
            out.push(Object::Service(Box::new(decode("Service", v)?)));
            Ok(())
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            out.push(Object::EndpointSlice(Box::new(decode("EndpointSlice", v)?)));
            Ok(())
        }
        ("v1", "Node") => {
            out.push(Object::Node(Box::new(decode("Node", v)?)));
            Ok(())
        }
        ("networking.k8s.io/v1", "ServiceCIDR") => {
            out.push(Object::ServiceCidr(Box::new(decode("ServiceCIDR", v)?)));
            Ok(())
        }
        (_, "Service" | "EndpointSlice" | "Node" | "ServiceCIDR") => {
            Err(Error::ManifestApiVersion {
                kind: kind.into(),
                api_version: api_version.into(),
                want: match kind {
                    "EndpointSlice" => "discovery.k8s.io/v1",
                    "ServiceCIDR" => "networking.k8s.io/v1",
                    _ => "v1",
                },
            })
        }
        ("", "") => Err(Error::NotKubernetesObject),
        _ => Ok(()),
    }
}

/// An object of a known kind from its JSON.
fn decode<T: serde::de::DeserializeOwned>(kind: &'static str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|source| Error::ManifestDecode { kind, source })
}

/// Parses a YAML (or JSON, which is YAML) text with any number of documents.
pub fn parse_text(path: &Path, text: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (doc, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|source| Error::ManifestYaml {
            path: path.to_owned(),
            doc: doc + 1,
            source,
        })?;
        if v.is_null() {
            continue; // an empty document (`---` at the end)
        }
        objects_from_value(v, &mut out).map_err(|e| Error::ManifestDocument {
            path: path.to_owned(),
            doc: doc + 1,
            source: Box::new(e),
        })?;
    }
    Ok(out)
}

/// The manifest files of `dir`, sorted (hidden files and editor leftovers skipped).
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |e| Error::io("reading", dir, e);
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // ConfigMap mounts keep their data in `..data/` and dot-named timestamped dirs.
        if name.starts_with('.') {
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yaml" | "yml" | "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the whole directory into one snapshot: a [`Change::Replace`] for every kind.
pub fn read_dir(dir: &Path) -> Result<Vec<Change>> {
    let mut objects = Vec::new();
    for path in manifest_files(dir)? {
        let text = fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        objects.extend(parse_text(&path, &text)?);
    }
    let mut by_kind: BTreeMap<Kind, Vec<Object>> = Kind::ALL.iter().map(|k| (*k, vec![])).collect();
    for o in objects {
        by_kind.entry(o.kind()).or_default().push(o);
    }
    Ok(by_kind
        .into_iter()
        .map(|(k, objs)| Change::Replace(k, objs))
        .collect())
}

/// A cheap fingerprint of the directory (names, sizes, mtimes) to notice changes between polls.
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut fp = Vec::new();
    for path in manifest_files(dir)? {
        let md = fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
        fp.push((
            path,
            md.len(),
            md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        ));
    }
    Ok(fp)
}

/// Watches `dir`: sends a full snapshot at start and after every change, until `changes` is
/// closed. Errors go to `on_error` and the previous snapshot stays in force.
pub async fn watch(
    dir: PathBuf,
    poll: Duration,
    changes: tokio::sync::mpsc::Sender<Vec<Change>>,
    on_error: impl Fn(&Error),
) {
    let mut last_fp = None;
    // Re-read even without a visible change now and then: an edit within the same second and
    // size leaves the fingerprint alone.
    let full_every = 30u32;
    let mut ticks = 0u32;
    loop {
        ticks = ticks.wrapping_add(1);
        match fingerprint(&dir) {
            Ok(fp) => {
                if last_fp.as_ref() != Some(&fp) || ticks.is_multiple_of(full_every) {
                    match read_dir(&dir) {
                        Ok(snapshot) => {
                            last_fp = Some(fp);
                            if changes.send(snapshot).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            on_error(&e);
                            // Retry at the next tick even if the fingerprint stays.
                            last_fp = None;
                        }
                    }
                }
            }
            Err(e) => {
                on_error(&e);
                last_fp = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = changes.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIPs: ["fd00:96::10"]
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["fd00:10:1::5"]
  nodeName: node-a
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
"#;

    #[test]
    fn multi_document_files_parse_and_other_kinds_are_ignored() {
        let objs = parse_text(Path::new("x.yaml"), MULTI).unwrap();
        let kinds: Vec<Kind> = objs.iter().map(Object::kind).collect();
        assert_eq!(kinds, [Kind::Service, Kind::EndpointSlice]);
        assert_eq!(objs[1].key().to_string(), "default/web-1");
    }

    #[test]
    fn service_cidrs_are_read() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: kubernetes}\nspec: {cidrs: ['fd00:10:96::/108']}\n---\napiVersion: v1\nkind: ServiceCIDRList\nitems: [{metadata: {name: more}}]\n";
        let objs = parse_text(Path::new("x.yaml"), text).unwrap();
        assert_eq!(objs.len(), 2);
        assert!(objs.iter().all(|o| o.kind() == Kind::ServiceCidr));
        assert_eq!(objs[0].key().to_string(), "kubernetes", "cluster-scoped");
        let e = parse_text(
            Path::new("x.yaml"),
            "apiVersion: networking.k8s.io/v1beta1\nkind: ServiceCIDR\n",
        )
        .unwrap_err();
        assert!(
            sixlane_attach::chain(&e)
                .to_string()
                .contains("want networking.k8s.io/v1"),
            "{e}"
        );
    }

    #[test]
    fn lists_are_flattened() {
        let text = r#"{"apiVersion":"v1","kind":"NodeList","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#;
        let objs = parse_text(Path::new("x.json"), text).unwrap();
        assert_eq!(objs.len(), 2);
        assert!(objs.iter().all(|o| o.kind() == Kind::Node));
    }

    #[test]
    fn errors_name_the_file_and_document() {
        // As the daemon logs them: the error and its causes.
        let err = |path: &str, text: &str| {
            let e = parse_text(Path::new(path), text).unwrap_err();
            sixlane_attach::chain(&e).to_string()
        };
        let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nspec: {ports: 5}\n";
        let e = err("/m/svc.yaml", bad);
        assert!(e.starts_with("/m/svc.yaml: document 2: Service:"), "{e}");
        assert_eq!(e.matches("invalid type").count(), 1, "{e}");
        let e = err("/m/x.yaml", "a: [\n");
        assert!(e.starts_with("/m/x.yaml: document 1:"), "{e}");
        let e = err("/m/x.yaml", "foo: bar\n");
        assert!(e.contains("not a Kubernetes object"), "{e}");
        let e = err(
            "/m/x.yaml",
            "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\n",
        );
        assert!(e.contains("want discovery.k8s.io/v1"), "{e}");
        let e = err(
            "/m/l.yaml",
            "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Node, metadata: 5}]\n",
        );
        assert!(
            e.starts_with("/m/l.yaml: document 1: items[0]: Node: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn read_dir_is_one_snapshot_of_every_kind() {
        let dir = std::env::temp_dir().join(format!("sixlane-manifests-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("..data")).unwrap();
        fs::write(dir.join("a.yaml"), MULTI).unwrap();
        fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        fs::write(dir.join(".hidden.yaml"), "garbage: [").unwrap();
        let changes = read_dir(&dir).unwrap();
        let summary: Vec<(Kind, usize)> = changes
            .iter()
            .map(|c| match c {
                Change::Replace(k, objs) => (*k, objs.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Kind::Service, 1),
                (Kind::EndpointSlice, 1),
                (Kind::Node, 0),
                (Kind::ServiceCidr, 0)
            ]
        );
        let fp1 = fingerprint(&dir).unwrap();
        fs::write(
            dir.join("b.yml"),
            "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n",
        )
        .unwrap();
        assert_ne!(fp1, fingerprint(&dir).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
