#!/usr/bin/env python3
"""A small third-party client of the migrating chat, in Python.

It does what docs/protocol.md describes, step by step: registers a
client-only member with the relay (its own Ed25519 key), watches the host
records, joins a room, opens a session with the room's host (answering the
Challenge with a signed Hello), sends signed and chained messages until
they are acknowledged, and shows a received message only once the relay's
name certificate of its sender, the sender's signature and the sender's
chain check out. When the host moves (a Migrate frame, a refusal naming
the new host, or the relay's watch) it follows and resumes after the last
message it showed.

Private messages: `$private USER TEXT` (or `/msg USER TEXT`) on standard
input, or --private USER TEXT, goes straight to USER's node
(PeerService.DeliverPrivate) when the relay knows an address for it, and
sealed to USER's key through the room's host when USER is client-only (or
cannot be reached). Being client-only itself, this client receives its
private messages sealed through the host; it shows one only once it opens
with its key and the relay's certificate of the sender, the sender's
signature, the recipient, the time and the id check out.

TLS or plaintext, by the relay address: `https://HOST:PORT` is TLS and
needs --relay-ca (the relay's DATA_DIR/ca.pem); `http://HOST:PORT` is
plaintext; a bare `HOST:PORT` is TLS with --relay-ca and plaintext
without. Over TLS the client registers with a certificate signing request
for a fresh ECDSA P-256 key, and reaches every node with the certificate
the relay issues for it, trusting for nodes the authority the relay names
(as NODE_ID.node.invalid). $CHAT_RELAY and $CHAT_RELAY_CA give the
defaults, as for chat-node.

Each event is printed as one JSON line on stdout. Messages to send come
from --say (in order, at start) and, with --stdin, from standard input,
one per line. The client exits (status 0) once it has shown --expect
messages and --expect-private private messages, nothing of its own waits
for an acknowledgement or a delivery and its input is done; after
--timeout seconds it gives up (status 2).

Needs: python3 -m pip install grpcio grpcio-tools cryptography pynacl
"""

import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import chat_protocol as cp
from chat_protocol import (GENESIS, be64, check_message, frame, judge, log_step, m_from,
                           message_digest, message_fields, now_ms, reset_digest, verify)

relay_pb = relay_grpc = chat_pb = chat_grpc = None  # set by load_protos


def load_protos(proto_dir):
    global relay_pb, relay_grpc, chat_pb, chat_grpc
    cp.load_protos(proto_dir)
    relay_pb, relay_grpc, chat_pb, chat_grpc = cp.relay_pb, cp.relay_grpc, cp.chat_pb, cp.chat_grpc


# --- The client --------------------------------------------------------------


def emit(kind, **fields):
    print(json.dumps({"type": kind, **fields}), flush=True)


