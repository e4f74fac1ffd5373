//! The deploy kit in `deploy/`, read the way Docker, Compose, Kubernetes and systemd would read
//! it: every YAML file parses, both configs parse as firebell configs, and the references between
//! the pieces hold (names, keys, ports, paths, the user). No container engine or cluster runs
//! here, so these checks are what keeps the kit in step with the binary and with itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use firebell::config::Config;
use firebell::source::{LoadErrors, SourceFile};
use serde::Deserialize;
use serde_norway::Value;

/// Where the image and every manifest expect the config file.
const CONFIG_PATH: &str = "/etc/firebell/firebell.toml";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_dir() -> PathBuf {
    repository().join("deploy")
}

fn read(relative_to_deploy: &str) -> String {
    let path = deploy_dir().join(relative_to_deploy);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Every file under `deploy/`, as paths relative to it, in name order.
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    let mut relative: Vec<PathBuf> =
        files.iter().map(|path| path.strip_prefix(deploy_dir()).expect("under deploy/").to_path_buf()).collect();
    relative.sort();
    relative
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "yml" || extension == "yaml")
}

/// Every document of a YAML file (Kubernetes files may hold several, separated by `---`).
fn yaml_documents(relative_to_deploy: &Path) -> Vec<Value> {
    let text = read(&relative_to_deploy.to_string_lossy());
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("deploy/{} is not valid YAML: {error}", relative_to_deploy.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

fn yaml_file(relative_to_deploy: &str) -> Value {
    let mut documents = yaml_documents(Path::new(relative_to_deploy));
    assert_eq!(documents.len(), 1, "deploy/{relative_to_deploy} should hold one YAML document");
    documents.remove(0)
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what} should be a string, found {value:?}"))
}

fn sequence<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what} should be a list, found {value:?}"))
}

/// A mapping of strings, e.g. labels or a selector.
fn string_map(value: &Value, what: &str) -> BTreeMap<String, String> {
    let mapping = value.as_mapping().unwrap_or_else(|| panic!("{what} should be a mapping, found {value:?}"));
    mapping.iter().map(|(key, value)| (text(key, what).to_string(), text(value, what).to_string())).collect()
}

fn is_subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The Kubernetes manifests in `deploy/kubernetes/`.
struct Manifests {
    documents: Vec<(PathBuf, Value)>,
}

impl Manifests {
    fn load() -> Manifests {
        let documents = deploy_files()
            .into_iter()
            .filter(|path| path.starts_with("kubernetes") && is_yaml(path))
            .flat_map(|path| yaml_documents(&path).into_iter().map(move |document| (path.clone(), document)))
            .collect();
        Manifests { documents }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.documents.iter().map(|(_, document)| document).filter(|document| document["kind"] == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind).into_iter().find(|document| document["metadata"]["name"] == name)
    }

    fn names(&self, kind: &str) -> Vec<String> {
        self.of_kind(kind)
            .iter()
            .map(|document| text(&document["metadata"]["name"], "metadata.name").to_string())
            .collect()
    }

