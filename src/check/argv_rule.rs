//! The rule that keeps an `exec` argv free of shells and inline code, however it is wrapped.
//!
//! An argument in a shell command line or in inline code is code, whatever its pattern meant
//! to allow. So at load time the wrappers in front of the real program are peeled off (`env`,
//! `timeout`, `nice`, `sudo`, `busybox`, …) and the program is refused when it is a shell, a
//! remote shell (`ssh`), or an interpreter given its code inline (`python -c`, `perl -e`,
//! `node -e`, an `awk` program). Past the program, any later word that starts a shell or an
//! interpreter with inline code is refused too (`docker exec c sh -c …`, `kubectl exec p --
//! python3 -c …`, `find -exec sh -c`), so a wrapper this file does not know is still covered.
//!
//! Names are compared by basename without a version suffix or `.exe`: `/bin/sh`, `bash5`,
//! `python3.11`, `pwsh.exe`. `sed` is left alone: its GNU `e` command can run a shell, but a
//! sed script is not a language whose purpose is running programs. Interpreters that read their
//! code from stdin only (`tclsh`, `wish`) get `/dev/null` there, so they cannot be given code.

/// Shells: refused wherever they are the program, with or without `-c`.
const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "rbash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "pdksh",
    "oksh",
    "fish",
    "csh",
    "tcsh",
    "ash",
    "yash",
    "posh",
    "elvish",
    "nu",
    "xonsh",
    "pwsh",
    "powershell",
    "cmd",
    "su",
    "sg",
    "script",
    "watch",
    "parallel",
];
/// Programs whose command runs on another host through that host's shell.
const REMOTE_SHELLS: &[&str] = &["ssh", "rsh", "autossh", "mosh", "dbclient", "rlogin"];
/// awk and its variants: their first operand is a program, and awk programs run commands.
const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk", "bwk", "goawk"];

/// An interpreter and the options that give it code inline.
struct Interpreter {
    names: &'static [&'static str],
    /// Whole words (also `WORD=code`) that give code inline.
    inline_words: &'static [&'static str],
    /// Letters that give code inline inside a cluster of short options (`-c`, `-lne`).
    inline_letters: &'static str,
    /// Short options whose value follows (attached or as the next word).
    value_letters: &'static str,
    /// Long options whose value is the next word unless written `--name=value`.
    value_words: &'static [&'static str],
    /// A first operand that means "the code follows" (`deno eval CODE`).
    inline_subcommands: &'static [&'static str],
}

const INTERPRETERS: &[Interpreter] = &[
    Interpreter {
        names: &["python", "pypy", "jython", "ipython", "micropython"],
        inline_words: &[],
        inline_letters: "c",
        value_letters: "WXm",
        value_words: &["--check-hash-based-pycs"],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["perl"],
        inline_words: &[],
        inline_letters: "eE",
        value_letters: "MmIxiDdC",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["ruby", "jruby", "truffleruby"],
        inline_words: &[],
        inline_letters: "e",
        value_letters: "ICrEFxTK0",
        value_words: &["--encoding", "--external-encoding", "--internal-encoding", "--enable", "--disable"],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["node", "nodejs", "bun", "deno"],
        inline_words: &["--eval", "--print"],
        inline_letters: "ep",
        value_letters: "rC",
        value_words: &["--require", "--import", "--loader", "--conditions", "--input-type", "--title"],
        inline_subcommands: &["eval"],
    },
    Interpreter {
        names: &["php", "php-cli"],
        inline_words: &[],
        inline_letters: "rBRE",
        value_letters: "cdfFtz",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["lua", "luajit"],
        inline_words: &[],
        inline_letters: "e",
        value_letters: "l",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["rscript", "r"],
        inline_words: &["--expr"],
        inline_letters: "e",
        value_letters: "",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["osascript"],
        inline_words: &[],
        inline_letters: "e",
        value_letters: "lis",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["julia"],
        inline_words: &["--eval", "--print"],
        inline_letters: "eE",
        value_letters: "JLCtp",
        value_words: &["--project", "--threads", "--load"],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["gdb"],
        inline_words: &["-ex", "--ex", "-eval-command", "--eval-command", "-iex"],
        inline_letters: "",
        value_letters: "xpcsed",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["vim", "vi", "nvim", "ex", "view", "vimdiff"],
        inline_words: &["--cmd"],
        inline_letters: "c",
        value_letters: "uiTwWsSt",
        value_words: &[],
        inline_subcommands: &[],
    },
    Interpreter {
        names: &["elixir", "erl", "groovy", "scala", "racket", "guile", "sbcl", "clisp", "ghc"],
        inline_words: &["-eval", "--eval", "-expr", "--expr", "--command"],
        inline_letters: "ecx",
        value_letters: "",
        value_words: &[],
        inline_subcommands: &[],
    },
];

