//! The platform's gRPC API, generated from `proto/platform/*.proto`.

/// The `FileDescriptorSet` of every platform proto and its imports (including the
/// `google.api.http` annotations): served through gRPC reflection, and embedded in the
/// transcoder's configuration so that a new route is a configuration change.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/platform_descriptor.bin"));

pub mod acl {
    tonic::include_proto!("acl");
}

pub mod authority {
    tonic::include_proto!("authority");
}

pub mod catalog {
    tonic::include_proto!("catalog");
}

pub mod customer {
    tonic::include_proto!("customer");
}

pub mod item {
    tonic::include_proto!("item");
}

pub mod telemetry {
    tonic::include_proto!("telemetry");
}

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}
