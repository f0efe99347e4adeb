//! The deployment artifacts (Dockerfile, deploy/compose.yaml, deploy/k8s, deploy/systemd) name only
//! what the binary has: every subcommand and flag they run is in `ranq <cmd> --help`, every
//! `RANQ_*`, `DATABASE_URL` and `REDIS_URL` they set is a variable ranq reads, the environment each
//! role gets is a configuration ranq accepts, and every grace period outlasts `shutdown_timeout`.
//! A renamed flag or setting fails here instead of in a rollout. (scripts/check-deploy validates
//! the same files against their formats' schemas.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

/// Variables read by clap itself rather than derived from a settings key.
const CLAP_VARS: [&str; 6] =
    ["DATABASE_URL", "REDIS_URL", "RANQ_NAMESPACE", "RANQ_LOG_FORMAT", "RANQ_CONFIG", "RANQ_METRICS_LISTEN"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

fn yaml_docs(origin: &str, text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{origin}: not YAML: {e}"))
}

/// `ranq` with none of the caller's configuration: no inherited variables, and a working directory
/// without a config/default.toml.
fn ranq() -> Command {
    let mut cmd = Command::new(ranq_tests::ranq_bin());
    cmd.env_clear().env("NO_COLOR", "1").current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// One level of the command tree, as its `--help` shows it.
#[derive(Debug, Default)]
struct Help {
    subcommands: BTreeSet<String>,
    flags: BTreeSet<String>,
}

impl Help {
    fn parse(text: &str) -> Self {
        let mut help = Self::default();
        let mut in_commands = false;
        for line in text.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_commands = line == "Commands:";
                continue;
            }
            let trimmed = line.trim_start();
            // A command line is indented by two spaces; its wrapped description by more.
            if in_commands && line.starts_with("  ") && !line.starts_with("   ") {
                if let Some(name) = trimmed.split_whitespace().next().filter(|n| *n != "help") {
                    help.subcommands.insert(name.to_owned());
                }
            }
            // An option line starts with its switches: "-h, --help", "--config <PATH>".
            if trimmed.starts_with('-') {
                for word in trimmed.split(|c: char| c.is_whitespace() || c == ',' || c == '=') {
                    if word.len() > 2 && word.starts_with("--") {
                        help.flags.insert(word.to_owned());
                    }
                }
            }
        }
        help
    }
}

/// What the binary offers: its command tree and every environment variable it reads.
#[derive(Debug)]
struct Binary {
    commands: BTreeMap<Vec<String>, Help>,
    env: BTreeSet<String>,
    shutdown_timeout: Duration,
}

/// The binary's surface, read once for the whole module.
fn binary() -> &'static Binary {
    static BINARY: OnceLock<Binary> = OnceLock::new();
    BINARY.get_or_init(Binary::load)
}

impl Binary {
    fn load() -> Self {
        let mut commands = BTreeMap::new();
        let mut todo = vec![Vec::<String>::new()];
        while let Some(path) = todo.pop() {
            let out = ranq().args(&path).arg("--help").output().expect("ranq runs");
            assert!(out.status.success(), "ranq {path:?} --help: {}", String::from_utf8_lossy(&out.stderr));
            let help = Help::parse(&String::from_utf8_lossy(&out.stdout));
            for sub in &help.subcommands {
                todo.push(path.iter().cloned().chain([sub.clone()]).collect());
            }
            commands.insert(path, help);
        }
        assert!(commands.len() > 10, "the help parser found too few commands: {commands:?}");

        let out = ranq().args(["config", "show", "--json"]).output().expect("ranq runs");
        assert!(out.status.success(), "config show: {}", String::from_utf8_lossy(&out.stderr));
        let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config show --json is JSON");
        let mut env: BTreeSet<String> = CLAP_VARS.iter().map(|v| (*v).to_owned()).collect();
        let mut shutdown_timeout = None;
        for setting in settings.as_array().expect("an array of settings") {
            let key = setting["key"].as_str().expect("each setting has a key");
            // `section.key` is RANQ_SECTION__KEY; a top-level `key` is RANQ_KEY.
            env.insert(format!("RANQ_{}", key.replace('.', "__").to_ascii_uppercase()));
            if key == "shutdown_timeout" {
                let value = setting["value"].as_str().expect("shutdown_timeout is a duration");
                shutdown_timeout = Some(humantime::parse_duration(value).expect("a valid duration"));
            }
        }
        assert!(env.contains("RANQ_WORKER__BATCH_SIZE") && env.contains("RANQ_READ__MAX_AGE"), "{env:?}");
        Self { commands, env, shutdown_timeout: shutdown_timeout.expect("config show lists shutdown_timeout") }
    }

