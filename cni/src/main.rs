use std::process::ExitCode;

use sixlane_cni::spec::{CniError, SUPPORTED_VERSIONS};

fn main() -> ExitCode {
    let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
    if cmd == "VERSION" {
        let doc = serde_json::json!({
            "cniVersion": "1.1.0",
            "supportedVersions": SUPPORTED_VERSIONS,
        });
        println!("{doc}");
        return ExitCode::SUCCESS;
    }
    let err = CniError {
        cni_version: "1.1.0".into(),
        code: 4,
        msg: format!("CNI_COMMAND {cmd:?} is not supported by this build"),
        details: String::new(),
    };
    println!("{}", serde_json::to_string(&err).unwrap_or_default());
    ExitCode::FAILURE
}
