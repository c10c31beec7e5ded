//! The protocol of the migrating chat (`relay.v1`, `chat.v1`) and the few
//! rules and server pieces that the relay and the nodes share.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
#[cfg(feature = "cli")]
pub mod cli;
pub mod health_check;
pub mod rules;
pub mod runs;
pub mod sealed;
pub mod senders;
pub mod serve;
pub mod tls;
pub mod trust;

/// Generated protobuf and gRPC code.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// `relay.v1`: the entry point that knows who hosts the chat.
    pub mod relay {
        pub use self::v1::*;
        /// The versioned package (generated code refers to it by this path).
        pub mod v1 {
            tonic::include_proto!("relay.v1");
        }
    }
    /// `chat.v1`: the chat server every node carries, and private messages.
    pub mod chat {
        pub use self::v1::*;
        /// The versioned package (generated code refers to it by this path).
        pub mod v1 {
            tonic::include_proto!("chat.v1");
        }
    }
}

/// Encoded file descriptor set of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Metadata key under which a dormant ChatService names the current host.
pub const HOST_ADDRESS_METADATA: &str = "x-chat-host";
/// Metadata key under which a dormant ChatService names the current epoch.
pub const HOST_EPOCH_METADATA: &str = "x-chat-epoch";
/// Metadata key under which a dormant ChatService names the host's node id.
pub const HOST_NODE_METADATA: &str = "x-chat-host-node";
/// Metadata key under which a dormant ChatService names the host's user.
pub const HOST_NAME_METADATA: &str = "x-chat-host-name";
/// Metadata key naming the room: in a Session request, the room the
/// client wants (absent: [`rules::DEFAULT_ROOM`]); in a refusal, the room
/// of the host named.
pub const ROOM_METADATA: &str = "x-chat-room";

/// Response metadata of a relay instance that stands by (`--store etcd`):
/// its UNAVAILABLE means "ask another relay address", not "no host yet".
pub const RELAY_STANDBY_METADATA: &str = "x-relay-standby";
/// Binary metadata key carrying the encoded `relay.v1.HostTermCertificate`
/// of the host named in the other keys.
pub const HOST_TERM_METADATA: &str = "x-chat-term-bin";

/// The host record a refusal carries in its metadata, if complete. Its
/// certificate is still to be verified by whoever acts on it.
pub fn host_from_metadata(status: &tonic::Status) -> Option<pb::relay::HostRecord> {
    use prost::Message;
    let md = status.metadata();
    let text = |key: &str| md.get(key)?.to_str().ok().map(str::to_string);
    let certificate = md
        .get_bin(HOST_TERM_METADATA)
        .and_then(|v| v.to_bytes().ok())
        .and_then(|b| pb::relay::HostTermCertificate::decode(b).ok());
    Some(pb::relay::HostRecord {
        epoch: text(HOST_EPOCH_METADATA)?.parse().ok()?,
        node_id: text(HOST_NODE_METADATA)?,
        address: text(HOST_ADDRESS_METADATA)?,
        name: text(HOST_NAME_METADATA).unwrap_or_default(),
        certificate,
        no_host_reason: String::new(),
        room: text(ROOM_METADATA).unwrap_or_else(|| rules::DEFAULT_ROOM.to_string()),
    })
}

/// Adds `host` to `status` as the metadata a dormant or fencing node
/// returns, so the caller can follow it (a client) or learn it was fenced
/// (a host).
pub fn add_host_metadata(status: &mut tonic::Status, host: &pb::relay::HostRecord) {
    use prost::Message;
    let md = status.metadata_mut();
    for (key, value) in [
        (HOST_ADDRESS_METADATA, host.address.clone()),
        (HOST_EPOCH_METADATA, host.epoch.to_string()),
        (HOST_NODE_METADATA, host.node_id.clone()),
        (ROOM_METADATA, host.room.clone()),
        (HOST_NAME_METADATA, host.name.clone()),
    ] {
        if let Ok(v) = value.parse() {
            md.insert(key, v);
        }
    }
    if let Some(cert) = &host.certificate {
        md.insert_bin(
            HOST_TERM_METADATA,
            tonic::metadata::BinaryMetadataValue::from_bytes(&cert.encode_to_vec()),
        );
    }
}
