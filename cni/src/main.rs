//! `sixlane`: the CNI plugin binary. Exactly one JSON document on stdout (result or error),
//! logs on stderr (and the configured log file).

use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::fd::{AsFd as _, FromRawFd as _, OwnedFd},
    process::ExitCode,
};

fn main() -> ExitCode {
    // Keep the real stdout for the one document and point fd 1 at stderr, so nothing else
    // (a library's stray print) can ever reach the runtime's parser.
    let doc_out: Option<File> = nix::unistd::dup(std::io::stdout().as_fd())
        .ok()
        .map(File::from);
    if doc_out.is_some() {
        // SAFETY: fd 2 is open for the whole process; dup2 onto fd 1 only redirects it.
        let _ = unsafe { libc::dup2(2, 1) };
    }
    let getenv = |k: &'static str| -> sixlane_cni::Result<Option<String>> {
        match std::env::var(k) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(sixlane_cni::Error::Env {
                var: k,
                reason: "not valid UTF-8".into(),
            }),
        }
    };
    let mut read_stdin = || {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    };
    let out = sixlane_cni::run(&getenv, &mut read_stdin);
    if let Some(doc) = out.doc {
        let mut text = doc.to_string();
        text.push('\n');
        let mut sink = doc_out.unwrap_or_else(|| {
            // SAFETY: fd 1 is the process's stdout.
            File::from(unsafe { OwnedFd::from_raw_fd(1) })
        });
        let _ = sink.write_all(text.as_bytes());
    }
    if out.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
