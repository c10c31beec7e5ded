//! The RelayService of a replicated relay (`--store etcd`): the leading
//! instance answers every call from its registry; a standby refuses
//! every call with UNAVAILABLE, naming the leader when it knows it, so
//! that nodes move on to another relay address.

use crate::refusal::Refusal;
use crate::service::{Relay, Shared, WatchStream};
use chat_proto::pb::relay::relay_service_server::RelayService;
use chat_proto::pb::relay::*;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// What this instance is now.
#[derive(Clone)]
pub enum Role {
    /// It leads: its registry answers.
    Leader(Arc<Shared>),
    /// It stands by; the leader's address if known.
    Standby(Option<String>),
}

/// The gRPC service over the instance's current role.
pub struct Gate(pub watch::Receiver<Role>);

impl Gate {
    /// The relay answering now, or the standby's refusal.
    fn relay(&self) -> Result<Relay, Status> {
        match &*self.0.borrow() {
            Role::Leader(shared) => Ok(Relay(shared.clone())),
            Role::Standby(leader) => Err(Refusal::Standby(leader.clone()).into()),
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RelayService for Gate {
    async fn register(&self, req: Request<RegisterRequest>) -> Answer<RegisterResponse> {
        self.relay()?.register(req).await
    }

    async fn current_host(&self, req: Request<CurrentHostRequest>) -> Answer<HostRecord> {
        self.relay()?.current_host(req).await
    }

    async fn report_migration(&self, req: Request<ReportMigrationRequest>) -> Answer<HostRecord> {
        self.relay()?.report_migration(req).await
    }

    async fn renew_lease(&self, req: Request<RenewLeaseRequest>) -> Answer<RenewLeaseResponse> {
        self.relay()?.renew_lease(req).await
    }

    async fn authorize_reset(
        &self,
        req: Request<AuthorizeResetRequest>,
    ) -> Answer<AuthorizeResetResponse> {
        self.relay()?.authorize_reset(req).await
    }

    type WatchHostStream = WatchStream;

    async fn watch_host(&self, req: Request<WatchHostRequest>) -> Answer<WatchStream> {
        self.relay()?.watch_host(req).await
    }

    async fn join_room(&self, req: Request<JoinRoomRequest>) -> Answer<JoinRoomResponse> {
        self.relay()?.join_room(req).await
    }

    async fn leave_room(&self, req: Request<LeaveRoomRequest>) -> Answer<LeaveRoomResponse> {
        self.relay()?.leave_room(req).await
    }

    async fn list_rooms(&self, req: Request<ListRoomsRequest>) -> Answer<ListRoomsResponse> {
        self.relay()?.list_rooms(req).await
    }

    async fn unregister(&self, req: Request<UnregisterRequest>) -> Answer<UnregisterResponse> {
        self.relay()?.unregister(req).await
    }

    async fn lookup_member(&self, req: Request<LookupMemberRequest>) -> Answer<MemberRecord> {
        self.relay()?.lookup_member(req).await
    }
}
