//! `edgectl check FILE` on configurations other than envoy/edge.json: a local-only one (no
//! "istio" section) passes, and errors name FILE.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// envoy/edge.json changed by `edit`, written to a file of its own; edgectl's output.
fn check(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> (bool, String, PathBuf) {
    let text = std::fs::read_to_string(repo().join("envoy/edge.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    let file =
        std::env::temp_dir().join(format!("edgectl-check-{}-{name}.json", std::process::id()));
    std::fs::write(&file, config.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edgectl"))
        .current_dir(repo())
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    (output.status.success(), said, file)
}

#[test]
fn a_configuration_for_a_local_envoy_alone_needs_no_istio_section() {
    let (ok, said, file) = check("local", |config| {
        let object = config.as_object_mut().unwrap();
        object.remove("istio");
        object.remove("authorization");
    });
    assert!(ok, "{said}");
    assert_eq!(said.trim(), format!("{}: ok", file.display()));
}

#[test]
fn errors_name_the_file_checked() {
    // Authorization policies are rendered for the gateway the "istio" section names.
    let (ok, said, file) = check("no-gateway", |config| {
        config.as_object_mut().unwrap().remove("istio");
    });
    assert!(!ok, "{said}");
    assert!(said.contains(&format!("{}: ", file.display())), "{said}");
    assert!(!said.contains("envoy/edge.json"), "{said}");
}

#[test]
fn reflection_is_answered_by_one_public_service() {
    let (ok, said, _) = check("reflection-internal", |config| {
        config["services"]["catalog"]["reflection"] = false.into();
        config["services"]["item"]["reflection"] = true.into();
    });
    assert!(!ok, "{said}");
    assert!(said.contains("services.item.reflection"), "{said}");

    let (ok, said, _) = check("reflection-twice", |config| {
        config["services"]["authority"]["reflection"] = true.into();
    });
    assert!(!ok, "{said}");
    assert!(said.contains("one service"), "{said}");
}