/// Interpreter names that are also ordinary words (`r`, `ex`, `view`): refused as the program,
/// but not looked for among later arguments, where they are more likely data.
const ORDINARY_WORDS: &[&str] = &["r", "ex", "vi", "view", "vim", "nvim", "vimdiff"];

/// A program that runs another program given after its own options and operands.
struct Wrapper {
    names: &'static [&'static str],
    /// Short options whose value follows (attached or as the next word).
    value_letters: &'static str,
    /// Long options whose value is the next word unless written `--name=value`.
    value_words: &'static [&'static str],
    /// Options that make the wrapper itself run a shell or a command line (`sudo -s`).
    shell_options: &'static [&'static str],
    /// Operands between the options and the command (`timeout DURATION`, `flock FILE`).
    operands: usize,
    /// Whether `NAME=value` words before the command set variables (`env`, `sudo`).
    assignments: bool,
}

const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        names: &["env"],
        value_letters: "uCP",
        value_words: &["--unset", "--chdir", "--default-signal", "--ignore-signal", "--block-signal"],
        shell_options: &["-S", "--split-string"],
        operands: 0,
        assignments: true,
    },
    Wrapper {
        names: &["timeout"],
        value_letters: "sk",
        value_words: &["--signal", "--kill-after"],
        shell_options: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["nice"],
        value_letters: "n",
        value_words: &["--adjustment"],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["sudo"],
        value_letters: "ugCDhprtTU",
        value_words: &[
            "--user",
            "--group",
            "--close-from",
            "--chdir",
            "--host",
            "--prompt",
            "--role",
            "--type",
            "--command-timeout",
            "--other-user",
        ],
        shell_options: &["-s", "--shell", "-i", "--login"],
        operands: 0,
        assignments: true,
    },
    Wrapper {
        names: &["doas"],
        value_letters: "uC",
        value_words: &[],
        shell_options: &["-s"],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["runuser"],
        value_letters: "ugG",
        value_words: &["--user", "--group", "--supp-group"],
        shell_options: &["-c", "--command", "-l", "--login", "-s", "--shell", "-", "-m", "-p"],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["ionice"],
        value_letters: "cnp",
        value_words: &["--class", "--classdata", "--pid"],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chrt"],
        value_letters: "TPD",
        value_words: &["--sched-runtime", "--sched-period", "--sched-deadline"],
        shell_options: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["taskset"],
        value_letters: "",
        value_words: &[],
        shell_options: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["stdbuf"],
        value_letters: "ioe",
        value_words: &["--input", "--output", "--error"],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["nohup", "setsid", "command", "builtin", "strace", "ltrace", "faketime", "unbuffer"],
        value_letters: "oesEpu",
        value_words: &[],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["exec"],
        value_letters: "a",
        value_words: &[],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["xargs"],
        value_letters: "adEIiLlnPs",
        value_words: &[
            "--arg-file",
            "--delimiter",
            "--eof",
            "--replace",
            "--max-lines",
            "--max-args",
            "--max-procs",
            "--max-chars",
            "--process-slot-var",
        ],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["flock"],
        value_letters: "wE",
        value_words: &["--timeout", "--wait", "--conflict-exit-code"],
        shell_options: &["-c", "--command"],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["time"],
        value_letters: "fo",
        value_words: &["--format", "--output"],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["busybox", "toybox"],
        value_letters: "",
        value_words: &[],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chroot"],
        value_letters: "",
        value_words: &["--userspec", "--groups"],
        shell_options: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["nsenter", "unshare", "cgexec", "numactl", "prlimit", "sshpass", "firejail", "systemd-run"],
        value_letters: "tSGgpfdPuMHE",
        value_words: &[
            "--target",
            "--setuid",
            "--setgid",
            "--wd",
            "--unit",
            "--property",
            "--setenv",
            "--machine",
            "--host",
            "--description",
            "--slice",
            "--uid",
            "--gid",
        ],
        shell_options: &[],
        operands: 0,
        assignments: false,
    },
];