    fn deployment(&self) -> &Value {
        let deployments = self.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "deploy/kubernetes/ should hold one Deployment");
        deployments[0]
    }

    fn container(&self) -> &Value {
        let containers = sequence(&self.deployment()["spec"]["template"]["spec"]["containers"], "containers");
        containers
            .iter()
            .find(|container| container["name"] == "firebell")
            .expect("the Deployment has a container named firebell")
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(&self.deployment()["spec"]["template"]["metadata"]["labels"], "the pod template's labels")
    }

    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let secret = self.find("Secret", name)?;
        let mut values = BTreeMap::new();
        if let Some(data) = secret["data"].as_mapping() {
            for (key, value) in data {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(text(value, "Secret data"))
                    .unwrap_or_else(|error| panic!("Secret {name}: data is not base64: {error}"));
                values.insert(text(key, "Secret key").to_string(), String::from_utf8(decoded).expect("UTF-8"));
            }
        }
        if !secret["stringData"].is_null() {
            values.extend(string_map(&secret["stringData"], "Secret stringData"));
        }
        Some(values)
    }

    /// The environment the firebell container starts with: plain values and Secret keys.
    fn container_environment(&self) -> BTreeMap<String, String> {
        let mut environment = BTreeMap::new();
        for variable in self.container()["env"].as_sequence().into_iter().flatten() {
            let name = text(&variable["name"], "env name").to_string();
            let value = if let Some(value) = variable["value"].as_str() {
                value.to_string()
            } else {
                let reference = &variable["valueFrom"]["secretKeyRef"];
                let secret_name = text(&reference["name"], "secretKeyRef.name");
                let key = text(&reference["key"], "secretKeyRef.key");
                let secret = self.secret(secret_name).unwrap_or_else(|| panic!("no Secret named {secret_name}"));
                secret.get(key).unwrap_or_else(|| panic!("Secret {secret_name} has no key {key}")).clone()
            };
            environment.insert(name, value);
        }
        environment
    }

    /// The container port a probe or Service port names, by name or number.
    fn container_port(&self, port: &Value) -> Option<u64> {
        let ports = sequence(&self.container()["ports"], "container ports");
        ports
            .iter()
            .find(|candidate| match port {
                Value::String(name) => candidate["name"] == name.as_str(),
                Value::Number(number) => candidate["containerPort"].as_u64() == number.as_u64(),
                _ => false,
            })
            .and_then(|candidate| candidate["containerPort"].as_u64())
    }
}

/// One Dockerfile instruction, continuation lines joined.
struct Instruction {
    keyword: String,
    arguments: String,
}

struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|instruction| instruction.keyword == keyword)
            .map(|instruction| instruction.arguments.as_str())
            .collect()
    }

    fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).pop()
    }

    /// `COPY` instructions from the build context (not `--from=` another stage): sources and
    /// destination.
    fn context_copies(&self) -> Vec<(Vec<String>, String)> {
        self.all("COPY")
            .into_iter()
            .filter(|arguments| !arguments.contains("--from="))
            .map(|arguments| {
                let mut words: Vec<String> =
                    arguments.split_whitespace().filter(|word| !word.starts_with("--")).map(str::to_string).collect();
                let destination = words.pop().expect("COPY names a destination");
                (words, destination)
            })
            .collect()
    }
}

fn dockerfile_stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical_lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                pending.push_str(start);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                logical_lines.push(std::mem::take(&mut pending));
            }
        }
    }
    assert!(pending.is_empty(), "deploy/Dockerfile ends inside a continued line");
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical_lines {
        let (keyword, arguments) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let arguments = arguments.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage { image: words[0].to_string(), name, instructions: Vec::new() });
        } else {
            let stage = stages.last_mut().expect("deploy/Dockerfile starts with FROM");
            stage.instructions.push(Instruction { keyword, arguments });
        }
    }
    stages
}

/// A JSON-array (exec form) instruction argument: `["serve", "--config", "…"]`.
fn exec_form(arguments: &str, what: &str) -> Vec<String> {
    serde_json::from_str(arguments).unwrap_or_else(|error| panic!("{what} should be in exec form ([\"…\"]): {error}"))
}

/// The value after `--config` in a command line.
fn config_flag(words: &[String]) -> Option<&str> {
    words.iter().position(|word| word == "--config").and_then(|index| words.get(index + 1)).map(String::as_str)
}

/// Serialises the tests that change the process environment.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

/// The `${VAR}` names a config refers to.
fn referenced_variables(config_text: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}").expect("a valid pattern");
    pattern.captures_iter(config_text).map(|captures| captures[1].to_string()).collect()
}

