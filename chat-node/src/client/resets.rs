//! Resets: the relay's certificate for a `$reset`, which the user's admin
//! secret buys and the host checks.

use super::Client;
use chat_proto::pb::relay::ResetCertificate;

impl Client {
    /// Asks the relay, with the user's admin secret, for the certificate
    /// of a reset of this room to `min_users` by us; says why not.
    pub(super) async fn reset_certificate(
        &self,
        min_users: u32,
    ) -> Result<ResetCertificate, String> {
        let ctx = &self.node.ctx;
        let secret = self.node.admin_secret.as_deref().unwrap_or_default();
        ctx.relay
            .authorize_reset(&ctx.identity, self.room.room(), min_users, secret)
            .await
            .map_err(|status| format!("reset refused: {}", status.message()))
    }
}