/// The name a program is known by: `/usr/bin/python3.11` → `python`, `bash5` → `bash`,
/// `PWSH.EXE` → `pwsh`.
fn program_name(word: &str) -> String {
    let base = word.rsplit(['/', '\\']).next().unwrap_or(word).to_ascii_lowercase();
    let base = base.strip_suffix(".exe").unwrap_or(&base);
    let stripped = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '_');
    if stripped.is_empty() { base.to_string() } else { stripped.to_string() }
}

fn is_templated(word: &str) -> bool {
    word.contains("{{")
}

/// How a program was reached: `` or ` (run by timeout, sudo)`.
fn reached_through(wrappers: &[String]) -> String {
    if wrappers.is_empty() { String::new() } else { format!(" (run by {})", wrappers.join(", ")) }
}

const SCRIPT_ADVICE: &str = "put the commands in a script file and run it by path, each argument its own argv element \
     after it (argv = [\"/usr/local/lib/firebell/check-queue\", \"{{queue}}\"]; the script sees it as $1)";

/// Refuses an argv that runs a shell or an interpreter with inline code; `Err` says which
/// program, why, and what to write instead.
pub(crate) fn refuse_shells_and_inline_code(argv: &[String]) -> Result<(), String> {
    let mut position = 0;
    let mut wrappers: Vec<String> = Vec::new();
    // Peel the wrappers off the front, to the program that really runs.
    while position < argv.len() {
        let word = &argv[position];
        if position > 0 && is_templated(word) {
            return Err(format!(
                "the program that {} runs must be written out, not filled in by an argument ('{word}')",
                wrappers.last().map(String::as_str).unwrap_or("argv")
            ));
        }
        let name = program_name(word);
        let Some(wrapper) = WRAPPERS.iter().find(|wrapper| wrapper.names.contains(&name.as_str())) else { break };
        position = skip_wrapper(wrapper, &name, argv, position + 1)?;
        wrappers.push(name);
    }
    let Some(program) = argv.get(position) else { return Ok(()) };
    let name = program_name(program);
    let via = reached_through(&wrappers);
    if SHELLS.contains(&name.as_str()) {
        return Err(format!(
            "'{program}'{via} runs a shell, and a shell runs its arguments as code; exec never runs one: {SCRIPT_ADVICE}"
        ));
    }
    if REMOTE_SHELLS.contains(&name.as_str()) {
        return Err(format!(
            "'{program}'{via} runs its command through a shell on the remote host (and its options can run local \
             commands), so exec refuses it; run the check on that host instead (a firebell there, or a script there \
             that a forced command in authorized_keys starts)"
        ));
    }
    check_program(&argv[position..], &via, true)?;
    // Past the program, a shell or interpreter given code inline is refused wherever it starts
    // (`docker exec box sh -c …`), so wrappers this file does not know are covered too.
    for start in position + 1..argv.len() {
        let words = &argv[start..];
        let name = program_name(&words[0]);
        if ORDINARY_WORDS.contains(&name.as_str()) {
            continue;
        }
        if SHELLS.contains(&name.as_str()) && words[1..].iter().any(|word| shell_inline_flag(word)) {
            return Err(format!(
                "'{}' after '{program}' runs a shell given code inline; exec never runs one: {SCRIPT_ADVICE}",
                words[0]
            ));
        }
        check_program(words, &format!(" (after '{program}')"), false)?;
    }
    Ok(())
}