/// Parses `config_text` as the file at `path` with exactly `environment` set among the
/// variables the config refers to (the others it refers to are unset), as a process started
/// with that environment would. The old values are put back afterwards.
fn parse_config_with(
    path: &str,
    config_text: &str,
    environment: &BTreeMap<String, String>,
) -> Result<Config, LoadErrors> {
    let _guard = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    let names: BTreeSet<String> =
        referenced_variables(config_text).into_iter().chain(environment.keys().cloned()).collect();
    let saved: Vec<(String, Option<OsString>)> =
        names.iter().map(|name| (name.clone(), std::env::var_os(name))).collect();
    let apply = |name: &str, value: Option<&std::ffi::OsStr>| {
        // SAFETY: changing the environment is unsound only while another thread reads it
        // without std's environment lock, i.e. C code calling getenv. No test in this binary
        // does: they are synchronous Rust (YAML, TOML, CEL and regex parsing, file reads) that
        // read variables only through std::env, which takes the same lock as set_var and
        // remove_var; and the tests that change variables hold ENVIRONMENT.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    };
    for name in &names {
        apply(name, environment.get(name).map(|value| std::ffi::OsStr::new(value.as_str())));
    }
    let parsed = Config::parse(&SourceFile::new(path, config_text));
    for (name, value) in &saved {
        apply(name, value.as_deref());
    }
    parsed
}

fn listen_port(config: &Config) -> u16 {
    let address: std::net::SocketAddr = config.server.listen.get_ref().parse().expect("listen is an address");
    assert!(address.ip().is_unspecified(), "in a container firebell must listen on 0.0.0.0, not {address}");
    address.port()
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let yaml_files: Vec<PathBuf> = deploy_files().into_iter().filter(|path| is_yaml(path)).collect();
    for expected in ["docker-compose.yml", "slack/manifest.yml", "kubernetes/deployment.yaml"] {
        assert!(yaml_files.contains(&PathBuf::from(expected)), "deploy/{expected} is missing: {yaml_files:?}");
    }
    for path in &yaml_files {
        let documents = yaml_documents(path);
        assert!(!documents.is_empty(), "deploy/{} holds no YAML document", path.display());
        if !path.starts_with("kubernetes") {
            continue;
        }
        for document in &documents {
            let what = format!("a document in deploy/{}", path.display());
            assert!(document["apiVersion"].is_string() && document["kind"].is_string(), "{what}: apiVersion and kind");
            assert!(document["metadata"]["name"].is_string(), "{what}: metadata.name");
            assert!(
                document["metadata"]["namespace"].is_null(),
                "{what}: the manifests stay namespace-agnostic (kubectl apply -n NAMESPACE)"
            );
        }
    }
}

#[test]
fn the_deployment_runs_two_replicas_on_postgresql_with_its_config_and_secrets() {
    let manifests = Manifests::load();
    let deployment = manifests.deployment();
    let replicas = deployment["spec"]["replicas"].as_u64().expect("spec.replicas is a number");
    assert!(replicas >= 2, "the Deployment runs {replicas} replica(s); it should run at least 2");
    let selector = string_map(&deployment["spec"]["selector"]["matchLabels"], "spec.selector.matchLabels");
    assert!(is_subset(&selector, &manifests.pod_labels()), "the Deployment's selector does not match its pods");

    // Every Secret key the container reads exists, and the store they share is PostgreSQL.
    let environment = manifests.container_environment();
    let store_url = environment.get("FIREBELL_STORE_URL").expect("the container gets FIREBELL_STORE_URL");
    assert!(store_url.starts_with("postgres://"), "replicas share timers only on PostgreSQL, not {store_url}");
    assert!(environment.contains_key("FIREBELL_API_TOKEN"), "the container gets FIREBELL_API_TOKEN");
    for source in manifests.container()["envFrom"].as_sequence().into_iter().flatten() {
        for (kind, field) in [("Secret", "secretRef"), ("ConfigMap", "configMapRef")] {
            let reference = &source[field];
            if reference.is_null() {
                continue;
            }
            let name = text(&reference["name"], "envFrom name");
            assert!(
                reference["optional"] == true || manifests.find(kind, name).is_some(),
                "envFrom names {kind} {name}, which is neither defined in deploy/kubernetes/ nor optional"
            );
        }
    }

    // The config volume is the ConfigMap, mounted where the image looks for the config.
    let pod = &deployment["spec"]["template"]["spec"];
    let container = manifests.container();
    let mut config_mounted = false;
    for volume in sequence(&pod["volumes"], "volumes") {
        let volume_name = text(&volume["name"], "volume name");
        let mount = sequence(&container["volumeMounts"], "volumeMounts")
            .iter()
            .find(|mount| mount["name"] == volume_name)
            .unwrap_or_else(|| panic!("volume {volume_name} is not mounted"));
        if let Some(name) = volume["configMap"]["name"].as_str() {
            assert!(
                manifests.find("ConfigMap", name).is_some(),
                "no ConfigMap named {name}: {:?}",
                manifests.names("ConfigMap")
            );
            let data = string_map(&manifests.find("ConfigMap", name).expect("found")["data"], "ConfigMap data");
            for key in data.keys() {
                let path = format!("{}/{key}", text(&mount["mountPath"], "mountPath"));
                if path == CONFIG_PATH {
                    config_mounted = true;
                }
            }
        }
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            assert!(
                manifests.find("Secret", name).is_some(),
                "no Secret named {name}: {:?}",
                manifests.names("Secret")
            );
        }
    }
    assert!(config_mounted, "the ConfigMap's firebell.toml is not mounted at {CONFIG_PATH}");
    let arguments: Vec<String> =
        sequence(&container["args"], "args").iter().map(|word| text(word, "an argument").to_string()).collect();
    assert_eq!(arguments.first().map(String::as_str), Some("serve"));
    assert_eq!(config_flag(&arguments), Some(CONFIG_PATH));

    // Small, locked down, and the same user as the image.
    assert_eq!(container["resources"]["requests"]["memory"], "32Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "50m");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    let security = &container["securityContext"];
    assert!(security["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    let runtime = dockerfile_stages().pop().expect("a runtime stage");
    let image_user = runtime.last("USER").expect("the runtime stage sets USER");
    let image_uid = image_user.split(':').next().expect("a uid");
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64().map(|uid| uid.to_string()).as_deref(), Some(image_uid));
}

#[test]
fn the_service_and_the_probes_reach_the_port_firebell_listens_on() {
    let manifests = Manifests::load();
    let container = manifests.container();
    let pod_labels = manifests.pod_labels();
    let config = parse_config_with(CONFIG_PATH, &read("firebell.container.toml"), &BTreeMap::new())
        .unwrap_or_else(|errors| panic!("deploy/firebell.container.toml: {errors}"));
    let listen_port = u64::from(listen_port(&config));
    assert!(
        manifests.container_port(&Value::from(listen_port)).is_some(),
        "the container does not expose {listen_port}"
    );

    let services = manifests.of_kind("Service");
    assert!(!services.is_empty(), "deploy/kubernetes/ should hold a Service");
    for service in services {
        let selector = string_map(&service["spec"]["selector"], "Service selector");
        assert!(
            is_subset(&selector, &pod_labels),
            "the Service's selector {selector:?} misses the pods {pod_labels:?}"
        );
        for port in sequence(&service["spec"]["ports"], "Service ports") {
            let target = if port["targetPort"].is_null() { &port["port"] } else { &port["targetPort"] };
            assert_eq!(manifests.container_port(target), Some(listen_port), "the Service targets {target:?}");
        }
    }

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let request = &container[probe]["httpGet"];
        assert_eq!(request["path"], path, "{probe} should ask {path}");
        assert_eq!(manifests.container_port(&request["port"]), Some(listen_port), "{probe} port");
    }

    for budget in manifests.of_kind("PodDisruptionBudget") {
        let selector = string_map(&budget["spec"]["selector"]["matchLabels"], "PodDisruptionBudget selector");
        assert!(is_subset(&selector, &pod_labels), "the PodDisruptionBudget's selector misses the pods");
        let replicas = manifests.deployment()["spec"]["replicas"].as_u64().expect("replicas");
        if let Some(minimum) = budget["spec"]["minAvailable"].as_u64() {
            assert!(minimum < replicas, "minAvailable {minimum} would block every node drain with {replicas} replicas");
        }
    }
}

#[test]
fn the_configmap_is_the_container_config_and_parses_with_the_pods_environment() {
    let manifests = Manifests::load();
    let config_map = manifests.find("ConfigMap", "firebell-config").expect("a ConfigMap named firebell-config");
    let config_text = text(&config_map["data"]["firebell.toml"], "the ConfigMap's firebell.toml");
    assert_eq!(
        config_text.trim_end(),
        read("firebell.container.toml").trim_end(),
        "deploy/kubernetes/configmap.yaml should carry deploy/firebell.container.toml unchanged"
    );

    let environment = manifests.container_environment();
    let config = parse_config_with(CONFIG_PATH, config_text, &environment)
        .unwrap_or_else(|errors| panic!("the ConfigMap's firebell.toml with the pod's environment: {errors}"));
    assert_eq!(config.store.url.get_ref().expose(), environment["FIREBELL_STORE_URL"]);
    assert!(config.store.url.get_ref().expose().starts_with("postgres://"));
    let api_token = config.server.api_token.as_ref().expect("server.api_token is set");
    assert_eq!(api_token.expose(), environment["FIREBELL_API_TOKEN"]);
    assert!(!api_token.is_empty(), "the example Secret should show where the API token goes");
    // The pods listen beyond loopback: without a login token their web console would stay shut.
    let console_token = config.server.console_token.as_ref().expect("server.console_token is set");
    assert_eq!(console_token.expose(), environment["FIREBELL_CONSOLE_TOKEN"]);
    assert!(!console_token.is_empty(), "the example Secret should show where the console token goes");
}

#[test]
fn the_container_config_parses_with_no_environment_and_loads_the_shipped_runbooks() {
    let config_text = read("firebell.container.toml");
    // Every variable the config reads has a safe default, so the image starts with none set.
    let config = parse_config_with(CONFIG_PATH, &config_text, &BTreeMap::new())
        .unwrap_or_else(|errors| panic!("deploy/firebell.container.toml with an empty environment: {errors}"));
    assert!(config.server.api_token.as_ref().is_none_or(|token| token.is_empty()), "no API token unless one is set");
    let store_url = config.store.url.get_ref().expose().to_string();
    let database = store_url.strip_prefix("sqlite://").expect("without FIREBELL_STORE_URL the store is SQLite");

    let stages = dockerfile_stages();
    let runtime = stages.last().expect("a runtime stage");
    let copies = runtime.context_copies();
    let runbooks_in_image = copies
        .iter()
        .find(|(sources, _)| sources == &["commands"])
        .map(|(_, destination)| PathBuf::from(destination.trim_end_matches('/')))
        .expect("the runtime stage copies commands/ into the image");
    assert_eq!(config.command_dirs(), vec![runbooks_in_image], "[commands] dirs should be where the image keeps them");
    let state_dir = Path::new(database).parent().expect("the SQLite file has a folder");
    assert_eq!(
        runtime.last("WORKDIR").map(Path::new),
        Some(state_dir),
        "the SQLite store lives in the image's WORKDIR"
    );
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|command| command.contains(&format!("-o 10001 -g 10001 -m 0750 {}", state_dir.display()))),
        "the runtime stage should create {} for the firebell user",
        state_dir.display()
    );

    // The runbooks shipped in the image load against the targets this config declares.
    let mut config = config;
    config.commands.dirs = vec![repository().join("commands")];
    let (catalogue, errors) = firebell::app::load_catalogue(&config);
    assert!(
        errors.is_empty(),
        "the shipped runbooks do not load with deploy/firebell.container.toml:\n{}",
        LoadErrors(errors)
    );
    assert!(!catalogue.is_empty(), "no runbooks loaded from commands/");
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_as_a_non_root_user() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "deploy/Dockerfile should be multi-stage");
    let build = &stages[0];
    let runtime = stages.last().expect("a runtime stage");
    assert_eq!(build.image, "rust:1.95-bookworm", "the toolchain link/startup-order.txt was made with");
    assert_eq!(runtime.image, "debian:bookworm-slim");
    let build_name = build.name.as_deref().expect("the build stage is named (FROM … AS build)");
    assert!(build.all("RUN").iter().any(|command| command.contains("cargo build --release --locked")));
    for (sources, _) in stages.iter().flat_map(Stage::context_copies) {
        for source in sources {
            assert!(
                repository().join(&source).exists(),
                "deploy/Dockerfile copies {source}, which the repository lacks"
            );
        }
    }

    let user = runtime.last("USER").expect("the runtime stage sets USER");
    let uid = user.split(':').next().expect("a uid");
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "USER {user}: a numeric, non-root uid (runAsNonRoot checks it)"
    );
    let installs: Vec<&str> = runtime
        .all("RUN")
        .iter()
        .flat_map(|command| command.split("&&"))
        .filter_map(|command| command.trim().strip_prefix("apt-get install"))
        .flat_map(|arguments| arguments.split_whitespace().filter(|word| !word.starts_with('-')))
        .collect();
    assert_eq!(installs, ["ca-certificates"], "the runtime image installs ca-certificates only");

    // The binary lands on PATH, and the default command serves the config the image carries.
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"), "ENTRYPOINT");
    assert_eq!(entrypoint, ["firebell"]);
    let binary = runtime
        .all("COPY")
        .into_iter()
        .find(|arguments| arguments.contains(&format!("--from={build_name}")))
        .and_then(|arguments| arguments.split_whitespace().last())
        .expect("the runtime stage copies the binary from the build stage");
    assert_eq!(binary, "/usr/local/bin/firebell");
    let command = exec_form(runtime.last("CMD").expect("CMD"), "CMD");
    assert_eq!(command.first().map(String::as_str), Some("serve"));
    assert_eq!(config_flag(&command), Some(CONFIG_PATH));
    let copies = runtime.context_copies();
    assert!(
        copies
            .iter()
            .any(|(sources, destination)| sources == &["deploy/firebell.container.toml"] && destination == CONFIG_PATH),
        "the image carries deploy/firebell.container.toml at {CONFIG_PATH}"
    );
    assert!(copies.iter().any(|(sources, _)| sources == &["templates"]), "the image carries templates/");

    let config = parse_config_with(CONFIG_PATH, &read("firebell.container.toml"), &BTreeMap::new())
        .unwrap_or_else(|errors| panic!("deploy/firebell.container.toml: {errors}"));
    let port = listen_port(&config).to_string();
    assert_eq!(runtime.last("EXPOSE"), Some(port.as_str()));
    if let Some(healthcheck) = runtime.last("HEALTHCHECK") {
        assert!(
            healthcheck.contains("/readyz") && healthcheck.contains(&format!("/{port}")),
            "HEALTHCHECK: {healthcheck}"
        );
    }
}

