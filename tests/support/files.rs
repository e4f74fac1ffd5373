//! Writing what a test's workspace holds: TOML strings and executable scripts. A leaf that
//! both `support` and `common` include, so neither writes it again.

use std::path::{Path, PathBuf};

/// A string as a TOML basic string (quoted and escaped), for paths and URLs in configs.
pub fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Writes an executable `#!/bin/sh` script into `dir`.
///
/// The file is copied into place by `install`, a child process, so this test process never
/// holds it open for writing: a fork from another test thread would otherwise inherit that
/// descriptor and make running the script fail with ETXTBSY ("Text file busy").
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let draft = dir.join(format!("{name}.draft"));
    std::fs::write(&draft, format!("#!/bin/sh\n{body}\n")).expect("the script draft is written");
    let script = dir.join(name);
    let status = std::process::Command::new("install")
        .arg("-m")
        .arg("755")
        .arg(&draft)
        .arg(&script)
        .status()
        .expect("install runs");
    assert!(status.success(), "install {} failed", script.display());
    std::fs::remove_file(&draft).expect("the draft is removed");
    script
}
