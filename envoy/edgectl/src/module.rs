//! Which build of the filters a local Envoy loads, and how each is written in Envoy's
//! configuration: the proxy-wasm module (`edge.wasm`, the product's primary form and what
//! Istio's WasmPlugin delivers) or the native dynamic module (`libedge_native.so`, Envoy ≥ 1.40),
//! both built from the same cores with the same JSON configurations.

use crate::mesh::{chain, paired, ChainFeatures, Filter, Slot};
use serde_json::{json, Value};

/// The proxy-wasm module holding the three filters (`<name>.wasm`, Istio's `<name>-filters`
/// image); each plugin's `root_id` picks its filter.
pub const WASM_MODULE: &str = "edge";
/// The dynamic module's name: Envoy loads `lib<name>.so`.
pub const NATIVE_MODULE: &str = "edge_native";
/// The Envoy release the native module is built for (dynamic-module ABI v0.2.0; `make envoy`
/// installs the same): a gateway running the module must run this Envoy.
pub const NATIVE_ENVOY_VERSION: &str = "1.40.0";
/// The environment variable that picks the build (`wasm`, the default, or `native`).
pub const TARGET_ENV: &str = "EDGE_TARGET";

/// Where the native access log leaves each line for Envoy's access logs (filter state).
pub const LINE_FILTER_STATE_KEY: &str = "edge.access_log";

/// Where Envoy files both builds' own metrics (a Wasm filter's are always `wasmcustom.<name>`).
pub(crate) const METRICS_NAMESPACE: &str = "wasmcustom";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const NATIVE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Wasm,
    Native,
}

impl Target {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "" | "wasm" => Ok(Target::Wasm),
            "native" => Ok(Target::Native),
            other => Err(format!("{TARGET_ENV}={other}: use wasm or native")),
        }
    }

    /// From `EDGE_TARGET` (unset: Wasm).
    pub fn from_env() -> Result<Self, String> {
        Self::parse(&std::env::var(TARGET_ENV).unwrap_or_default())
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Wasm => "wasm",
            Target::Native => "native",
        }
    }

    /// The chain in Istio's order ([`chain`]) as this build runs it: the native build runs the
    /// access log and auth as one Envoy filter ([`paired`]).
    pub fn chain(self, features: ChainFeatures) -> Vec<Slot> {
        match self {
            Target::Wasm => chain(features),
            Target::Native => paired(chain(features)),
        }
    }
}

/// The filters' build and the directory holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterModule {
    pub target: Target,
    pub dir: String,
}

impl FilterModule {
    pub fn new(target: Target, dir: impl Into<String>) -> Self {
        Self {
            target,
            dir: dir.into(),
        }
    }

    /// The module's file.
    pub fn path(&self) -> String {
        match self.target {
            Target::Wasm => format!("{}/{WASM_MODULE}.wasm", self.dir),
            Target::Native => format!("{}/lib{NATIVE_MODULE}.so", self.dir),
        }
    }

    /// The type of the filters' configuration (what ECDS is told to expect).
    pub fn type_url(&self) -> &'static str {
        match self.target {
            Target::Wasm => WASM_TYPE,
            Target::Native => NATIVE_TYPE,
        }
    }

    /// One of our filters as an Envoy HTTP filter, with its JSON configuration.
    pub fn filter(&self, name: &str, config: &Value) -> Value {
        match self.target {
            Target::Wasm => wasm_filter(name, &self.dir, config),
            Target::Native => native_filter(name, &self.path(), &native_config(name, config)),
        }
    }

    /// The connection manager's access logs the build needs: the native access log hands its
    /// lines to one (see [`line_access_log`]); the Wasm one writes to Envoy's log itself.
    pub fn access_logs(&self) -> Vec<Value> {
        match self.target {
            Target::Wasm => Vec::new(),
            Target::Native => vec![line_access_log("/dev/stdout")],
        }
    }
}

/// A filter's configuration as the native build takes it: the Wasm build's, with the access
/// log's lines handed to Envoy's access logs, which write them off the worker thread, instead
/// of written to Envoy's log on it.
pub fn native_config(name: &str, config: &Value) -> Value {
    let mut config = config.clone();
    let access_log = if name == Filter::AccessLog.name() {
        Some(&mut config)
    } else if name == Filter::AccessLogAndAuth.name() {
        config.get_mut(Filter::AccessLog.name())
    } else {
        None
    };
    if let Some(access_log) = access_log.filter(|config| config.get("collector").is_none()) {
        if let Some(fields) = access_log.as_object_mut() {
            fields.insert("filter_state_key".to_string(), json!(LINE_FILTER_STATE_KEY));
        }
    }
    config
}

