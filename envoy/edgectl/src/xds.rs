//! The filters' configurations as the ECDS files the local Envoy watches.

use crate::{ChainFeatures, EdgeConfig, FilterModule, Slot};
use serde_json::json;
use std::path::Path;

/// Where `make run`'s Envoy watches the filters' configurations (relative to the repository).
pub const LOCAL_XDS_DIR: &str = ".run/xds";

impl EdgeConfig {
    /// The filters' configurations as ECDS files (`DiscoveryResponse`s with one
    /// `TypedExtensionConfig` each), by file name: what a bootstrap with `xds_dir` watches.
    pub fn xds_files(&self, module: &FilterModule) -> Result<Vec<(String, String)>, String> {
        let filters = self.filter_configs(str::to_string)?;
        Ok(module
            .target
            .chain(ChainFeatures::default())
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Plugin(plugin) => Some(plugin.filter),
                _ => None,
            })
            .map(|filter| {
                let name = filter.name();
                let filter = module.filter(name, &filters.of(filter));
                let response = json!({
                    "resources": [{
                        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                        "name": filter["name"],
                        "typed_config": filter["typed_config"]
                    }]
                });
                (format!("{name}.json"), response.to_string())
            })
            .collect())
    }
}

/// Writes ECDS files so that Envoy sees each change whole: into a temporary file, then renamed
/// over the watched one (Envoy reloads on moves into the watched directory).
pub fn write_xds(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, content) in files {
        let staged = dir.join(format!(".{name}.new"));
        std::fs::write(&staged, content)
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
        std::fs::rename(&staged, dir.join(name))
            .map_err(|e| format!("cannot replace {name} in {}: {e}", dir.display()))?;
    }
    Ok(())
}