class Client:
    def __init__(self, args):
        self.args = args
        self.room = args.room.removeprefix("#") or "lobby"
        self.key = self.load_key(args.key)
        self.public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.seed = self.key.private_bytes(  # opens sealed private messages
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        self.events = queue.Queue()  # everything the main loop reacts to
        self.transport = cp.Transport(args.relay, args.relay_ca, args.relay_tls_name, args.name)
        self.relay_stub = relay_grpc.RelayServiceStub(self.transport.relay_channel())
        # Trust state.
        self.newest = None  # newest relay-signed HostTerm of the room
        self.chains = {}  # sender -> (chain_seq, digest, sent_at)
        self.last_seq = 0  # last log entry shown (or passed over)
        self.log_hash = GENESIS  # log hash at last_seq (None: unknown)
        self.recent = {}  # seq -> log hash
        self.shown = 0
        # Own chain and messages waiting for their ack, in order.
        self.next_chain_seq, self.chain_prev = 1, b""
        self.pending = []
        self.input_done = not args.stdin
        # The session.
        self.sid = 0
        self.session = None  # dict: out queue, call, channel, term, host key, epoch
        self.hint = None  # (address, node_id, why) to try next
        self.retry_at = 0.0
        self.backoff = 0.2
        self.announced_epoch = 0
        self.activated = False
        # Private messages: being looked up or delivered, sealed ones
        # waiting for a session, ids seen (id -> signed at), shown.
        self.privates_out, self.outbox, self.seen_privates = 0, [], {}
        self.privates_shown = 0

    @staticmethod
    def load_key(path):
        if path and os.path.exists(path):
            return Ed25519PrivateKey.from_private_bytes(Path(path).read_bytes())
        key = Ed25519PrivateKey.generate()
        if path:
            Path(path).write_bytes(key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption()))
            os.chmod(path, 0o600)
        return key

    # Step 1: register (client-only), watch, join the room.
    def register(self):
        req = relay_pb.RegisterRequest(
            name=self.args.name, address="", public_key=self.public,
            signed_at_unix_ms=now_ms(), client_only=True,
            rooms=[relay_pb.RoomClaim(room=self.room)],
            certificate_request=self.transport.request)
        req.signature = self.key.sign(frame(
            b"relay.v1.Register", req.name, req.address, req.public_key,
            be64(req.signed_at_unix_ms), req.certificate_request))
        try:
            resp = self.relay_stub.Register(req, timeout=5)
        except grpc.RpcError as e:
            sys.exit(f"cannot register at {self.args.relay}: {e.code().name}: {e.details()}")
        self.node_id, self.token = resp.node_id, resp.session_token
        self.relay = cp.Relay(resp.relay_public_key)  # pinned from here on
        grant = self.relay.name(resp.name_certificate)
        if grant.name != self.args.name or grant.public_key != self.public:
            sys.exit("the relay's name certificate is for another name or key")
        self.certificate = resp.name_certificate
        self.transport.registered(resp)
        emit("registered", name=grant.name, node_id=self.node_id,
             relay_key=resp.relay_public_key.hex(), min_users=resp.min_users,
             migration_interval_ms=resp.migration_interval_ms, tls=self.transport.tls)
        threading.Thread(target=self.watch, daemon=True).start()
        joined = self.relay_stub.JoinRoom(relay_pb.JoinRoomRequest(
            node_id=self.node_id, session_token=self.token,
            claim=relay_pb.RoomClaim(room=self.room)), timeout=5)
        if joined.HasField("host"):
            self.events.put(("record", joined.host))

    def watch(self):
        """The relay's host records: every room's current one, then changes."""
        while True:
            try:
                stream = self.relay_stub.WatchHost(relay_pb.WatchHostRequest(
                    node_id=self.node_id, session_token=self.token))
                for record in stream:
                    self.events.put(("record", record))
            except grpc.RpcError as e:
                self.events.put(("notice", f"watch stream broke ({e.code().name}); again"))
            time.sleep(1)

    def read_stdin(self):
        for line in sys.stdin:
            line = line.rstrip("\n")
            command, _, rest = line.partition(" ")
            if command in ("$private", "/private", "$msg", "/msg"):
                to, _, text = rest.strip().partition(" ")
                self.events.put(("private", to, text))
            elif line.strip():
                self.events.put(("say", line))
        self.events.put(("input_done", None))

    # The host records (watch, JoinRoom): only the relay-signed term counts.
    def on_record(self, record):
        if (record.room or "lobby") != self.room:
            return
        if record.no_host_reason:
            return emit("no_host", reason=record.no_host_reason, epoch=record.epoch)
        try:
            term = self.relay.host_term(record.certificate)
        except ValueError as e:
            return emit("verification_failed", what=f"watch record: {e}")
        if term.room != self.room or (self.newest and term.epoch <= self.newest.epoch):
            return
        self.newest = term
        emit("watch", epoch=term.epoch, name=term.name, address=term.address)
        s = self.session
        if s and s["term"] and s["term"].epoch < term.epoch and s["address"] != term.address:
            self.end_session(f"the relay moved the host to {term.name}")
            self.retry_at = 0

    # Step 2: the session.
    def open_session(self):
        if self.hint:
            address, node_id, why = self.hint
            self.hint = None
        elif self.newest:
            address, node_id, why = self.newest.address, self.newest.node_id, "relay"
        else:
            return
        self.sid += 1
        out = queue.Queue()
        channel = self.transport.node_channel(address, node_id)
        stub = chat_grpc.ChatServiceStub(channel)

        def requests():
            while (f := out.get()) is not None:
                yield f

        # x-chat-room names the room; "lobby" when absent.
        call = stub.Session(requests(), metadata=[("x-chat-room", self.room)])
        self.session = dict(sid=self.sid, out=out, call=call, channel=channel,
                            address=address, node_id=node_id, term=None,
                            host_key=None, epoch=0, opened=time.time())
        emit("connecting", address=address, why=why)
        threading.Thread(target=self.read_frames, args=(self.sid, call), daemon=True).start()

    def read_frames(self, sid, call):
        try:
            for f in call:
                self.events.put(("frame", sid, f))
            self.events.put(("closed", sid, None))
        except grpc.RpcError as e:
            self.events.put(("closed", sid, e))

    def end_session(self, why):
        s, self.session = self.session, None
        if s:
            s["out"].put(None)
            s["call"].cancel()
            s["channel"].close()
            emit("lost", address=s["address"], why=why)
            self.retry_at = time.time() + self.backoff
            self.backoff = min(self.backoff * 2, 2.0)

    def on_closed(self, error):
        why = "the host closed the session"
        if error is not None:
            why = f"{error.code().name}: {error.details()}"
            # A node that is not the host names the host in its refusal.
            md = dict(error.trailing_metadata() or ())
            cert = md.get("x-chat-term-bin")
            if error.code() == grpc.StatusCode.UNAVAILABLE and cert:
                try:
                    term = self.relay.host_term(relay_pb.HostTermCertificate.FromString(cert))
                    newest = self.newest.epoch if self.newest else 0
                    if (term.room == self.room and term.epoch >= newest
                            and term.address != self.session["address"]):
                        self.hint = (term.address, term.node_id, "refusal")
                        self.on_term(term)
                except ValueError as e:
                    emit("verification_failed", what=f"refusal's host term: {e}")
        self.end_session(why)
        if self.hint:
            self.retry_at = 0

    def on_term(self, term):
        if not self.newest or term.epoch > self.newest.epoch:
            self.newest = term

    def on_challenge(self, c):
        s = self.session
        try:
            term = self.relay.host_term(c.term)
        except ValueError as e:
            emit("verification_failed", what=f"challenge: {e}")
            return self.end_session("the host shows no valid term")
        if term.node_id != c.host_node_id or term.room != self.room:
            return self.end_session("the host's term names another node or room")
        if self.newest and term.epoch < self.newest.epoch and self.newest.address != s["address"]:
            self.hint = (self.newest.address, self.newest.node_id, "newer term")
            return self.end_session(f"the host's term {term.epoch} is older than {self.newest.epoch}")
        self.on_term(term)
        s["term"], s["host_key"] = term, term.public_key
        hello = chat_pb.Hello(name=self.args.name, node_id=self.node_id, address="",
                              resume_from_seq=self.last_seq, public_key=self.public,
                              signed_at_unix_ms=now_ms(), certificate=self.certificate)
        hello.signature = self.key.sign(frame(
            b"chat.v1.Hello", hello.name, hello.node_id, hello.address, hello.public_key,
            be64(hello.signed_at_unix_ms), c.nonce, c.host_node_id))
        s["out"].put(chat_pb.ClientFrame(hello=hello))
        for m in self.pending:  # not acknowledged yet: same id, same signature
            s["out"].put(chat_pb.ClientFrame(send=m))
        self.flush_outbox()

    def check_head(self, head, what):
        """A head the host signed: its signature, then our log hash at its seq."""
        s = self.session
        payload = frame(b"chat.v1.LogHead", self.room, be64(head.epoch), be64(head.seq), head.hash)
        if not verify(s["host_key"], payload, head.signature):
            emit("verification_failed", what=f"{what}: head not signed by the host")
            return False
        ours = self.recent.get(head.seq)
        if ours is not None and ours != head.hash:
            emit("verification_failed", what=f"{what}: the log at {head.seq} differs from"
                 " what this client was shown before")
            return False
        return True

    def on_welcome(self, w):
        s = self.session
        s["epoch"] = w.epoch
        self.backoff = 0.2
        if self.check_head(w.head, "welcome") and w.head.seq < self.last_seq:
            emit("notice", message=f"the new host lacks messages {w.head.seq + 1}.."
                 f"{self.last_seq}")
            self.last_seq, self.log_hash = w.head.seq, w.head.hash
        if w.epoch > self.announced_epoch:
            self.announced_epoch = w.epoch
            emit("host", epoch=w.epoch, name=w.host_name, address=s["address"],
                 activated=w.activated, members=w.member_count, min_users=w.min_users)

    def on_message(self, m):
        if m.seq <= self.last_seq:
            return  # shown already (a resumed session starts at last_seq)
        digest = message_digest(self.room, m)
        if m.seq == self.last_seq + 1 and self.log_hash is not None:
            self.log_hash = log_step(self.log_hash, m.seq, m.epoch, digest)
        else:
            self.log_hash = None  # the host skipped entries: unknown from here
        self.last_seq = m.seq
        if self.log_hash is not None:
            self.recent[m.seq] = self.log_hash
            self.recent.pop(m.seq - 1024, None)  # the last 1024 are enough
        sender = m_from(m)
        try:
            check_message(self.relay, self.room, m)
        except ValueError as e:
            return emit("verification_failed", seq=m.seq, sender=sender, what=str(e))
        step = judge(self.chains.get(sender), m)
        if step in ("repeat", "malformed"):
            return emit("verification_failed", seq=m.seq, sender=sender, what=f"chain: {step}")
        if step != "follows":
            emit("verification_failed" if step in ("gap", "fork") else "notice",
                 seq=m.seq, sender=sender, what=f"chain: {step}")
        self.chains[sender] = (m.chain_seq, digest, m.sent_at_unix_ms)
        self.shown += 1
        emit("message", seq=m.seq, epoch=m.epoch, **{"from": sender}, text=m.text,
             sent_at_unix_ms=m.sent_at_unix_ms, chain_seq=m.chain_seq, verified=True)

    def on_reset(self, r):
        if r.seq <= self.last_seq:
            return
        try:
            g = self.relay.reset(r.certificate)
            if (g.room, g.by, g.min_users) != (self.room, r.by, r.min_users):
                raise ValueError("the certificate is for another room, member or threshold")
        except ValueError as e:
            return emit("verification_failed", seq=r.seq, what=f"reset: {e}")
        self.last_seq, self.log_hash = r.seq, log_step(GENESIS, r.seq, r.epoch, reset_digest(r))
        self.recent = {r.seq: self.log_hash}
        emit("reset", seq=r.seq, by=r.by, min_users=r.min_users)

    def on_frame(self, f):
        kind = f.WhichOneof("frame")
        s = self.session
        if kind == "challenge" and s["term"] is None:
            return self.on_challenge(f.challenge)
        if s["term"] is None:
            return self.end_session("the host's first frame is not a Challenge")
        if kind == "welcome":
            self.on_welcome(f.welcome)
        elif kind == "message":
            self.on_message(f.message)
        elif kind == "reset":
            self.on_reset(f.reset)
        elif kind == "head":
            self.check_head(f.head, "head")
        elif kind == "ack":
            self.pending = [m for m in self.pending if m.id != f.ack.id]
            emit("ack", id=f.ack.id, seq=f.ack.seq, epoch=s["epoch"])
        elif kind == "sealed_private":
            self.on_sealed(f.sealed_private)
        elif kind == "rejected" and not f.rejected.id:
            # A sealed private message the host could not pass on.
            emit("private_refused", reason=f.rejected.reason)
        elif kind == "rejected":
            r = f.rejected
            emit("rejected", id=r.id, reason=r.reason, retry_after_ms=r.retry_after_ms)
            if r.retry_after_ms:
                threading.Timer(r.retry_after_ms / 1000, self.events.put,
                                args=(("resend", r.id),)).start()
            else:
                self.pending = [m for m in self.pending if m.id != r.id]
        elif kind == "migrate":
            # Unsigned: only a hint. The next host must show a relay-signed term.
            mg = f.migrate
            emit("migrate", epoch=mg.epoch, address=mg.address)
            self.hint = (mg.address, mg.node_id, "migrate")
            self.end_session("the host moved")
            self.retry_at = 0
        elif kind in ("joined", "left"):
            emit(kind, name=getattr(f, kind).name)
        elif kind == "activated" and not self.activated:
            self.activated = True
            emit("activated")

    # Step 3: sending.
    def say(self, text):
        m = chat_pb.SendMessage(id=uuid.uuid4().hex, text=text, sent_at_unix_ms=now_ms(),
                                chain_seq=self.next_chain_seq, chain_prev=self.chain_prev)
        m.signature = self.key.sign(frame(*message_fields(self.room, _Sent(m, self.args.name))))
        self.next_chain_seq += 1
        self.chain_prev = message_digest(self.room, _Sent(m, self.args.name))
        self.pending.append(m)
        emit("sent", id=m.id, text=text, chain_seq=m.chain_seq)
        if self.session and self.session["term"]:
            self.session["out"].put(chat_pb.ClientFrame(send=m))

    def resend(self, id):
        s = self.session
        for m in self.pending:
            if m.id == id and s and s["term"]:
                s["out"].put(chat_pb.ClientFrame(send=m))

    # Private messages (docs/protocol.md, 9).
    def send_private(self, to, text):
        self.privates_out += 1
        threading.Thread(target=self.deliver_private, args=(to, text), daemon=True).start()

    def deliver_private(self, to, text):
        """On its own thread: looks `to` up at the relay, signs, and delivers
        to its node, or hands the message sealed to the main loop."""
        try:
            if to == self.args.name:
                raise ValueError("you cannot send a private message to yourself")
            cp.check_text(text)
            record = self.relay_stub.LookupMember(
                relay_pb.LookupMemberRequest(name=to), timeout=5)
            self.relay.member(record, to)  # its certificate binds its node id and key
            m = cp.sign_private(self.key, chat_pb.PrivateMessage(
                id=uuid.uuid4().hex, **{"from": self.args.name}, from_node_id=self.node_id,
                to=to, to_node_id=record.node_id, text=text, sent_at_unix_ms=now_ms(),
                sender=self.certificate))
            if record.address and not record.client_only:
                try:
                    with self.transport.node_channel(record.address, record.node_id) as ch:
                        chat_grpc.PeerServiceStub(ch).DeliverPrivate(m, timeout=5)
                    return self.events.put(("private_done", to, text, None))
                except grpc.RpcError as e:
                    if record.reachable:  # it should be reachable: say why not
                        raise ValueError(f"{e.code().name}: {e.details()}") from None
            # Nobody can dial it: the host carries it, sealed to its key.
            self.events.put(("sealed", to, text, cp.seal_private(record.public_key, m)))
        except grpc.RpcError as e:
            self.events.put(("private_done", to, text, f"{e.code().name}: {e.details()}"))
        except ValueError as e:
            self.events.put(("private_done", to, text, str(e)))

    def flush_outbox(self):
        """Hands the sealed private messages to the host, once a session is open."""
        s = self.session
        while self.outbox and s and s["term"]:
            to, text, sealed = self.outbox.pop(0)
            s["out"].put(chat_pb.ClientFrame(sealed_private=sealed))
            emit("private_sent", to=to, text=text, via="sealed")

    def on_sealed(self, sealed):
        """A sealed private message the host passed on: shown only once it
        opens with this member's key and checks out as docs/protocol.md says."""
        now = now_ms()
        try:
            m = cp.open_sealed(self.seed, self.node_id, sealed)
            cp.check_private(self.relay, self.args.name, self.node_id, m, now)
            # Older ids cannot come back: they would be stale.
            self.seen_privates = {i: t for i, t in self.seen_privates.items()
                                  if t >= now - cp.MAX_CLOCK_SKEW_MS}
            if m.id in self.seen_privates:
                raise ValueError(f"id {m.id} seen before (a replay)")
            self.seen_privates[m.id] = m.sent_at_unix_ms
        except ValueError as e:
            return emit("verification_failed", what=f"sealed private message: {e}")
        self.privates_shown += 1
        emit("private", **{"from": m_from(m)}, text=m.text, sent_at_unix_ms=m.sent_at_unix_ms,
             verified=True)

    def done(self):
        return (self.shown >= self.args.expect and not self.pending and self.input_done
                and self.privates_shown >= self.args.expect_private
                and not self.privates_out and not self.outbox)

    def run(self):
        self.register()
        if self.args.stdin:
            threading.Thread(target=self.read_stdin, daemon=True).start()
        for text in self.args.say:
            self.say(text)
        for to, text in self.args.private:
            self.send_private(to, text)
        deadline = time.time() + self.args.timeout
        while not self.done():
            if time.time() > deadline:
                emit("timeout", shown=self.shown, pending=len(self.pending))
                self.leave()
                return 2
            s = self.session
            if s is None and time.time() >= self.retry_at:
                self.open_session()
            elif s and s["term"] is None and time.time() - s["opened"] > 3:
                self.end_session("no Challenge within 3 s")
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            kind, *rest = event
            if kind == "record":
                self.on_record(rest[0])
            elif kind == "say":
                self.say(rest[0])
            elif kind == "resend":
                self.resend(rest[0])
            elif kind == "private":
                self.send_private(*rest)
            elif kind == "private_done":
                self.privates_out -= 1
                to, text, error = rest
                if error is None:
                    emit("private_sent", to=to, text=text, via="direct")
                else:
                    emit("private_failed", to=to, text=text, why=error)
            elif kind == "sealed":
                self.privates_out -= 1
                self.outbox.append(tuple(rest))
                self.flush_outbox()
            elif kind == "input_done":
                self.input_done = True
            elif kind == "notice":
                emit("notice", message=rest[0])
            elif kind in ("frame", "closed") and self.session and rest[0] == self.session["sid"]:
                if kind == "frame":
                    self.on_frame(rest[1])
                else:
                    self.on_closed(rest[1])
        self.leave()
        emit("done", shown=self.shown, privates=self.privates_shown)
        return 0

    def leave(self):
        """Leaves the room, and the chat: the relay frees the name at once."""
        if self.session:
            self.session["out"].put(chat_pb.ClientFrame(leave=chat_pb.Leave()))
            time.sleep(0.2)
            self.end_session("leaving")
        try:
            self.relay_stub.Unregister(relay_pb.UnregisterRequest(
                node_id=self.node_id, session_token=self.token), timeout=2)
        except grpc.RpcError as e:
            emit("notice", message=f"could not unregister: {e.code().name}")


