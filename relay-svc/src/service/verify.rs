//! Checks of what nodes send before the registry sees it: sizes, proofs
//! of key possession, and that every certificate shown was signed by this
//! relay.

use crate::refusal::Refusal;
use crate::registry::{Claim, Registration, MAX_ROOMS_PER_MEMBER};
use chat_proto::pb::relay::{HostTermCertificate, RegisterRequest, RoomClaim};
use chat_proto::tls;
use chat_proto::trust::{self, PublicKey};

/// Longest accepted session token, in bytes.
const MAX_TOKEN_BYTES: usize = 128;

/// Checks what a registrant sent: sizes, the proof that it holds its key,
/// that every certificate it shows was signed by this relay, and that its
/// TLS certificate request (if any) is for an ECDSA P-256 key. The request
/// is bound to the registrant's identity by the Register signature, which
/// covers it: the certificate issued for it names the registrant's node.
/// Returns the
/// registration (its rooms: `rooms`, else "lobby" claimed with the legacy
/// fields) and the checked request.
pub(super) fn verify_registration(
    relay: &PublicKey,
    req: RegisterRequest,
) -> Result<(Registration, Option<tls::NodeRequest>), Refusal> {
    if req.session_token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::BadRequest("session token is too long".into()));
    }
    if req.certificate_request.len() > tls::MAX_CSR_BYTES {
        return Err(Refusal::BadRequest(format!(
            "certificate_request is longer than {} bytes",
            tls::MAX_CSR_BYTES
        )));
    }
    if req.rooms.len() > MAX_ROOMS_PER_MEMBER {
        return Err(Refusal::BadRequest(format!(
            "at most {MAX_ROOMS_PER_MEMBER} rooms may be claimed"
        )));
    }
    let key = PublicKey::from_bytes(&req.public_key)
        .map_err(|_| Refusal::BadRequest("public_key must be a 32-byte Ed25519 key".into()))?;
    let now = trust::now_unix_ms();
    // Fields first: the payload below must not be built from huge ones.
    crate::registry::check_fields(&req.name, &req.address, req.client_only)?;
    key.verify(&trust::register_payload(&req), &req.signature)
        .and_then(|()| trust::check_fresh(req.signed_at_unix_ms, now))
        .map_err(|e| Refusal::NotSigned(e.to_string()))?;
    let rooms = claims_of(relay, &req)?;
    // An old name certificate counts only for this name and this key.
    let name_claimed_at = req
        .name_certificate
        .and_then(|cert| relay.verify_name(&cert, now).ok())
        .filter(|g| g.name == req.name && g.public_key == req.public_key)
        .map(|g| g.issued_at_unix_ms);
    let tls_request = (!req.certificate_request.is_empty())
        .then(|| tls::check_certificate_request(&req.certificate_request))
        .transpose()
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let registration = Registration {
        name: req.name,
        address: req.address,
        session_token: req.session_token,
        public_key: req.public_key,
        name_claimed_at,
        client_only: req.client_only,
        rooms,
    };
    Ok((registration, tls_request))
}

/// The rooms a registrant claims, certificates checked: `rooms`, or
/// "lobby" with the fields of a node written before rooms.
fn claims_of(relay: &PublicKey, req: &RegisterRequest) -> Result<Vec<Claim>, Refusal> {
    if req.rooms.is_empty() {
        let lobby = RoomClaim {
            room: String::new(),
            latest_term: req.latest_term.clone(),
            hosting: req.hosting,
            replica_head: req.replica_head,
            replica_term: 0,
        };
        return Ok(vec![verify_claim(relay, &lobby)?]);
    }
    req.rooms.iter().map(|c| verify_claim(relay, c)).collect()
}

/// A room claim whose host term certificate (if any) this relay signed.
pub(super) fn verify_claim(relay: &PublicKey, claim: &RoomClaim) -> Result<Claim, Refusal> {
    let latest_term = claim
        .latest_term
        .as_ref()
        .map(|cert: &HostTermCertificate| relay.verify_host_term(cert))
        .transpose()
        .map_err(|e| Refusal::ForeignTerm {
            room: (&claim.room).into(),
            why: e.to_string(),
        })?;
    Ok(Claim {
        room: claim.room.clone(),
        latest_term,
        hosting: claim.hosting,
        replica_head: claim.replica_head,
        replica_term: claim.replica_term,
    })
}