    /// Checks `ranq ARGS...`: a complete subcommand path, then only flags that subcommand takes.
    fn check_args(&self, origin: &str, args: &[String]) -> Result<(), String> {
        let mut path = Vec::new();
        let mut rest = args.iter().peekable();
        while let Some(next) = rest.peek() {
            if !self.commands[&path].subcommands.contains(next.as_str()) {
                break;
            }
            path.push((*next).clone());
            rest.next();
        }
        let help = &self.commands[&path];
        if path.is_empty() || !help.subcommands.is_empty() {
            let after = if path.is_empty() { "ranq".to_owned() } else { format!("ranq {}", path.join(" ")) };
            return Err(format!(
                "{origin}: `ranq {}`: no subcommand of {after} (one of {:?})",
                args.join(" "),
                help.subcommands
            ));
        }
        for arg in rest.filter(|a| a.starts_with("--")) {
            let flag = arg.split('=').next().unwrap_or(arg);
            if !help.flags.contains(flag) {
                return Err(format!("{origin}: `ranq {}` takes no {flag} (it takes {:?})", path.join(" "), help.flags));
            }
        }
        Ok(())
    }

    fn check_env(&self, origin: &str, name: &str) -> Result<(), String> {
        if self.env.contains(name) { Ok(()) } else { Err(format!("{origin}: ranq reads no variable {name}")) }
    }
}

/// What one artifact runs and sets, and what is wrong with it.
#[derive(Debug, Default)]
struct Findings {
    problems: Vec<String>,
    /// Subcommand paths run, e.g. ["worker"], ["config", "show"].
    runs: BTreeSet<String>,
    /// Each role's environment (literal values; secrets resolved from the example Secret).
    environments: Vec<(String, BTreeMap<String, String>)>,
    /// Grace periods before a SIGKILL: (where, how long).
    grace: Vec<(String, Duration)>,
}

impl Findings {
    fn args(&mut self, binary: &Binary, origin: &str, args: &[String]) {
        match binary.check_args(origin, args) {
            Ok(()) => {
                let path: Vec<&str> =
                    args.iter().take_while(|a| !a.starts_with('-')).map(String::as_str).take(2).collect();
                self.runs.insert(path.join(" "));
            }
            Err(problem) => self.problems.push(problem),
        }
    }

    fn environment(&mut self, binary: &Binary, origin: &str, vars: BTreeMap<String, String>) {
        for name in vars.keys() {
            if let Err(problem) = binary.check_env(origin, name) {
                self.problems.push(problem);
            }
        }
        self.environments.push((origin.to_owned(), vars));
    }

    /// Every `RANQ_*` word anywhere in `text`, comments included, must be a variable ranq reads.
    fn sweep(&mut self, binary: &Binary, origin: &str, text: &str) {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("RANQ_") && word.len() > "RANQ_".len() && !word.ends_with('_') {
                if let Err(problem) = binary.check_env(&format!("{origin} (text)"), word) {
                    self.problems.push(problem);
                }
            }
        }
    }
}

fn strings(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        Yaml::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `map[key]`, looking through YAML merge keys (`<<: *anchor`) as Compose does.
fn field<'a>(map: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let hash = map.as_hash()?;
    if let Some(value) = hash.get(&Yaml::String(key.to_owned())) {
        return Some(value);
    }
    match hash.get(&Yaml::String("<<".to_owned()))? {
        Yaml::Array(bases) => bases.iter().find_map(|b| field(b, key)),
        base => field(base, key),
    }
}

fn duration(origin: &str, raw: &str) -> Duration {
    let raw = raw.trim();
    let parsed = if raw.chars().all(|c| c.is_ascii_digit()) {
        raw.parse().map(Duration::from_secs).ok()
    } else {
        humantime::parse_duration(raw).ok()
    };
    parsed.unwrap_or_else(|| panic!("{origin}: {raw:?} is not a duration"))
}

