//! The deployment files (`Dockerfile`, `docker-compose.yml`, `.env.example`)
//! agree with the app: every variable they set is one the app reads, the
//! port and health check are the app's defaults, and the image's health
//! check works against a running app. No container registry is reachable
//! here, so the image itself is not built.

use std::collections::BTreeSet;
use std::path::Path;

use clap::CommandFactory as _;
use tokio::process::Command;
use yaml_rust2::{Yaml, YamlLoader};
use zcc_rtms::config::{Cli, DEFAULT_PORT};

use crate::support::{TestApp, WAIT};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every environment variable any subcommand reads, from the command line
/// definition itself, and the log filter's.
fn known_env() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&Cli::command(), &mut out);
    out.insert(tracing_subscriber::EnvFilter::DEFAULT_ENV.to_owned());
    out
}

/// Every `NAME=` in `.env.example`, set or commented out (`# NAME=...`).
fn env_example_names() -> Vec<String> {
    read(".env.example")
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker-compose.yml"))
        .expect("docker-compose.yml is YAML")
        .pop()
        .expect("one document")
}

/// The app service's `environment` names (a map or a list of `NAME=value`).
fn compose_env_names(app: &Yaml) -> Vec<String> {
    match &app["environment"] {
        Yaml::Hash(map) => map
            .keys()
            .map(|k| k.as_str().expect("name").to_owned())
            .collect(),
        Yaml::Array(list) => list
            .iter()
            .map(|e| {
                let e = e.as_str().expect("NAME=value");
                e.split_once('=').map_or(e, |(n, _)| n).to_owned()
            })
            .collect(),
        other => panic!("app.environment is neither a map nor a list: {other:?}"),
    }
}

/// `KEY value` instructions of the Dockerfile (continuation lines joined).
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut joined = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
        } else {
            joined.push_str(line);
            joined.push('\n');
        }
    }
    joined
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_ascii_uppercase(), v.trim().to_owned()))
        .collect()
}

#[test]
fn every_env_name_in_the_compose_file_and_env_example_is_one_the_app_reads() {
    let known = known_env();
    assert!(known.contains("BACKEND_PORT") && known.contains("REDIS_URL"));

    let example = env_example_names();
    for name in &example {
        assert!(
            known.contains(name),
            ".env.example sets {name}, which the app never reads"
        );
    }
    // And the other way: .env.example shows every variable of `serve`.
    let serve = Cli::command();
    let serve = serve.find_subcommand("serve").expect("serve");
    for arg in serve.get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(
                example.iter().any(|n| *n == env),
                ".env.example does not mention {env}"
            );
        }
    }

    let compose = compose();
    let app = &compose["services"]["app"];
    let names = compose_env_names(app);
    assert!(
        names.iter().any(|n| n == "REDIS_URL"),
        "compose wires Redis"
    );
    for name in &names {
        assert!(
            known.contains(name),
            "docker-compose.yml sets {name}, which the app never reads"
        );
    }
    assert_eq!(
        app["env_file"][0]["path"].as_str(),
        Some(".env"),
        "compose reads the operator's .env"
    );
}

#[test]
fn the_image_and_compose_use_the_default_port_health_path_and_a_data_volume() {
    let ins = dockerfile_instructions();
    let all = |key: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert!(all("FROM").len() >= 2, "multi-stage build");
    assert_eq!(all("EXPOSE"), [DEFAULT_PORT.to_string().as_str()]);
    let env = all("ENV").join(" ");
    assert!(
        env.contains(&format!("BACKEND_PORT={DEFAULT_PORT}")),
        "{env}"
    );
    assert!(env.contains("DATA_DIR=/data"), "{env}");
    assert_eq!(all("VOLUME"), ["[\"/data\"]"]);
    let user = all("USER");
    let user = user.last().expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as non-root: {user}"
    );
    let health = all("HEALTHCHECK");
    let health = health.first().expect("a HEALTHCHECK");
    assert!(
        health.contains("CMD [\"/usr/local/bin/zcc-rtms\", \"healthcheck\"]"),
        "{health}"
    );
    assert_eq!(zcc_rtms::http::HEALTH_PATH, "/health");

    let compose = compose();
    let app = &compose["services"]["app"];
    let ports: Vec<&str> = app["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .map(|p| p.as_str().expect("\"host:container\""))
        .collect();
    assert_eq!(ports, [format!("{DEFAULT_PORT}:{DEFAULT_PORT}")]);
    let test: Vec<&str> = app["healthcheck"]["test"]
        .as_vec()
        .expect("healthcheck.test")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(test, ["CMD", "/usr/local/bin/zcc-rtms", "healthcheck"]);
    assert_eq!(app["volumes"][0].as_str(), Some("app-data:/data"));
    let redis: Vec<&str> = compose["services"]["redis"]["command"]
        .as_vec()
        .expect("redis command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        redis.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "Redis with AOF on: {redis:?}"
    );
}

/// The workspace members other than the app itself (`members = [...]` of the
/// root manifest).
fn other_workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members = ["))
        .expect("a [workspace] members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != ".")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_image_build_copies_every_workspace_member() {
    let members = other_workspace_members();
    assert!(members.iter().any(|m| m == "sim"), "{members:?}");
    let copies: Vec<String> = dockerfile_instructions()
        .into_iter()
        .filter(|(k, _)| k == "COPY")
        .map(|(_, v)| v)
        .collect();
    let runs = read("Dockerfile");
    let ignore = read(".dockerignore");
    for m in &members {
        for (what, dest) in [
            ("Cargo.toml", format!("./{m}/")),
            ("src", format!("./{m}/src")),
        ] {
            let want = format!("{m}/{what} {dest}");
            assert!(
                copies.contains(&want),
                "Dockerfile lacks COPY {want}: {copies:?}"
            );
        }
        // The dependency layer builds with a stand-in for each member's lib.
        assert!(
            runs.contains(&format!("{m}/src/lib.rs")),
            "no stand-in for {m}"
        );
        for keep in [format!("!{m}/Cargo.toml"), format!("!{m}/src/")] {
            assert!(
                ignore.lines().any(|l| l.trim() == keep),
                ".dockerignore does not let {keep} through"
            );
        }
    }
}

async fn healthcheck(port: u16) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zcc-rtms"));
    cmd.arg("healthcheck")
        .env_clear()
        .env("BACKEND_PORT", port.to_string())
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the health check exits in time")
        .expect("run the binary")
}

#[tokio::test]
async fn the_health_check_passes_on_a_running_app_and_fails_on_a_closed_port() {
    let app = TestApp::spawn().await;
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let out = healthcheck(port).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("healthy") && stdout.contains("/health"),
        "{stdout}"
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = healthcheck(closed).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no answer"), "{stderr}");
    app.shutdown().await;
}
