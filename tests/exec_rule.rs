//! The exec rule of SPEC §9 through `firebell commands check`: an argv that runs a shell, `ssh`,
//! or an interpreter given inline code is refused at load with its file and line, however it
//! is wrapped, and the refusal names the program and says what to write instead.

mod common;
mod support;

use common::Workspace;

/// A runbook whose one check runs `argv` (TOML array text), on line 6 of its file, with the
/// arguments it uses declared after it.
fn runbook(name: &str, argv: &str) -> String {
    let mut text = format!(
        "name = \"{name}\"\nsummary = \"exec rule case\"\n\n[[checks]]\nname = \"run\"\nargv = {argv}\nkind = \"exec\"\n"
    );
    for piece in argv.split("{{").skip(1) {
        let argument = piece.split("}}").next().unwrap();
        text.push_str(&format!(
            "\n[args.{argument}]\npattern = '^[a-z0-9/_]+$'\ndefault = \"a\"\nhelp = \"an argument\"\n"
        ));
    }
    text
}

/// Line of `argv =` in [`runbook`].
const ARGV_LINE: usize = 6;

#[test]
fn every_wrapper_form_of_a_shell_or_inline_code_is_refused_at_load_with_its_line() {
    // (file, argv, what the refusal must name)
    let refused = [
        ("sh_c", r#"["sh", "-c", "echo {{x}}"]"#, "'sh' runs a shell"),
        ("bin_bash", r#"["/bin/bash", "-ec", "uptime"]"#, "'/bin/bash' runs a shell"),
        ("bash_script", r#"["bash", "/opt/check.sh"]"#, "'bash' runs a shell"),
        ("versioned", r#"["bash5", "-c", "uptime"]"#, "'bash5' runs a shell"),
        ("env_bash", r#"["env", "bash", "-c", "uptime"]"#, "'bash' (run by env) runs a shell"),
        ("usr_bin_env", r#"["/usr/bin/env", "-i", "LANG=C", "sh", "-c", "uptime"]"#, "(run by env) runs a shell"),
        ("env_split", r#"["env", "-S", "sh -c uptime"]"#, "'env -S' runs a shell or a command line"),
        ("timeout", r#"["timeout", "5", "sh", "-c", "uptime"]"#, "'sh' (run by timeout) runs a shell"),
        ("timeout_opts", r#"["timeout", "-k", "1s", "--signal=KILL", "5", "dash", "-c", "x"]"#, "(run by timeout)"),
        ("nice", r#"["nice", "-n", "10", "zsh", "-c", "x"]"#, "'zsh' (run by nice) runs a shell"),
        ("nohup_setsid", r#"["nohup", "setsid", "ksh", "-c", "x"]"#, "(run by nohup, setsid) runs a shell"),
        ("sudo", r#"["sudo", "-u", "postgres", "--", "sh", "-c", "x"]"#, "'sh' (run by sudo) runs a shell"),
        ("sudo_shell", r#"["sudo", "-s", "uptime"]"#, "'sudo -s' runs a shell"),
        ("doas", r#"["doas", "-u", "root", "fish", "-c", "x"]"#, "(run by doas) runs a shell"),
        ("ionice_chrt", r#"["ionice", "-c", "3", "chrt", "-b", "0", "ash", "-c", "x"]"#, "(run by ionice, chrt)"),
        ("taskset_stdbuf", r#"["taskset", "0x1", "stdbuf", "-oL", "tcsh", "-c", "x"]"#, "(run by taskset, stdbuf)"),
        ("xargs", r#"["xargs", "-n", "1", "bash", "-c", "x"]"#, "(run by xargs) runs a shell"),
        ("flock", r#"["flock", "/tmp/lock", "-c", "x"]"#, "'flock -c' runs a shell"),
        ("busybox", r#"["busybox", "sh", "-c", "x"]"#, "'sh' (run by busybox) runs a shell"),
        ("pwsh", r#"["pwsh", "-Command", "Get-Date"]"#, "'pwsh' runs a shell"),
        ("cmd", r#"["cmd.exe", "/c", "dir"]"#, "'cmd.exe' runs a shell"),
        ("ssh", r#"["ssh", "db1", "pg_isready"]"#, "'ssh' runs its command through a shell on the remote host"),
        ("ssh_wrapped", r#"["timeout", "10", "ssh", "-p", "2222", "db1", "uptime"]"#, "'ssh' (run by timeout)"),
        ("python_c", r#"["python3", "-c", "print(1)"]"#, "'python3 -c' runs code given inline"),
        ("python_versioned", r#"["/usr/bin/python3.11", "-W", "ignore", "-c", "x"]"#, "'/usr/bin/python3.11 -c'"),
        ("perl_e", r#"["perl", "-lne", "print", "/etc/hosts"]"#, "'perl -e' runs code given inline"),
        ("ruby_e", r#"["ruby", "-e", "puts 1"]"#, "'ruby -e' runs code given inline"),
        ("node_e", r#"["node", "--eval=process.exit(0)"]"#, "'node --eval' runs code given inline"),
        ("deno_eval", r#"["deno", "eval", "1"]"#, "'deno eval' runs code given inline"),
        ("php_r", r#"["php", "-r", "echo 1;"]"#, "'php -r' runs code given inline"),
        ("lua_e", r#"["lua5.4", "-e", "print(1)"]"#, "'lua5.4 -e' runs code given inline"),
        ("rscript_e", r#"["Rscript", "-e", "1"]"#, "'Rscript -e' runs code given inline"),
        ("osascript_e", r#"["osascript", "-e", "beep"]"#, "'osascript -e' runs code given inline"),
        ("awk", r#"["awk", "{ print $1 }", "/proc/loadavg"]"#, "'awk' is given its program inline"),
        ("env_python", r#"["env", "PYTHONPATH=/opt", "python3", "-c", "x"]"#, "'python3 -c' (run by env)"),
        ("docker_exec", r#"["docker", "exec", "worker", "sh", "-c", "x"]"#, "'sh' after 'docker' runs a shell"),
        ("kubectl_exec", r#"["kubectl", "exec", "pod", "--", "python3", "-c", "x"]"#, "'python3 -c' (after 'kubectl')"),
        (
            "templated_program",
            r#"["timeout", "5", "{{program}}"]"#,
            "the program that timeout runs must be written out",
        ),
        ("templated_script", r#"["python3", "{{script}}"]"#, "an argument fills in '{{script}}'"),
    ];
    let workspace = Workspace::new();
    for (file, argv, _) in refused {
        workspace.runbook(&format!("{file}.toml"), &runbook(file, argv));
    }
    let finished = workspace.run(&["commands", "check"]);
    assert_eq!(finished.code, 1, "{finished:?}");
    let reported: Vec<&str> = finished.stdout.lines().filter(|line| line.starts_with("commands/")).collect();
    for (file, argv, named) in refused {
        let prefix = format!("commands/{file}.toml:{ARGV_LINE}: ");
        let line = reported
            .iter()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{argv} was not refused at {prefix}\n{}", finished.stdout));
        assert!(line.contains(named), "{file}: the refusal does not say {named:?}:\n{line}");
        assert!(line.contains("argv"), "{line}");
        assert!(
            ["script file", "in a file", "on that host", "written out", "path out"]
                .iter()
                .any(|advice| line.contains(advice)),
            "{file}: the refusal does not say what to do instead:\n{line}"
        );
    }
    assert_eq!(reported.len(), refused.len(), "one problem per file:\n{}", finished.stdout);
}

#[test]
fn programs_run_directly_still_load() {
    let allowed = [
        ("systemctl", r#"["systemctl", "is-active", "worker"]"#),
        ("env_vars", r#"["env", "LANG=C", "df", "-P", "{{path}}"]"#),
        ("timeout_curl", r#"["timeout", "5", "curl", "-fsS", "http://127.0.0.1:9000/health"]"#),
        ("sudo_systemctl", r#"["sudo", "-n", "systemctl", "restart", "worker"]"#),
        ("python_script", r#"["python3", "/opt/checks/queue.py", "{{queue}}"]"#),
        ("python_module", r#"["python3", "-m", "json.tool", "/etc/app.json"]"#),
        ("pgrep_bash", r#"["pgrep", "-f", "bash"]"#),
        ("docker_nginx", r#"["docker", "compose", "exec", "-T", "nginx", "nginx", "-s", "reload"]"#),
        ("awk_file", r#"["awk", "-f", "/opt/checks/load.awk", "/proc/loadavg"]"#),
    ];
    let workspace = Workspace::new();
    for (file, argv) in allowed {
        workspace.runbook(&format!("{file}.toml"), &runbook(file, argv));
    }
    let finished = workspace.run(&["commands", "check"]);
    assert_eq!(finished.code, 0, "{}{}", finished.stdout, finished.stderr);
}