/// `-c`, `-ec`, `--command`, pwsh's `-Command`/`-EncodedCommand`, cmd's `/c`: a shell's code
/// follows.
fn shell_inline_flag(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    if matches!(lower.as_str(), "/c" | "/k" | "/r" | "--command" | "--init-command") {
        return true;
    }
    let Some(cluster) = lower.strip_prefix('-').filter(|cluster| !cluster.is_empty() && !cluster.starts_with('-'))
    else {
        return false;
    };
    // pwsh takes any unambiguous prefix of its parameter names.
    let pwsh_inline = ["command", "encodedcommand", "commandwithargs"];
    let pwsh = pwsh_inline.iter().any(|name| name.starts_with(cluster)) || matches!(cluster, "ec" | "e" | "cwa");
    pwsh || (cluster.chars().all(|c| c.is_ascii_alphabetic()) && cluster.contains('c'))
}

/// Refuses `words[0]` when it is an interpreter given inline code or an awk program. At the
/// front of the argv (`strict`), arguments may also not fill in the interpreter's options or
/// choose its script.
fn check_program(words: &[String], via: &str, strict: bool) -> Result<(), String> {
    let program = &words[0];
    let name = program_name(program);
    if AWKS.contains(&name.as_str()) {
        let has_program_file = words[1..].iter().any(|word| word == "-f" || word.starts_with("--file"));
        let has_operand = words[1..].iter().any(|word| !word.starts_with('-'));
        if !has_program_file && (strict || has_operand) {
            return Err(format!(
                "'{program}'{via} is given its program inline, and an awk program can run commands (system(), \
                 print | \"cmd\"); put the program in a file and pass -f FILE, or {SCRIPT_ADVICE}"
            ));
        }
        return Ok(());
    }
    let Some(interpreter) = INTERPRETERS.iter().find(|interpreter| interpreter.names.contains(&name.as_str())) else {
        return Ok(());
    };
    let mut index = 1;
    while index < words.len() {
        let word = words[index].as_str();
        if strict && is_templated(word) {
            return Err(format!(
                "an argument fills in '{word}' where {program}{via} takes its options or its script; write the \
                 script's path out and put arguments after it (argv = [\"{program}\", \"/path/to/script\", \"{{{{x}}}}\"])"
            ));
        }
        if word == "--" || word == "-" || !word.starts_with('-') {
            if interpreter.inline_subcommands.contains(&word) {
                return Err(inline_refusal(program, word, via));
            }
            return Ok(());
        }
        let flag = word.split_once('=').map(|(flag, _)| flag).unwrap_or(word);
        if interpreter.inline_words.contains(&flag) {
            return Err(inline_refusal(program, flag, via));
        }
        if word.starts_with("--") {
            if interpreter.value_words.contains(&flag) && !word.contains('=') {
                index += 1;
            }
        } else {
            for (offset, letter) in word[1..].char_indices() {
                if interpreter.inline_letters.contains(letter) {
                    return Err(inline_refusal(program, &format!("-{letter}"), via));
                }
                if interpreter.value_letters.contains(letter) {
                    if offset + letter.len_utf8() == word.len() - 1 {
                        index += 1;
                    }
                    break;
                }
            }
        }
        index += 1;
    }
    Ok(())
}

fn inline_refusal(program: &str, flag: &str, via: &str) -> String {
    format!(
        "'{program} {flag}'{via} runs code given inline, where an argument would be code too; put the code in a \
         file and run that by path (argv = [\"{program}\", \"/path/to/script\", \"{{{{x}}}}\"], arguments after the \
         script only)"
    )
}

