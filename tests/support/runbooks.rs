//! Runbooks more than one test file starts the app with.

use std::path::{Path, PathBuf};

use super::app::{Workspace, toml_str};

/// `commands/ping.toml`: one check that always passes.
pub const PING: &str = r#"name = "ping"
summary = "Is the host alive"

[[checks]]
name = "true"
kind = "exec"
argv = ["true"]
"#;

/// `commands/workers.toml`: a depth check that warns at once, a heartbeat check that takes
/// three seconds (so a diagnosis shows the first verdict before the last), and
/// `restart-workers` (one approval from `oncall`, suggested when the depth warns), which
/// appends `restarted QUEUE` to the returned file.
pub fn workers(workspace: &Workspace) -> PathBuf {
    let log = workspace.path().join("restarts.log");
    let depth = workspace.script("depth", "echo \"depth of $1: 57\"\nexit 1");
    let heartbeats = workspace.script("heartbeats", "sleep 3\necho '4 of 4 workers heartbeating'");
    let restart = workspace.script("restart", &format!("echo \"restarted $1\" >> {}\necho restarted", path(&log)));
    workspace.runbook(
        "workers",
        &format!(
            r#"name = "workers"
summary = "Worker queue and heartbeats"

[args.queue]
pattern = '^[a-z_]{{1,32}}$'
default = "jobs"
help = "queue name"

[[checks]]
name = "queue depth"
kind = "exec"
argv = [{depth}, "{{{{queue}}}}"]

[[checks]]
name = "heartbeats"
kind = "exec"
argv = [{heartbeats}]

[[remediations]]
name = "restart-workers"
summary = "Restart the workers of one queue"
kind = "exec"
argv = [{restart}, "{{{{queue}}}}"]
approvals = 1
approvers = ["oncall"]
suggest_when = "checks['queue depth'].status in ['warn', 'crit']"
"#,
            depth = path(&depth),
            heartbeats = path(&heartbeats),
            restart = path(&restart),
        ),
    );
    log
}

fn path(path: &Path) -> String {
    toml_str(&path.display().to_string())
}