#[test]
fn compose_starts_firebell_after_a_healthy_postgres() {
    let compose = yaml_file("docker-compose.yml");
    let services = &compose["services"];
    let firebell = &services["firebell"];
    let (postgres_name, condition) = firebell["depends_on"]
        .as_mapping()
        .expect("firebell's depends_on is a mapping with conditions")
        .iter()
        .next()
        .map(|(name, dependency)| (text(name, "a service name"), &dependency["condition"]))
        .expect("firebell depends on a service");
    assert_eq!(condition, "service_healthy", "firebell should wait until {postgres_name} is healthy");
    let postgres = &services[postgres_name];
    assert!(text(&postgres["image"], "image").starts_with("postgres:15"), "PostgreSQL 15");
    assert!(
        !sequence(&postgres["healthcheck"]["test"], "postgres healthcheck").is_empty(),
        "postgres has a healthcheck"
    );
    let named_volumes: Vec<&str> =
        compose["volumes"].as_mapping().expect("named volumes").keys().map(|key| text(key, "a volume name")).collect();
    for volume in sequence(&postgres["volumes"], "postgres volumes") {
        let source = text(volume, "a volume").split(':').next().expect("a source");
        assert!(named_volumes.contains(&source), "postgres stores its data in the named volume {source}, undeclared");
    }

    // The store URL names the postgres service, its user and its database.
    let postgres_environment = string_map(&postgres["environment"], "postgres environment");
    let environment = string_map(&firebell["environment"], "firebell environment");
    let store_url = &environment["FIREBELL_STORE_URL"];
    let expected_prefix = format!("postgres://{}:", postgres_environment["POSTGRES_USER"]);
    assert!(store_url.starts_with(&expected_prefix), "{store_url} should start with {expected_prefix}");
    let expected_suffix = format!("@{postgres_name}:5432/{}", postgres_environment["POSTGRES_DB"]);
    assert!(store_url.ends_with(&expected_suffix), "{store_url} should end with {expected_suffix}");
    assert!(environment.contains_key("FIREBELL_API_TOKEN"), "compose passes FIREBELL_API_TOKEN");

    // The image built from deploy/Dockerfile, with deploy/firebell.container.toml mounted where it looks.
    let context = deploy_dir().join(text(&firebell["build"]["context"], "build.context"));
    let dockerfile = context.join(text(&firebell["build"]["dockerfile"], "build.dockerfile"));
    assert_eq!(dockerfile.canonicalize().ok(), deploy_dir().join("Dockerfile").canonicalize().ok());
    let mounts: Vec<&str> =
        sequence(&firebell["volumes"], "firebell volumes").iter().map(|mount| text(mount, "a mount")).collect();
    let config_mount = mounts
        .iter()
        .map(|mount| mount.split(':').collect::<Vec<_>>())
        .find(|parts| parts.get(1) == Some(&CONFIG_PATH))
        .unwrap_or_else(|| panic!("no mount at {CONFIG_PATH}: {mounts:?}"));
    assert!(deploy_dir().join(config_mount[0]).is_file(), "compose mounts {}, which deploy/ lacks", config_mount[0]);
    let ports: Vec<&str> =
        sequence(&firebell["ports"], "firebell ports").iter().map(|port| text(port, "a port")).collect();
    assert!(ports.iter().any(|port| port.ends_with(":8080")), "compose publishes the container's port 8080: {ports:?}");
}

