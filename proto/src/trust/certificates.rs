//! The relay's certificates: host terms, name grants, reset grants and
//! copy permits, each the protobuf encoding of a statement signed by the
//! relay's key over `frame(tag, statement)`, and the checks every member
//! makes of them.

use super::{frame, Keypair, PublicKey, TrustError, MAX_CERTIFICATE_BYTES, RESET_NONCE_BYTES};
use crate::pb::relay::{
    CopyGrant, CopyPermit, HostTerm, HostTermCertificate, NameCertificate, NameGrant,
    ResetCertificate, ResetGrant,
};
use prost::Message;

const HOST_TERM_TAG: &[u8] = b"relay.v1.HostTerm";
const NAME_GRANT_TAG: &[u8] = b"relay.v1.NameGrant";
const RESET_GRANT_TAG: &[u8] = b"relay.v1.ResetGrant";
const COPY_GRANT_TAG: &[u8] = b"relay.v1.CopyGrant";

impl Keypair {
    /// Issues a relay certificate for `term`.
    pub fn issue_host_term(&self, term: &HostTerm) -> HostTermCertificate {
        let term = term.encode_to_vec();
        let signature = self.sign(&frame(&[HOST_TERM_TAG, &term]));
        HostTermCertificate { term, signature }
    }

    /// Issues a relay certificate for `grant`.
    pub fn issue_name(&self, grant: &NameGrant) -> NameCertificate {
        let grant = grant.encode_to_vec();
        let signature = self.sign(&frame(&[NAME_GRANT_TAG, &grant]));
        NameCertificate { grant, signature }
    }

    /// Issues a relay certificate for `grant` (a reset).
    pub fn issue_reset(&self, grant: &ResetGrant) -> ResetCertificate {
        let grant = grant.encode_to_vec();
        let signature = self.sign(&frame(&[RESET_GRANT_TAG, &grant]));
        ResetCertificate { grant, signature }
    }

    /// Issues a relay permit for `grant` (a member holding a term's copies).
    pub fn issue_copy_permit(&self, grant: &CopyGrant) -> CopyPermit {
        let grant = grant.encode_to_vec();
        let signature = self.sign(&frame(&[COPY_GRANT_TAG, &grant]));
        CopyPermit { grant, signature }
    }
}

impl PublicKey {
    /// Verifies a relay-signed host term (this key being the relay's) and
    /// returns what it says.
    pub fn verify_host_term(&self, cert: &HostTermCertificate) -> Result<HostTerm, TrustError> {
        if cert.term.len() > MAX_CERTIFICATE_BYTES {
            return Err(TrustError::Malformed);
        }
        self.verify(&frame(&[HOST_TERM_TAG, &cert.term]), &cert.signature)?;
        HostTerm::decode(cert.term.as_slice()).map_err(|_| TrustError::Malformed)
    }

    /// Verifies a relay-signed name grant (this key being the relay's) that
    /// has not expired at `now_ms`, and returns it.
    pub fn verify_name(
        &self,
        cert: &NameCertificate,
        now_ms: i64,
    ) -> Result<NameGrant, TrustError> {
        if cert.grant.len() > MAX_CERTIFICATE_BYTES {
            return Err(TrustError::Malformed);
        }
        self.verify(&frame(&[NAME_GRANT_TAG, &cert.grant]), &cert.signature)?;
        let grant = NameGrant::decode(cert.grant.as_slice()).map_err(|_| TrustError::Malformed)?;
        if grant.expires_at_unix_ms < now_ms {
            return Err(TrustError::Expired);
        }
        Ok(grant)
    }

    /// Verifies a relay-signed copy permit (this key being the relay's) and
    /// returns what it grants.
    pub fn verify_copy_permit(&self, permit: &CopyPermit) -> Result<CopyGrant, TrustError> {
        if permit.grant.len() > MAX_CERTIFICATE_BYTES {
            return Err(TrustError::Malformed);
        }
        self.verify(&frame(&[COPY_GRANT_TAG, &permit.grant]), &permit.signature)?;
        CopyGrant::decode(permit.grant.as_slice()).map_err(|_| TrustError::Malformed)
    }

    /// Verifies a relay-signed reset grant (this key being the relay's)
    /// and returns it. It does not expire: a reset in the history stays
    /// verifiable (the host checks freshness when it accepts one).
    pub fn verify_reset(&self, cert: &ResetCertificate) -> Result<ResetGrant, TrustError> {
        if cert.grant.len() > MAX_CERTIFICATE_BYTES {
            return Err(TrustError::Malformed);
        }
        self.verify(&frame(&[RESET_GRANT_TAG, &cert.grant]), &cert.signature)?;
        ResetGrant::decode(cert.grant.as_slice()).map_err(|_| TrustError::Malformed)
    }
}

/// A fresh random nonce for a reset grant.
pub fn reset_nonce() -> Vec<u8> {
    rand::random::<[u8; RESET_NONCE_BYTES]>().to_vec()
}

/// Verifies the certificate of a reset of `room` to `min_users` said to be
/// by `by` (what every member and the host check; see
/// `relay.v1.ResetGrant`): signed by the `relay`, for this room, threshold
/// and member, with a nonce of the right length. Returns the grant, whose
/// time and nonce the caller checks against the resets it saw.
pub fn verify_room_reset(
    relay: &PublicKey,
    cert: Option<&ResetCertificate>,
    room: &str,
    min_users: u32,
    by: &str,
) -> Result<ResetGrant, TrustError> {
    let grant = relay.verify_reset(cert.ok_or(TrustError::Malformed)?)?;
    if grant.nonce.len() != RESET_NONCE_BYTES {
        return Err(TrustError::Malformed);
    }
    if grant.room != room {
        return Err(TrustError::Mismatch("room"));
    }
    if grant.by != by {
        return Err(TrustError::Mismatch("member"));
    }
    if grant.min_users != min_users {
        return Err(TrustError::Mismatch("threshold"));
    }
    Ok(grant)
}
