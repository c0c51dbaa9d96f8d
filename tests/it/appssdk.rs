//! Zoom's Apps SDK for the browser tests: the npm package `@zoom/appssdk`
//! at a pinned version, installed on first use into `target/appssdk` (like
//! the RTMS conformance test's venv; nothing of it is committed) and handed
//! to the simulator, which serves it to the page in place of its stand-in.

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

use super::sim_conformance::run;

pub const APPS_SDK_VERSION: &str = "0.16.41";

/// `dist/sdk.module.js` (the CommonJS build) of `@zoom/appssdk@0.16.41`,
/// installed with npm on first use.
pub async fn commonjs_build() -> &'static Path {
    static BUILD: OnceCell<PathBuf> = OnceCell::const_new();
    BUILD
        .get_or_init(|| async {
            let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/appssdk");
            let package = prefix.join("node_modules/@zoom/appssdk");
            if installed_version(&package).as_deref() != Some(APPS_SDK_VERSION) {
                std::fs::create_dir_all(&prefix).expect("target/appssdk");
                run(
                    tokio::process::Command::new("npm")
                        .args([
                            "install",
                            "--no-save",
                            "--no-package-lock",
                            "--no-audit",
                            "--no-fund",
                            "--ignore-scripts",
                            "--loglevel=error",
                            "--prefix",
                        ])
                        .arg(&prefix)
                        .arg(format!("@zoom/appssdk@{APPS_SDK_VERSION}")),
                    "npm install @zoom/appssdk",
                )
                .await
                .expect("installing Zoom's Apps SDK from npm (node and npm are required)");
                assert_eq!(
                    installed_version(&package).as_deref(),
                    Some(APPS_SDK_VERSION),
                    "npm installed another version of @zoom/appssdk"
                );
            }
            package.join("dist/sdk.module.js")
        })
        .await
}

fn installed_version(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}