#[test]
fn the_slack_manifest_points_at_firebells_slack_routes() {
    let manifest = yaml_file("slack/manifest.yml");
    let commands = sequence(&manifest["features"]["slash_commands"], "slash_commands");
    let names: Vec<&str> = commands.iter().map(|command| text(&command["command"], "command")).collect();
    for expected in ["/diagnose", "/remediate", "/incident"] {
        assert!(names.contains(&expected), "the manifest declares {expected}: {names:?}");
    }
    for command in commands {
        assert!(text(&command["url"], "url").ends_with("/slack/commands"), "{command:?}");
    }
    let settings = &manifest["settings"];
    assert!(text(&settings["event_subscriptions"]["request_url"], "request_url").ends_with("/slack/events"));
    assert!(text(&settings["interactivity"]["request_url"], "request_url").ends_with("/slack/interactions"));
}

#[test]
fn the_systemd_unit_matches_deploy_readme() {
    let unit = read("systemd/firebell.service");
    let mut service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in unit.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
            section = name.to_string();
        } else if section == "Service" {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {line}"));
            service.entry(key.to_string()).or_default().push(value.to_string());
        }
    }
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] should set {key} once, found {other:?}"),
        }
    };

    let exec_start: Vec<String> = one("ExecStart").split_whitespace().map(str::to_string).collect();
    let binary = &exec_start[0];
    assert_eq!(binary, "/usr/local/bin/firebell");
    assert_eq!(exec_start.get(1).map(String::as_str), Some("serve"));
    let config_path = config_flag(&exec_start).expect("ExecStart passes --config");
    assert_eq!(config_path, CONFIG_PATH, "the same config path as the image");
    let environment_file = one("EnvironmentFile");
    let user = one("User");
    assert_ne!(user, "root");
    assert_eq!(one("Restart"), "on-failure");
    for (key, value) in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")] {
        assert_eq!(one(key), value, "{key}");
    }
    let store_url = one("Environment").strip_prefix("FIREBELL_STORE_URL=").expect("Environment=FIREBELL_STORE_URL=…");
    let database = Path::new(store_url.strip_prefix("sqlite://").expect("the unit's default store is SQLite"));
    let state_dir = database.parent().expect("a folder").to_string_lossy().to_string();
    assert!(
        one("ReadWritePaths").split_whitespace().any(|path| path == state_dir),
        "ProtectSystem=strict leaves only ReadWritePaths writable; the SQLite store is in {state_dir}"
    );

    let readme = read("README.md");
    for (what, expected) in [
        ("the binary's path", binary.as_str()),
        ("the config's path", config_path),
        ("the environment file", environment_file),
        ("the state folder", state_dir.as_str()),
        ("the unit's file name", "firebell.service"),
    ] {
        assert!(readme.contains(expected), "deploy/README.md should name {what}, {expected}");
    }
    assert!(
        readme.lines().any(|line| line.contains("useradd") && line.split_whitespace().any(|word| word == user)),
        "deploy/README.md should create the service user {user} with useradd"
    );
}