/// The access log format that prints the native access log's line alone on its line.
pub(crate) fn line_format() -> String {
    format!("%FILTER_STATE({LINE_FILTER_STATE_KEY}:PLAIN)%\n")
}

/// A file access log (Envoy's flush thread writes it, as Istio's own access log) printing the
/// native access log's line, alone, for each request: `-` for one Envoy answered before the
/// filters saw it (a malformed or timed-out request).
fn line_access_log(path: &str) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": { "text_format_source": { "inline_string": line_format() } }
        }
    })
}

fn native_filter(name: &str, module_path: &str, config: &Value) -> Value {
    json!({
        "name": format!("edge.{name}"),
        "typed_config": {
            "@type": NATIVE_TYPE,
            "dynamic_module_config": {
                "module": { "local": { "filename": module_path } },
                // The Wasm build's namespace: dashboards, SLO rules and Istio's stats matcher
                // see the same metric names from either build.
                "metrics_namespace": METRICS_NAMESPACE
            },
            "filter_name": name,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config.to_string()
            }
        }
    })
}

/// The JSON configuration (a string) inside one of our filters' `typed_config`, whichever
/// build it names.
pub fn configuration_mut(typed_config: &mut Value) -> Option<&mut Value> {
    if typed_config.get("filter_config").is_some() {
        typed_config.pointer_mut("/filter_config/value")
    } else {
        typed_config.pointer_mut("/config/configuration/value")
    }
}

/// One of our filters as an Envoy HTTP filter: the module `<wasm_dir>/edge.wasm`, whose root
/// context `name` is the filter, with its JSON configuration, in the V8 runtime. No `vm_id`, as
/// istiod renders a WasmPlugin: the three filters have the same code, so Envoy runs them in one
/// VM per worker.
pub fn wasm_filter(name: &str, wasm_dir: &str, config: &Value) -> Value {
    json!({
        "name": format!("edge.{name}"),
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": name,
                "root_id": name,
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": format!("{wasm_dir}/{WASM_MODULE}.wasm") } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string()
                },
                // A crashed VM is replaced (after a 1 s backoff) instead of failing every
                // later request on the worker, and never fails open.
                "failure_policy": "FAIL_RELOAD"
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_builds_take_the_same_configuration() {
        let config = json!({ "rules": [] });
        let wasm = FilterModule::new(Target::Wasm, "/f").filter("auth", &config);
        let native = FilterModule::new(Target::Native, "/f").filter("auth", &config);
        assert_eq!(wasm["name"], native["name"]);
        assert_eq!(
            wasm["typed_config"]["config"]["configuration"],
            native["typed_config"]["filter_config"]
        );
        assert_eq!(
            native["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"],
            "/f/libedge_native.so"
        );
        for mut filter in [wasm, native] {
            assert_eq!(
                configuration_mut(&mut filter["typed_config"]).cloned(),
                Some(json!(config.to_string()))
            );
        }
        assert_eq!(Target::parse("native"), Ok(Target::Native));
        assert_eq!(Target::parse(""), Ok(Target::Wasm));
        assert!(Target::parse("lua").is_err());
    }

    #[test]
    fn the_native_access_log_hands_its_lines_to_envoys_access_log() {
        let config = json!({ "include_query": false });
        let native = FilterModule::new(Target::Native, "/f");
        let handed = native.filter("access-log", &config);
        let handed: Value = serde_json::from_str(
            configuration_mut(&mut handed.clone()["typed_config"])
                .and_then(|value| value.as_str())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(handed["filter_state_key"], LINE_FILTER_STATE_KEY);
        let logs = native.access_logs();
        assert_eq!(
            logs[0]["typed_config"]["log_format"]["text_format_source"]["inline_string"],
            "%FILTER_STATE(edge.access_log:PLAIN)%\n"
        );
        // A collector takes the lines instead; the Wasm build writes them itself.
        let shipped = native_config("access-log", &json!({ "collector": { "cluster": "c" } }));
        assert!(shipped.get("filter_state_key").is_none());
        assert!(FilterModule::new(Target::Wasm, "/f")
            .access_logs()
            .is_empty());
    }
}
