//! The handlers of `relay.v1.RelayService`.

use super::verify::{verify_claim, verify_registration};
use super::watch::{forward_host_changes, WATCH_QUEUE};
use super::Shared;
use crate::newcomers::Source;
use crate::refusal::Refusal;
use crate::registry::Renewal;
use chat_proto::pb::relay::relay_service_server::RelayService;
use chat_proto::pb::relay::*;
use chat_proto::trust;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The gRPC service.
pub struct Relay(pub Arc<Shared>);

/// The stream of a WatchHost call.
pub type WatchStream = ReceiverStream<Result<HostRecord, Status>>;

#[tonic::async_trait]
impl RelayService for Relay {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let source = Source::of(req.remote_addr().map(|a| a.ip()));
        let (reg, tls_request) = verify_registration(&self.0.relay_key, req.into_inner())?;
        let now = Instant::now();
        let newcomer = !self.0.knows_key(&trust::node_id_of(&reg.public_key));
        if newcomer {
            self.0.newcomers.take(source, now).map_err(|wait| {
                tracing::info!(%source, wait_s = wait.seconds(), "a new identity refused");
                Refusal::TooManyNewcomers {
                    per_minute: self.0.config.new_identities_per_minute,
                    wait_s: wait.seconds(),
                }
            })?;
        }
        let now_ms = trust::now_unix_ms();
        let registered = self.0.update(|r| r.register(reg, now, now_ms));
        let (member, records) = registered.inspect_err(|_| {
            if newcomer {
                self.0.newcomers.give_back(source, now);
            }
        })?;
        self.0
            .bind_name(&member.record.name, &member.record.node_id);
        self.0.settled().await?;
        tracing::info!(name = %member.record.name, node = %member.record.node_id,
                       address = %member.record.address, rooms = records.len(), "registered");
        let (tls_certificate, tls_authority) = self.0.node_tls(&member.record, tls_request)?;
        let config = &self.0.config;
        Ok(Response::new(RegisterResponse {
            node_id: member.record.node_id,
            session_token: member.session_token,
            host: records.first().cloned().flatten(),
            hosts: records.into_iter().flatten().collect(),
            min_users: config.min_users,
            migration_interval_ms: millis(config.migration_interval),
            away_grace_ms: millis(config.away_grace),
            lease_ms: millis(config.lease),
            relay_public_key: self.0.relay_key.to_bytes().to_vec(),
            name_certificate: member.record.certificate,
            messages_per_second: config.messages_per_second,
            message_burst: config.message_burst,
            tls_certificate,
            tls_authority,
            history_max_age_ms: config.history_max_age.map_or(0, millis),
            history_max_entries: config.history_max_entries.unwrap_or(0),
        }))
    }

    async fn current_host(
        &self,
        req: Request<CurrentHostRequest>,
    ) -> Result<Response<HostRecord>, Status> {
        let room = req.into_inner().room;
        // Only what is durable: a change under way is waited for.
        self.0.settled().await?;
        let host = self.0.registry().current_host(&room);
        Ok(Response::new(host?))
    }

    async fn report_migration(
        &self,
        req: Request<ReportMigrationRequest>,
    ) -> Result<Response<HostRecord>, Status> {
        let r = req.into_inner();
        let host = self.0.update(|reg| {
            reg.report_migration(
                &r.node_id,
                &r.session_token,
                &r.room,
                r.from_epoch,
                &r.to_node_id,
                Instant::now(),
            )
        });
        match &host {
            Ok(h) => tracing::info!(room = %h.room, epoch = h.epoch, to = %h.name, "host migrated"),
            Err(e) => {
                let room = chat_proto::rules::Quoted::new(&r.room);
                tracing::warn!(%room, error = %e, "migration report refused")
            }
        }
        self.0.settled().await?;
        Ok(Response::new(host?))
    }

    async fn renew_lease(
        &self,
        req: Request<RenewLeaseRequest>,
    ) -> Result<Response<RenewLeaseResponse>, Status> {
        let r = req.into_inner();
        let renewal = Renewal {
            room: r.room,
            epoch: r.epoch,
            successor: r.successor_node_id,
            activated: r.activated,
            no_successor: r.no_successor,
            copy_to: r.copy_to_node_id,
        };
        let grant = self.0.update(|reg| {
            reg.renew_lease(&r.node_id, &r.session_token, &renewal, Instant::now())
        })?;
        self.0.settled().await?;
        Ok(Response::new(RenewLeaseResponse {
            lease_ms: millis(self.0.config.lease),
            unhostable_node_ids: grant.unhostable,
            rooms_hosted: grant.rooms_hosted,
            copy_permit: grant.copy_permit,
        }))
    }

    async fn authorize_reset(
        &self,
        req: Request<AuthorizeResetRequest>,
    ) -> Result<Response<AuthorizeResetResponse>, Status> {
        let r = req.into_inner();
        if r.min_users == 0 {
            return Err(Refusal::BadRequest("min_users must be at least 1".into()).into());
        }
        let certificate = {
            let registry = self.0.registry();
            // Who asks comes first: a caller that is not a member of the
            // room never has its secret compared.
            let grant = registry.reset_grant(
                &r.node_id,
                &r.session_token,
                &r.room,
                r.min_users,
                trust::now_unix_ms(),
            )?;
            self.0.admin.check(&r.admin_secret, Instant::now())?;
            tracing::info!(room = %grant.room, by = %grant.by, min_users = grant.min_users,
                           "reset authorized");
            registry.issue_reset(&grant)
        };
        Ok(Response::new(AuthorizeResetResponse {
            certificate: Some(certificate),
        }))
    }

    type WatchHostStream = WatchStream;

    async fn watch_host(
        &self,
        req: Request<WatchHostRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let req = req.into_inner();
        let (sub, first) = self.0.watch_from_now(&req.node_id, |r| {
            r.watch_started(&req.node_id, &req.session_token)
        })?;
        self.0.settled().await?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(forward_host_changes(self.0.clone(), sub, first, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn join_room(
        &self,
        req: Request<JoinRoomRequest>,
    ) -> Result<Response<JoinRoomResponse>, Status> {
        let req = req.into_inner();
        // No claim: the room "lobby", holding nothing.
        let claim = verify_claim(&self.0.relay_key, &req.claim.unwrap_or_default())?;
        let host = self.0.update_telling(&req.node_id, |r| {
            r.join_room(&req.node_id, &req.session_token, &claim, Instant::now())
        })?;
        self.0.settled().await?;
        tracing::info!(node = %req.node_id, room = %claim.room, "joined a room");
        Ok(Response::new(JoinRoomResponse { host }))
    }

    async fn leave_room(
        &self,
        req: Request<LeaveRoomRequest>,
    ) -> Result<Response<LeaveRoomResponse>, Status> {
        let req = req.into_inner();
        self.0
            .update(|r| r.leave_room(&req.node_id, &req.session_token, &req.room))?;
        self.0.settled().await?;
        tracing::info!(node = %req.node_id, room = %req.room, "left a room");
        Ok(Response::new(LeaveRoomResponse {}))
    }

    async fn list_rooms(
        &self,
        req: Request<ListRoomsRequest>,
    ) -> Result<Response<ListRoomsResponse>, Status> {
        let req = req.into_inner();
        let (rooms, more) = self.0.registry().list_rooms(&req.after, req.limit);
        Ok(Response::new(ListRoomsResponse { rooms, more }))
    }

    async fn unregister(
        &self,
        req: Request<UnregisterRequest>,
    ) -> Result<Response<UnregisterResponse>, Status> {
        let req = req.into_inner();
        self.0
            .update(|r| r.unregister(&req.node_id, &req.session_token))?;
        self.0.settled().await?;
        tracing::info!(node = %req.node_id, "unregistered");
        Ok(Response::new(UnregisterResponse {}))
    }

    async fn lookup_member(
        &self,
        req: Request<LookupMemberRequest>,
    ) -> Result<Response<MemberRecord>, Status> {
        let name = req.into_inner().name;
        let found = self.0.registry().lookup(&name).cloned();
        found
            .map(Response::new)
            .ok_or_else(|| Refusal::NoSuchMember(name.into()).into())
    }
}

/// Milliseconds of `d`, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
