//! The sixlane CNI plugin: CNI spec 0.4.0/1.0.0/1.1.0 (ADD, DEL, CHECK, STATUS, GC, VERSION),
//! built-in host-local-compatible IPv6 IPAM, ptp-style veth plumbing over netlink, and the
//! attachment of sixlane's pinned pod programs. See docs/cni.md.
//!
//! [`run`] is the whole plugin minus process I/O, so tests can drive it; `main.rs` only wires
//! the environment, stdin and stdout to it.

pub mod cmd;
pub mod conf;
pub mod dataplane;
pub mod error;
pub mod ipam;
pub mod log;
pub mod netlink;
pub mod plumb;
pub mod sources;
pub mod spec;

use serde_json::Value;

pub use error::{Error, Result};
use spec::{Command, Version};

/// The outcome of one invocation: the document for stdout (if any) and whether it succeeded.
#[derive(Debug)]
pub struct Outcome {
    pub doc: Option<Value>,
    pub ok: bool,
}

/// Runs one plugin invocation. `getenv` reads the CNI_* variables (`Err` for non-UTF-8 values),
/// `stdin` is read only when the verb needs it.
pub fn run(
    getenv: &dyn Fn(&'static str) -> Result<Option<String>>,
    read_stdin: &mut dyn FnMut() -> std::io::Result<Vec<u8>>,
) -> Outcome {
    let mut version = Version::LATEST;
    match run_inner(getenv, read_stdin, &mut version) {
        Ok(doc) => Outcome { doc, ok: true },
        Err(e) => {
            log::error(&sixlane_attach::chain(&e).to_string());
            Outcome {
                doc: Some(spec::error_json(version, &e)),
                ok: false,
            }
        }
    }
}

fn run_inner(
    getenv: &dyn Fn(&'static str) -> Result<Option<String>>,
    read_stdin: &mut dyn FnMut() -> std::io::Result<Vec<u8>>,
    version: &mut Version,
) -> Result<Option<Value>> {
    let (cmd, env) = spec::read_env(getenv)?;
    let stdin = read_stdin().map_err(|e| Error::io("reading", "stdin", e))?;
    if cmd == Command::Version {
        let requested = serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return Ok(Some(spec::version_json(requested.as_deref())));
    }
    let (obj, v) = conf::decode(&stdin)?;
    *version = v;
    let (log_file, level) = conf::log_settings(&obj);
    let prefix = match cmd {
        Command::Add | Command::Del | Command::Check => {
            let pod = env.pod().map(|p| format!(" pod={p}")).unwrap_or_default();
            format!("{} {}/{}{pod}", cmd.as_str(), env.container_id, env.ifname)
        }
        _ => cmd.as_str().to_owned(),
    };
    log::init(level, log_file.as_deref(), prefix);
    if matches!(cmd, Command::Gc | Command::Status) && v < Version::V1_1_0 {
        return Err(Error::IncompatibleVersion(format!(
            "config version {v} does not allow {} (needs 1.1.0)",
            cmd.as_str()
        )));
    }
    let conf = conf::parse(&obj, v, cmd, &env)?;
    match cmd {
        Command::Add => cmd::add(&conf, &env).map(Some),
        Command::Del => cmd::del(&conf, &env).map(|()| None),
        Command::Check => cmd::check(&conf, &env).map(|()| None),
        Command::Status => cmd::status(&conf).map(|()| None),
        Command::Gc => cmd::gc(&conf).map(|()| None),
        Command::Version => unreachable!("handled above"),
    }
}