class _Sent:
    """A SendMessage seen with its sender's name, as the signed layout wants."""

    def __init__(self, m, sender):
        self.m, self.sender = m, sender

    def __getattr__(self, name):
        return self.sender if name == "from" else getattr(self.m, name)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relay", default=os.environ.get("CHAT_RELAY", "127.0.0.1:5000"),
                   help="https://HOST:PORT (TLS), http://HOST:PORT (plaintext) or HOST:PORT"
                   " (TLS with --relay-ca, else plaintext); default $CHAT_RELAY or 127.0.0.1:5000")
    p.add_argument("--relay-ca", default=os.environ.get("CHAT_RELAY_CA"),
                   help="the relay's certificate authority (its DATA_DIR/ca.pem); default"
                   " $CHAT_RELAY_CA")
    p.add_argument("--relay-tls-name", help="the name the relay's certificate must carry"
                   " (default: the host of --relay)")
    p.add_argument("--name", required=True)
    p.add_argument("--room", default="lobby", help="room name, with or without #")
    p.add_argument("--say", action="append", default=[], help="a message to send (repeatable)")
    p.add_argument("--private", nargs=2, action="append", default=[], metavar=("USER", "TEXT"),
                   help="a private message to send (repeatable)")
    p.add_argument("--stdin", action="store_true", help="also send each line of standard input"
                   " ($private USER TEXT or /msg USER TEXT: a private message)")
    p.add_argument("--expect", type=int, default=0, help="exit after showing this many messages")
    p.add_argument("--expect-private", type=int, default=0,
                   help="... and this many private messages")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    p.add_argument("--key", help="file holding this member's Ed25519 key (created if absent)")
    p.add_argument("--protos", default=str(cp.REPO_PROTOS), help="directory of the .proto files")
    args = p.parse_args()
    load_protos(args.protos)
    sys.exit(Client(args).run())


if __name__ == "__main__":
    main()
