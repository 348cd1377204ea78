//! The platform's gRPC API, generated from `proto/platform/*.proto`: the messages, and with the
//! `grpc` feature the services' tonic clients and servers.

/// The `FileDescriptorSet` of every platform proto and its imports (including the
/// `google.api.http` annotations): served through gRPC reflection, and embedded in the
/// transcoder's configuration so that a new route is a configuration change.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/platform_descriptor.bin"));

/// [`FILE_DESCRIPTOR_SET`] with the protos' comments (source info): what the API description
/// (`edgectl openapi`) is rendered from.
pub const DOCUMENTED_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/platform_descriptor_documented.bin"
));

pub mod acl {
    include!(concat!(env!("OUT_DIR"), "/acl.rs"));
}

pub mod authority {
    include!(concat!(env!("OUT_DIR"), "/authority.rs"));
}

pub mod catalog {
    include!(concat!(env!("OUT_DIR"), "/catalog.rs"));
}

pub mod customer {
    include!(concat!(env!("OUT_DIR"), "/customer.rs"));
}

pub mod item {
    include!(concat!(env!("OUT_DIR"), "/item.rs"));
}

pub mod telemetry {
    include!(concat!(env!("OUT_DIR"), "/telemetry.rs"));
}

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}