/// Skips a wrapper's options, operands and `NAME=value` words from `start`; returns where the
/// wrapped command begins.
fn skip_wrapper(wrapper: &Wrapper, name: &str, argv: &[String], start: usize) -> Result<usize, String> {
    let mut index = start;
    let mut operands_left = wrapper.operands;
    while index < argv.len() {
        let word = argv[index].as_str();
        if word == "--" {
            index += 1;
            break;
        }
        let flag = word.split_once('=').map(|(flag, _)| flag).unwrap_or(word);
        if wrapper.shell_options.contains(&flag) {
            return Err(format!(
                "'{name} {flag}' runs a shell or a command line it splits itself, and a shell runs its arguments as \
                 code; exec never runs one: {SCRIPT_ADVICE}"
            ));
        }
        if word == "-" {
            // `env -`: an empty environment, an option like `-i`.
            index += 1;
            continue;
        }
        if word.starts_with("--") {
            if wrapper.value_words.contains(&flag) && !word.contains('=') {
                index += 1;
            }
        } else if word.len() > 1 && word.starts_with('-') {
            for (offset, letter) in word[1..].char_indices() {
                if wrapper.shell_options.contains(&format!("-{letter}").as_str()) {
                    return Err(format!(
                        "'{name} -{letter}' runs a shell, and a shell runs its arguments as code; exec never runs \
                         one: {SCRIPT_ADVICE}"
                    ));
                }
                if wrapper.value_letters.contains(letter) {
                    if offset + letter.len_utf8() == word.len() - 1 {
                        index += 1;
                    }
                    break;
                }
            }
        } else if wrapper.assignments && word.contains('=') && !word.starts_with('=') {
            // `env NAME=value`: a variable, not the command.
        } else if operands_left > 0 {
            operands_left -= 1;
        } else {
            break;
        }
        index += 1;
    }
    // Options and operands after `--` still belong to the wrapper when it has operands left.
    while operands_left > 0 && index < argv.len() {
        operands_left -= 1;
        index += 1;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(argv: &[&str]) -> Result<(), String> {
        let argv: Vec<String> = argv.iter().map(|word| word.to_string()).collect();
        refuse_shells_and_inline_code(&argv)
    }

    #[test]
    fn names_lose_their_path_version_and_extension() {
        assert_eq!(program_name("/usr/bin/python3.11"), "python");
        assert_eq!(program_name("bash5"), "bash");
        assert_eq!(program_name("PWSH.EXE"), "pwsh");
        assert_eq!(program_name("/bin/sh"), "sh");
    }

    #[test]
    fn refuses_shells_and_inline_code_however_wrapped() {
        let refused: &[&[&str]] = &[
            &["sh", "-c", "echo {{x}}"],
            &["/bin/bash", "-ec", "echo"],
            &["env", "bash", "-c", "echo"],
            &["env", "-i", "A=1", "-u", "B", "/bin/sh", "script"],
            &["timeout", "-s", "KILL", "5", "sh", "-c", "echo"],
            &["nice", "-n", "5", "zsh"],
            &["sudo", "-u", "root", "--", "dash", "-c", "x"],
            &["sudo", "-s", "id"],
            &["busybox", "sh", "-c", "x"],
            &["ssh", "host", "uptime"],
            &["python3.11", "-c", "print(1)"],
            &["python3", "-W", "ignore", "-c", "print(1)"],
            &["perl", "-lne", "print"],
            &["node", "--eval=1"],
            &["deno", "eval", "1"],
            &["awk", "{print $1}", "file"],
            &["docker", "exec", "box", "sh", "-c", "x"],
            &["kubectl", "exec", "pod", "--", "python3", "-c", "x"],
            &["xargs", "-n", "1", "bash", "-c", "x"],
            &["timeout", "5", "{{program}}"],
            &["python3", "{{script}}"],
            &["flock", "/tmp/lock", "-c", "x"],
            &["env", "-S", "sh -c x"],
            &["cmd.exe", "/c", "dir"],
        ];
        for argv in refused {
            assert!(check(argv).is_err(), "{argv:?} was allowed");
        }
    }

    #[test]
    fn allows_programs_run_directly() {
        let allowed: &[&[&str]] = &[
            &["systemctl", "is-active", "worker"],
            &["env", "LANG=C", "df", "-P", "{{path}}"],
            &["timeout", "5", "curl", "-s", "http://x"],
            &["python3", "/opt/checks/queue.py", "{{queue}}"],
            &["python3", "-m", "json.tool", "file"],
            &["pgrep", "-f", "bash"],
            &["docker", "compose", "exec", "-T", "nginx", "nginx", "-s", "reload"],
            &["awk", "-f", "/opt/prog.awk", "file"],
            &["journalctl", "-u", "x", "--grep", "killed process"],
        ];
        for argv in allowed {
            assert_eq!(check(argv), Ok(()), "{argv:?}");
        }
    }
}
