//! Unit tests of the registry, with injected instants. Helpers here; the
//! tests by topic in `tests/`.

use super::*;

mod hosting;
mod members;
mod placement;
mod resets;
mod rooms;
mod sweep;
mod terms;

const LEASE: Duration = Duration::from_millis(500);
const WALL_MS: i64 = 1_000_000;
const LOBBY: &str = "lobby";

/// One key per name, the same every time (a user with a key file).
fn key_of(name: &str) -> Keypair {
    let mut secret = [7u8; 32];
    for (i, b) in name.bytes().enumerate().take(32) {
        secret[i] = b;
    }
    Keypair::from_secret(secret)
}

fn id_of(name: &str) -> String {
    trust::node_id_of(&key_of(name).public_key())
}

/// A registration of `name` at port `port`, in "lobby" (no rooms listed).
fn reg(name: &str, port: u16) -> Registration {
    Registration {
        name: name.to_string(),
        address: format!("127.0.0.1:{port}"),
        public_key: key_of(name).public_key(),
        ..Registration::default()
    }
}

/// A client-only registration: no address.
fn client_only(name: &str) -> Registration {
    Registration {
        address: String::new(),
        client_only: true,
        ..reg(name, 0)
    }
}

/// `reg` claiming exactly `rooms`, holding nothing of them.
fn reg_in(name: &str, port: u16, rooms: &[&str]) -> Registration {
    Registration {
        rooms: rooms.iter().map(|r| claim(r)).collect(),
        ..reg(name, port)
    }
}

/// A claim on `room`, holding nothing.
fn claim(room: &str) -> Claim {
    Claim {
        room: room.to_string(),
        ..Claim::default()
    }
}

/// `reg` claiming "lobby" with a term (and whether it hosts it) and a
/// replica head.
fn with_lobby(reg: Registration, term: Option<HostTerm>, hosting: bool, head: u64) -> Registration {
    Registration {
        rooms: vec![Claim {
            room: LOBBY.into(),
            latest_term: term,
            hosting,
            replica_head: head,
            replica_term: 0,
        }],
        ..reg
    }
}

fn registry() -> Registry {
    Registry::new(LEASE, Keypair::generate())
}

/// A host term of "lobby" this registry's relay signed, as a node would
/// hold it.
fn term(epoch: u64, name: &str) -> HostTerm {
    room_term(LOBBY, epoch, name)
}

fn room_term(room: &str, epoch: u64, name: &str) -> HostTerm {
    HostTerm {
        room: room.into(),
        epoch,
        node_id: id_of(name),
        ..Default::default()
    }
}

/// `term` as issued to a member at port `port` (a term is honoured only
/// at the address it was issued for).
fn at(term: HostTerm, port: u16) -> HostTerm {
    HostTerm {
        address: format!("127.0.0.1:{port}"),
        ..term
    }
}

/// The statement of a record's certificate.
fn term_of(record: &HostRecord) -> HostTerm {
    use prost::Message;
    let cert = record.certificate.as_ref().expect("a certified record");
    HostTerm::decode(cert.term.as_slice()).expect("a host term")
}

impl Registry {
    fn register_now(
        &mut self,
        reg: Registration,
        now: Instant,
    ) -> Result<(Member, Option<HostRecord>), RegistryError> {
        let (member, records) = self.register(reg, now, WALL_MS)?;
        Ok((member, records.into_iter().next().flatten()))
    }

    /// The record of "lobby".
    fn host(&self) -> Option<HostRecord> {
        self.record(LOBBY)
    }

    /// A lease check; the first record it changed.
    fn check_one(&mut self, now: Instant) -> Option<HostRecord> {
        self.check_lease(now).into_iter().next()
    }

    /// Registers `reg` as a running node does: it opens its watch stream,
    /// and the relay checks its address (`reached` or not). Then the lease
    /// check that makes a first host.
    fn join_with(&mut self, reg: Registration, reached: bool, now: Instant) -> Member {
        let member = self.enter(reg, reached, now);
        self.check_lease(now);
        member
    }

    /// As [`Registry::join_with`], without the lease check.
    fn enter(&mut self, reg: Registration, reached: bool, now: Instant) -> Member {
        let (member, _) = self.register_now(reg, now).unwrap();
        self.watch_started(&member.record.node_id, &member.session_token)
            .unwrap();
        self.check_all(reached, now);
        member
    }

    /// A running node the relay reaches.
    fn join(&mut self, name: &str, port: u16, now: Instant) -> Member {
        self.join_with(reg(name, port), true, now)
    }

    /// Answers a check of `m`'s address with `reached`.
    fn check_member(&mut self, m: &Member, reached: bool, now: Instant) {
        let check = ReachCheck {
            node_id: m.record.node_id.clone(),
            address: m.record.address.clone(),
        };
        self.record_check(&check, reached, now);
    }

    /// Answers every due address check with `reached`.
    fn check_all(&mut self, reached: bool, now: Instant) {
        for check in self.due_checks(now) {
            self.record_check(&check, reached, now);
        }
    }

    /// `m` renews its lease of `room` at `epoch`, naming `successor`.
    fn renew_in(
        &mut self,
        m: &Member,
        room: &str,
        epoch: u64,
        successor: &str,
        now: Instant,
    ) -> Result<LeaseGrant, RegistryError> {
        let renewal = Renewal {
            room: room.to_string(),
            epoch,
            successor: successor.to_string(),
            ..Renewal::default()
        };
        self.renew_lease(&m.record.node_id, &m.session_token, &renewal, now)
    }

    /// A renewal of "lobby" by `caller`; the unhostable members.
    fn renew_lease_lobby(
        &mut self,
        caller: &str,
        token: &str,
        epoch: u64,
        successor: &str,
        now: Instant,
    ) -> Result<Vec<String>, RegistryError> {
        let renewal = Renewal {
            room: LOBBY.to_string(),
            epoch,
            successor: successor.to_string(),
            ..Renewal::default()
        };
        self.renew_lease(caller, token, &renewal, now)
            .map(|g| g.unhostable)
    }

    /// `m` hands `room` over from `epoch` to `to`.
    fn migrate(
        &mut self,
        m: &Member,
        room: &str,
        epoch: u64,
        to: &str,
        now: Instant,
    ) -> Result<HostRecord, RegistryError> {
        self.report_migration(&m.record.node_id, &m.session_token, room, epoch, to, now)
    }

    /// The member named `name`, as stored.
    fn member(&self, name: &str) -> &Member {
        &self.members[&id_of(name)]
    }
}
