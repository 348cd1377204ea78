//! What a server's gRPC reflection describes: the files of the services it advertises and
//! their imports, nothing else of the platform's descriptor set. `file_containing_symbol`
//! answers for any symbol of a registered file, so registering the whole set would describe
//! internal services (customer, item) to whoever asks the edge.

use crate::StartupError;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// A `FileDescriptorSet` with its files left encoded: re-encoding a selection keeps each file's
/// bytes as they were, `google.api.http` options included (prost-types would drop extensions).
#[derive(Clone, PartialEq, Message)]
struct EncodedFileSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    files: Vec<Vec<u8>>,
}

/// The files of `set` (an encoded `FileDescriptorSet`) that define `services` (full names),
/// with everything they import, as an encoded `FileDescriptorSet`. A service not in `set` is
/// an error: a misspelt name would otherwise be advertised and then fail every lookup.
pub fn describing(set: &[u8], services: &[&str]) -> Result<Vec<u8>, StartupError> {
    let encoded = EncodedFileSet::decode(set)?;
    let mut files = BTreeMap::new();
    let mut defining = BTreeMap::new();
    // Each file's name, in the set's order (imports first), which the selection keeps.
    let mut order = Vec::new();
    for bytes in encoded.files {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())?;
        let name = file.name().to_string();
        for service in &file.service {
            let full = match file.package() {
                "" => service.name().to_string(),
                package => format!("{package}.{}", service.name()),
            };
            defining.insert(full, name.clone());
        }
        order.push(name.clone());
        files.insert(name, (bytes, file.dependency));
    }
    let mut wanted: Vec<String> = Vec::new();
    for service in services {
        let file = defining
            .get(*service)
            .ok_or_else(|| format!("reflection: no service {service:?} in the descriptor set"))?;
        wanted.push(file.clone());
    }
    let mut kept = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        if kept.insert(name.clone()) {
            let (_, dependencies) = files
                .get(&name)
                .ok_or_else(|| format!("reflection: {name} is imported but not in the set"))?;
            wanted.extend(dependencies.iter().cloned());
        }
    }
    let selected = EncodedFileSet {
        files: order
            .iter()
            .filter(|name| kept.contains(*name))
            .filter_map(|name| files.remove(name).map(|(bytes, _)| bytes))
            .collect(),
    };
    Ok(selected.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &[u8]) -> Vec<String> {
        prost_types::FileDescriptorSet::decode(set)
            .expect("a descriptor set")
            .file
            .into_iter()
            .map(|file| file.name().to_string())
            .collect()
    }

    #[test]
    fn only_the_advertised_services_files_and_their_imports_are_described() {
        let set = describing(
            platform_proto::FILE_DESCRIPTOR_SET,
            &["catalog.CatalogService"],
        )
        .expect("catalog is in the set");
        let files = names(&set);
        assert!(files.contains(&"platform/catalog.proto".to_string()));
        assert!(files.contains(&"google/api/annotations.proto".to_string()));
        assert!(!files.iter().any(|f| f.ends_with("customer.proto")));
        assert!(!files.iter().any(|f| f.ends_with("item.proto")));
    }

    #[test]
    fn the_selected_files_keep_their_http_annotations() {
        let whole = describing(
            platform_proto::FILE_DESCRIPTOR_SET,
            &["catalog.CatalogService"],
        )
        .expect("catalog is in the set");
        // An extension prost-types does not know survives only if the bytes are the original's.
        let original = EncodedFileSet::decode(platform_proto::FILE_DESCRIPTOR_SET)
            .expect("the platform's set")
            .files;
        let kept = EncodedFileSet::decode(whole.as_slice())
            .expect("the selection")
            .files;
        assert!(kept.iter().all(|file| original.contains(file)));
    }

    #[test]
    fn an_unknown_service_is_refused_by_name() {
        let error = describing(platform_proto::FILE_DESCRIPTOR_SET, &["catalog.Nope"])
            .expect_err("not in the set");
        assert!(error.to_string().contains("catalog.Nope"), "{error}");
    }
}