#[test]
fn deploy_readme_explains_every_piece() {
    let readme = read("README.md");
    for path in deploy_files() {
        let name = path.file_name().expect("a file name").to_string_lossy().to_string();
        if name == "README.md" {
            continue;
        }
        assert!(readme.contains(&name), "deploy/README.md does not mention deploy/{}", path.display());
    }
}

/// SPEC §9, secure by default: the kit listens beyond loopback, so the API token must reach the
/// pods from the Secret (never optional), compose must refuse to start without one, and the
/// container config must read it, along with the optional metrics token.
#[test]
fn the_kit_sets_the_api_token_because_it_listens_beyond_loopback() {
    let config_text = read("firebell.container.toml");
    let config = parse_config_with(CONFIG_PATH, &config_text, &BTreeMap::new()).expect("the container config parses");
    let listen: std::net::SocketAddr = config.server.listen.get_ref().parse().expect("listen is an address");
    assert!(!listen.ip().is_loopback(), "the container listens beyond loopback");
    assert!(config_text.contains("api_token = \"${FIREBELL_API_TOKEN"), "the config reads FIREBELL_API_TOKEN");
    assert!(
        config_text.contains("metrics_token = \"${FIREBELL_METRICS_TOKEN"),
        "the config reads FIREBELL_METRICS_TOKEN"
    );

    let manifests = Manifests::load();
    let api_token = manifests.container()["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|variable| variable["name"] == "FIREBELL_API_TOKEN")
        .expect("the container gets FIREBELL_API_TOKEN");
    let reference = &api_token["valueFrom"]["secretKeyRef"];
    assert_eq!(text(&reference["key"], "secretKeyRef.key"), "FIREBELL_API_TOKEN", "it comes from the Secret");
    assert_ne!(reference["optional"].as_bool(), Some(true), "a pod without the API token must not start");
    let secret = manifests.secret(text(&reference["name"], "secretKeyRef.name")).expect("the Secret");
    assert!(secret["FIREBELL_API_TOKEN"].contains("CHANGE-ME"), "the example Secret holds a placeholder, not a token");
    assert!(read("README.md").contains("FIREBELL_API_TOKEN=\"$(openssl rand -hex 32)\""), "the README generates it");

    let compose = yaml_file("docker-compose.yml");
    let environment = string_map(&compose["services"]["firebell"]["environment"], "firebell environment");
    assert!(environment["FIREBELL_API_TOKEN"].contains(":?"), "compose refuses to start without FIREBELL_API_TOKEN");
}