fn check_compose(binary: &Binary, text: &str) -> Findings {
    let mut found = Findings::default();
    found.sweep(binary, "deploy/compose.yaml", text);
    let docs = yaml_docs("deploy/compose.yaml", text);
    let services = docs[0]["services"].as_hash().expect("compose.yaml has services");
    for (name, service) in services {
        let name = name.as_str().expect("service names are strings");
        let origin = format!("deploy/compose.yaml service {name}");
        let image = field(service, "image").and_then(Yaml::as_str).unwrap_or_default();
        if !image.starts_with("ranq") {
            continue; // redis, postgres: their images' own variables
        }
        let command = field(service, "command").map(strings).unwrap_or_default();
        found.args(binary, &origin, &command);
        let mut vars = BTreeMap::new();
        match field(service, "environment") {
            Some(Yaml::Hash(map)) => {
                for (key, value) in map {
                    vars.insert(key.as_str().unwrap_or_default().to_owned(), scalar(value).unwrap_or_default());
                }
            }
            Some(Yaml::Array(items)) => {
                for item in items.iter().filter_map(Yaml::as_str) {
                    let (key, value) = item.split_once('=').unwrap_or((item, ""));
                    vars.insert(key.to_owned(), value.to_owned());
                }
            }
            _ => {}
        }
        found.environment(binary, &origin, vars);
        let long_running = !matches!(command.first().map(String::as_str), Some("migrate" | "seed"));
        if long_running {
            let grace = field(service, "stop_grace_period").and_then(Yaml::as_str).unwrap_or("10s");
            found.grace.push((origin.clone(), duration(&origin, grace)));
        }
    }
    found
}

fn check_kubernetes(binary: &Binary, files: &[(String, String)]) -> Findings {
    let mut found = Findings::default();
    let mut secrets: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut config_maps = BTreeSet::new();
    let mut docs = Vec::new();
    for (path, text) in files {
        found.sweep(binary, path, text);
        for doc in yaml_docs(path, text) {
            match doc["kind"].as_str() {
                Some("Secret") => {
                    let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                    for (key, value) in doc["stringData"].as_hash().into_iter().flatten() {
                        let key = key.as_str().unwrap_or_default().to_owned();
                        secrets.insert((name.clone(), key), value.as_str().unwrap_or_default().to_owned());
                    }
                }
                Some("ConfigMap") => {
                    config_maps.insert(doc["metadata"]["name"].as_str().unwrap_or_default().to_owned());
                }
                _ => {}
            }
            docs.push((path.clone(), doc));
        }
    }
    for (path, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = &doc["spec"]["template"]["spec"];
        if pod.is_badvalue() {
            continue;
        }
        let origin = format!("{path} {kind} {}", doc["metadata"]["name"].as_str().unwrap_or_default());
        if kind == "Deployment" {
            let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            found.grace.push((origin.clone(), Duration::from_secs(u64::try_from(grace).unwrap_or(0))));
        }
        for volume in pod["volumes"].as_vec().into_iter().flatten() {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                if !config_maps.contains(name) {
                    found.problems.push(format!("{origin}: no ConfigMap {name} in deploy/k8s"));
                }
            }
        }
        let containers = pod["containers"].as_vec().into_iter().chain(pod["initContainers"].as_vec()).flatten();
        for container in containers {
            let origin = format!("{origin} container {}", container["name"].as_str().unwrap_or_default());
            // The image's ENTRYPOINT is ranq; a container that sets `command` must run ranq too.
            let command = strings(&container["command"]);
            if !command.is_empty() && command != ["ranq"] {
                found.problems.push(format!("{origin}: command {command:?} is not the ranq entrypoint"));
            }
            found.args(binary, &origin, &strings(&container["args"]));
            let mut vars = BTreeMap::new();
            for var in container["env"].as_vec().into_iter().flatten() {
                let name = var["name"].as_str().unwrap_or_default().to_owned();
                let reference = &var["valueFrom"]["secretKeyRef"];
                let value = if reference.is_badvalue() {
                    scalar(&var["value"]).unwrap_or_default()
                } else {
                    let secret = reference["name"].as_str().unwrap_or_default().to_owned();
                    let key = reference["key"].as_str().unwrap_or_default().to_owned();
                    secrets.get(&(secret.clone(), key.clone())).cloned().unwrap_or_else(|| {
                        found
                            .problems
                            .push(format!("{origin}: {name} refers to {secret}/{key}, not in the example Secret"));
                        String::new()
                    })
                };
                vars.insert(name, value);
            }
            found.environment(binary, &origin, vars);
        }
    }
    found
}

