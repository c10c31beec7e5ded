//! Why the relay refuses a call, and the gRPC status each reason becomes:
//! the one place in the relay where a [`tonic::Status`] is built.

use crate::registry::RegistryError;
use chat_proto::rules::Quoted;
use thiserror::Error;
use tonic::Status;

/// Why the relay refused a call; nothing changed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Refusal {
    /// The registry's rules refused it.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A malformed request: a field too long, a key or certificate request
    /// that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// A registration not signed by the key it registers, or not fresh.
    #[error("registration not signed by its key: {0}")]
    NotSigned(String),
    /// A host term certificate this relay did not sign.
    #[error("host term certificate of room {room}: {why}")]
    ForeignTerm {
        /// The room claimed (its start).
        room: Quoted,
        /// Why the certificate was refused.
        why: String,
    },
    /// LookupMember of a name nobody holds.
    #[error("no member named {0}")]
    NoSuchMember(Quoted),
    /// The relay could not issue a TLS certificate (a fault of ours).
    #[error("issuing the TLS certificate: {0}")]
    Issuing(String),
    /// `$reset` is disabled: no admin secret was configured.
    #[error("resets are disabled: the relay was started without --admin-secret")]
    ResetsDisabled,
    /// A wrong admin secret.
    #[error("wrong admin secret")]
    WrongSecret,
    /// Too many wrong admin secrets lately.
    #[error("too many wrong admin secrets; try again in {0} s")]
    LockedOut(u64),
    /// Too many new identities (keys the relay never bound) from the
    /// caller's address lately.
    #[error(
        "too many new identities registered from your address: at most {per_minute} a minute; \
         try again in {wait_s} s (a key registered before is always welcome back)"
    )]
    TooManyNewcomers {
        /// The limit.
        per_minute: u32,
        /// Seconds until one more fits.
        wait_s: u64,
    },
    /// This relay instance does not lead (`--store etcd`): another
    /// instance answers, at this address if known.
    #[error("{}", standby_message(.0.as_deref()))]
    Standby(Option<String>),
}

fn standby_message(leader: Option<&str>) -> String {
    match leader {
        Some(leader) if !leader.is_empty() => {
            format!("this relay instance is a standby; the leader is at {leader}")
        }
        _ => "this relay instance is a standby (no leader yet): try another instance".into(),
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        use tonic::Code;
        let code = match &refusal {
            Refusal::Registry(e) => registry_code(e),
            Refusal::BadRequest(_) => Code::InvalidArgument,
            Refusal::NotSigned(_) => Code::Unauthenticated,
            Refusal::ForeignTerm { .. } | Refusal::WrongSecret => Code::PermissionDenied,
            Refusal::NoSuchMember(_) => Code::NotFound,
            Refusal::Issuing(_) => Code::Internal,
            Refusal::ResetsDisabled => Code::FailedPrecondition,
            Refusal::LockedOut(_) | Refusal::TooManyNewcomers { .. } => Code::ResourceExhausted,
            Refusal::Standby(_) => Code::Unavailable,
        };
        let standby = matches!(refusal, Refusal::Standby(_));
        let mut status = Status::new(code, refusal.to_string());
        if standby {
            status.metadata_mut().insert(
                chat_proto::RELAY_STANDBY_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        status
    }
}

impl From<RegistryError> for Status {
    fn from(err: RegistryError) -> Self {
        Refusal::from(err).into()
    }
}

/// The gRPC code of a registry refusal.
fn registry_code(err: &RegistryError) -> tonic::Code {
    use tonic::Code;
    match err {
        RegistryError::InvalidName(_)
        | RegistryError::InvalidAddress
        | RegistryError::InvalidRoom { .. }
        | RegistryError::DuplicateRoom(_)
        | RegistryError::TermOfOtherRoom { .. } => Code::InvalidArgument,
        RegistryError::TooManyRooms(_) | RegistryError::RelayFull(_) => Code::ResourceExhausted,
        RegistryError::NameTaken(_) | RegistryError::NameConfusable { .. } => Code::AlreadyExists,
        RegistryError::UnknownNode(_)
        | RegistryError::UnknownRoom(_)
        | RegistryError::NotInRoom { .. } => Code::NotFound,
        RegistryError::BadToken(_) | RegistryError::NotHost(_) => Code::PermissionDenied,
        RegistryError::StaleEpoch { .. }
        | RegistryError::CannotHost { .. }
        | RegistryError::Overloaded { .. } => Code::FailedPrecondition,
        RegistryError::NoHost | RegistryError::NoHostable(_) => Code::Unavailable,
        RegistryError::TermEnded { .. } => Code::Aborted,
    }
}