/// `Key=Value` lines of a unit's sections, in order.
fn unit_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn check_systemd(binary: &Binary, units: &[(String, String)], env_example: &str) -> Findings {
    let mut found = Findings::default();
    found.sweep(binary, "deploy/systemd/ranq.env.example", env_example);
    // systemd strips the quotes around a value in an environment file.
    let example: BTreeMap<String, String> =
        unit_lines(env_example).into_iter().map(|(k, v)| (k, v.trim_matches('"').to_owned())).collect();
    found.environment(binary, "deploy/systemd/ranq.env.example", example.clone());
    for (path, text) in units {
        found.sweep(binary, path, text);
        let mut vars = example.clone();
        let mut long_running = true;
        for (key, value) in unit_lines(text) {
            match key.as_str() {
                "ExecStart" => {
                    // A template's instance name (%i) is a metrics port.
                    let words: Vec<String> =
                        value.replace("%i", "9111").split_whitespace().map(str::to_owned).collect();
                    if !words.first().is_some_and(|w| w.ends_with("/ranq")) {
                        found.problems.push(format!("{path}: ExecStart does not run ranq: {value}"));
                        continue;
                    }
                    found.args(binary, path, &words[1..]);
                }
                "Environment" => {
                    let (name, value) = value.trim_matches('"').split_once('=').unwrap_or((&value, ""));
                    vars.insert(name.to_owned(), value.to_owned());
                }
                "EnvironmentFile" if value.trim_start_matches('-') != "/etc/ranq/ranq.env" => {
                    found.problems.push(format!("{path}: EnvironmentFile {value} is not /etc/ranq/ranq.env"));
                }
                "Type" if value == "oneshot" => long_running = false,
                "TimeoutStopSec" if long_running => found.grace.push((path.clone(), duration(path, &value))),
                _ => {}
            }
        }
        found.environment(binary, path, vars);
    }
    found
}

fn check_dockerfile(binary: &Binary, text: &str) -> Findings {
    let mut found = Findings::default();
    found.sweep(binary, "Dockerfile", text);
    let joined = text.replace("\\\n", " ");
    let mut vars = BTreeMap::new();
    let mut entrypoint = Vec::new();
    let mut cmd = Vec::new();
    let json_words = |rest: &str| -> Vec<String> {
        serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("Dockerfile: not an exec-form list: {rest} ({e})"))
    };
    for line in joined.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                vars.insert(name.to_owned(), value.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = json_words(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            cmd = json_words(rest);
        }
    }
    if entrypoint != ["ranq"] {
        found.problems.push(format!("Dockerfile: ENTRYPOINT is {entrypoint:?}, not [\"ranq\"]"));
    }
    found.args(binary, "Dockerfile CMD", &cmd);
    found.environment(binary, "Dockerfile ENV", vars);
    found
}

fn k8s_files() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| (relative(p), std::fs::read_to_string(p).expect("readable"))).collect()
}

fn unit_files() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/systemd"))
        .expect("deploy/systemd exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    paths.sort();
    paths.iter().map(|p| (relative(p), std::fs::read_to_string(p).expect("readable"))).collect()
}

fn relative(path: &Path) -> String {
    let root = root().canonicalize().expect("the repository exists");
    let path = path.canonicalize().expect("the file exists");
    path.strip_prefix(&root).unwrap_or(&path).display().to_string()
}

fn all_findings(binary: &Binary) -> Vec<(&'static str, Findings)> {
    vec![
        ("compose", check_compose(binary, &read("deploy/compose.yaml"))),
        ("kubernetes", check_kubernetes(binary, &k8s_files())),
        ("systemd", check_systemd(binary, &unit_files(), &read("deploy/systemd/ranq.env.example"))),
        ("dockerfile", check_dockerfile(binary, &read("Dockerfile"))),
    ]
}

#[test]
fn every_subcommand_flag_and_variable_in_the_deployment_files_exists_in_the_binary() {
    let binary = binary();
    let findings = all_findings(binary);
    let problems: Vec<&String> = findings.iter().flat_map(|(_, f)| &f.problems).collect();
    assert!(problems.is_empty(), "the deployment files name what ranq does not have:\n{problems:#?}");

    // The checks saw what they are meant to see: every role in every fleet, and the variables.
    for (artifact, found) in &findings[..3] {
        for role in ["migrate", "producer", "worker", "serve"] {
            assert!(found.runs.contains(role), "{artifact} runs no `ranq {role}`: {:?}", found.runs);
        }
    }
    let set: BTreeSet<&str> = findings
        .iter()
        .flat_map(|(_, f)| &f.environments)
        .flat_map(|(_, vars)| vars.keys())
        .map(String::as_str)
        .collect();
    for var in CLAP_VARS {
        assert!(set.contains(var), "no deployment file sets {var}: {set:?}");
    }
}

#[test]
fn a_misspelled_subcommand_flag_or_variable_fails_the_check() {
    let binary = binary();
    assert!(binary.check_args("t", &["wokrer".into()]).is_err());
    assert!(binary.check_args("t", &["config".into()]).is_err(), "config needs its subcommand");
    assert!(binary.check_args("t", &["config".into(), "show".into(), "--json".into()]).is_ok());
    assert!(binary.check_args("t", &["worker".into(), "--batch-sise".into(), "3".into()]).is_err());
    assert!(binary.check_args("t", &["serve".into(), "--metrics-listen=0.0.0.0:1".into()]).is_err());
    assert!(binary.check_env("t", "RANQ_WORKER__CONCURENCY").is_err());
    assert!(binary.check_env("t", "DATABSE_URL").is_err());
    assert!(binary.check_env("t", "RANQ_WORKER__CONCURRENCY").is_ok());

    // The same typos, planted in the real files, are caught where they stand.
    let compose = read("deploy/compose.yaml");
    let planted = [
        (check_compose(binary, &compose.replacen("RANQ_NAMESPACE:", "RANQ_NAMESPCE:", 1)), "RANQ_NAMESPCE"),
        (check_compose(binary, &compose.replacen("REDIS_URL:", "REDIS_URI:", 1)), "REDIS_URI"),
        (check_compose(binary, &compose.replacen("[\"worker\"]", "[\"wroker\"]", 1)), "wroker"),
        (
            check_dockerfile(binary, &read("Dockerfile").replacen("RANQ_LOG_FORMAT", "RANQ_LOGFORMAT", 1)),
            "RANQ_LOGFORMAT",
        ),
        (
            check_kubernetes(
                binary,
                &k8s_files()
                    .into_iter()
                    .map(|(p, t)| (p, t.replace("[\"serve\", \"--listen\"", "[\"serve\", \"--listn\"")))
                    .collect::<Vec<_>>(),
            ),
            "--listn",
        ),
        (
            check_systemd(
                binary,
                &unit_files()
                    .into_iter()
                    .map(|(p, t)| (p, t.replace("--metrics-listen", "--metrics-lisen")))
                    .collect::<Vec<_>>(),
                &read("deploy/systemd/ranq.env.example"),
            ),
            "--metrics-lisen",
        ),
        (
            check_systemd(
                binary,
                &unit_files(),
                &read("deploy/systemd/ranq.env.example").replace("# RANQ_READ__STALE_AFTER", "# RANQ_READ__STALE_AFTR"),
            ),
            "RANQ_READ__STALE_AFTR",
        ),
    ];
    for (found, typo) in planted {
        assert!(found.problems.iter().any(|p| p.contains(typo)), "{typo} went unnoticed: {:?}", found.problems);
    }
}

#[test]
fn the_environment_each_role_gets_is_a_configuration_ranq_accepts() {
    let binary = binary();
    let config = root().join("config/default.toml");
    let mut checked = 0;
    for (_, found) in all_findings(binary) {
        for (origin, vars) in &found.environments {
            let mut cmd = ranq();
            for (name, value) in vars {
                // The file the deployments mount or install at /etc/ranq is config/default.toml.
                let value = if name == "RANQ_CONFIG" { config.display().to_string() } else { value.clone() };
                cmd.env(name, value);
            }
            let out = cmd.args(["config", "show", "--json"]).output().expect("ranq runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{origin}: ranq rejects this environment: {stderr}");
            let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            for setting in settings.as_array().expect("an array") {
                let key = setting["key"].as_str().unwrap_or_default();
                let var = format!("RANQ_{}", key.replace('.', "__").to_ascii_uppercase());
                if vars.contains_key(&var) && !CLAP_VARS.contains(&var.as_str()) {
                    assert_eq!(setting["source"], "env", "{origin}: {var} did not set {key}: {setting}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} environments checked");
}

#[test]
fn every_grace_period_outlasts_shutdown_timeout() {
    let binary = binary();
    let mut seen = 0;
    for (artifact, found) in all_findings(binary) {
        for (origin, grace) in &found.grace {
            assert!(
                *grace > binary.shutdown_timeout,
                "{artifact}: {origin} kills after {grace:?}, before a drain of up to {:?} can finish",
                binary.shutdown_timeout
            );
            seen += 1;
        }
    }
    assert!(seen >= 9, "only {seen} grace periods found");
}

#[test]
fn the_kubernetes_config_map_is_config_default_toml() {
    let text = read("deploy/k8s/configmap.yaml");
    let docs = yaml_docs("deploy/k8s/configmap.yaml", &text);
    let embedded = docs[0]["data"]["ranq.toml"].as_str().expect("the ConfigMap holds ranq.toml");
    assert!(
        embedded == read("config/default.toml"),
        "deploy/k8s/configmap.yaml's ranq.toml differs from config/default.toml: copy the file into it again \
         (indented by four spaces under `ranq.toml: |`)"
    );
}
