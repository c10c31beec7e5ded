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

Each event is printed as one JSON line on stdout. Messages to send come
from --say (in order, at start) and, with --stdin, from standard input,
one per line. The client exits (status 0) once it has shown --expect
messages, nothing of its own waits for an acknowledgement and its input
is done; after --timeout seconds it gives up (status 2).

Needs: python3 -m pip install grpcio grpcio-tools cryptography
"""

import argparse
import hashlib
import json
import os
import queue
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

REPO_PROTOS = Path(__file__).resolve().parents[2] / "proto" / "proto"
GENESIS = bytes(32)


def load_protos(proto_dir):
    """Generates the stubs from the repository's protos into a temp dir
    (grpcio-tools bundles protoc) and imports them."""
    out = tempfile.mkdtemp(prefix="chat-stubs-")
    from grpc_tools import protoc

    files = ["relay/v1/relay.proto", "chat/v1/chat.proto"]
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        sys.exit(f"protoc failed on the protos in {proto_dir}")
    sys.path.insert(0, out)
    global relay_pb, relay_grpc, chat_pb, chat_grpc
    from relay.v1 import relay_pb2 as relay_pb, relay_pb2_grpc as relay_grpc
    from chat.v1 import chat_pb2 as chat_pb, chat_pb2_grpc as chat_grpc


# --- Signed layouts (proto/src/trust.rs, proto/src/chain.rs) ---------------


def frame(*parts):
    """Each part as its length (8 bytes, big-endian), then its bytes."""
    out = bytearray()
    for p in parts:
        p = p.encode() if isinstance(p, str) else p
        out += struct.pack(">Q", len(p)) + p
    return bytes(out)


def be64(n):
    """An integer part: 8 bytes big-endian (int64 two's complement)."""
    return struct.pack(">q", n) if n < 0 else struct.pack(">Q", n)


def now_ms():
    return int(time.time() * 1000)


def verify(key_bytes, payload, signature):
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key_bytes)).verify(bytes(signature), payload)
        return True
    except (InvalidSignature, ValueError):
        return False


def message_fields(room, m):
    """The signed fields of a message (SendMessage or served ChatMessage)."""
    return [b"chat.v1.ChatMessage", room, m.id, m_from(m), m.text,
            be64(m.sent_at_unix_ms), be64(m.chain_seq), m.chain_prev]


def m_from(m):
    return getattr(m, "from")  # `from` is a Python keyword


def message_digest(room, m):
    """What the sender's next message chains to: it covers the signature."""
    return hashlib.sha256(frame(*message_fields(room, m), m.signature)).digest()


def log_step(previous, seq, epoch, entry_digest):
    return hashlib.sha256(frame(b"chat.v1.LogEntry", previous, be64(seq), be64(epoch),
                                entry_digest)).digest()


def reset_digest(r):
    grant = r.certificate.grant if r.HasField("certificate") else b""
    # min_users is a uint32: 4 bytes big-endian, unlike every other integer.
    return hashlib.sha256(frame(b"chat.v1.RoomReset", be64(r.seq),
                                struct.pack(">I", r.min_users), r.by, grant)).digest()


class Relay:
    """The root of trust: the relay's key, pinned at registration."""

    def __init__(self, key):
        self.key = key

    def host_term(self, cert):
        if not verify(self.key, frame(b"relay.v1.HostTerm", cert.term), cert.signature):
            raise ValueError("host term not signed by the relay")
        return relay_pb.HostTerm.FromString(cert.term)

    def name(self, cert):
        if not verify(self.key, frame(b"relay.v1.NameGrant", cert.grant), cert.signature):
            raise ValueError("name certificate not signed by the relay")
        grant = relay_pb.NameGrant.FromString(cert.grant)
        if grant.expires_at_unix_ms < now_ms():
            raise ValueError("name certificate expired")
        return grant

    def reset(self, cert):
        if not verify(self.key, frame(b"relay.v1.ResetGrant", cert.grant), cert.signature):
            raise ValueError("reset certificate not signed by the relay")
        return relay_pb.ResetGrant.FromString(cert.grant)


def check_message(relay, room, m):
    """A served ChatMessage of `room`: its sender's name certificate is the
    relay's and names `from`, and the key it binds signed the message."""
    grant = relay.name(m.sender)
    if grant.name != m_from(m):
        raise ValueError(f"the certificate names {grant.name!r}")
    if not verify(grant.public_key, frame(*message_fields(room, m)), m.signature):
        raise ValueError("bad signature")
    return grant


def judge(known, m):
    """Where message m stands in its sender's chain (proto/src/chain.rs)."""
    first = m.chain_seq == 1
    if m.chain_seq == 0 or first != (len(m.chain_prev) == 0) or (
            not first and len(m.chain_prev) != 32):
        return "malformed"
    if known is None:
        return "follows"
    seq, digest, sent_at = known
    if first:
        return "new_chain" if m.sent_at_unix_ms > sent_at else "repeat"
    if m.chain_seq <= seq:
        return "repeat"
    if m.chain_seq == seq + 1:
        return "follows" if m.chain_prev == digest else "fork"
    return "gap"


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
        self.events = queue.Queue()  # everything the main loop reacts to
        self.relay_stub = relay_grpc.RelayServiceStub(grpc.insecure_channel(args.relay))
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
            rooms=[relay_pb.RoomClaim(room=self.room)])
        req.signature = self.key.sign(frame(
            b"relay.v1.Register", req.name, req.address, req.public_key,
            be64(req.signed_at_unix_ms), req.certificate_request))
        resp = self.relay_stub.Register(req, timeout=5)
        self.node_id, self.token = resp.node_id, resp.session_token
        self.relay = Relay(resp.relay_public_key)  # pinned from here on
        grant = self.relay.name(resp.name_certificate)
        if grant.name != self.args.name or grant.public_key != self.public:
            sys.exit("the relay's name certificate is for another name or key")
        self.certificate = resp.name_certificate
        emit("registered", name=grant.name, node_id=self.node_id,
             relay_key=resp.relay_public_key.hex(), min_users=resp.min_users,
             migration_interval_ms=resp.migration_interval_ms)
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
            if line.strip():
                self.events.put(("say", line.rstrip("\n")))
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
        channel = grpc.insecure_channel(address)
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

    def done(self):
        return (self.shown >= self.args.expect and not self.pending and self.input_done)

    def run(self):
        self.register()
        if self.args.stdin:
            threading.Thread(target=self.read_stdin, daemon=True).start()
        for text in self.args.say:
            self.say(text)
        deadline = time.time() + self.args.timeout
        while not self.done():
            if time.time() > deadline:
                emit("timeout", shown=self.shown, pending=len(self.pending))
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
            elif kind == "input_done":
                self.input_done = True
            elif kind == "notice":
                emit("notice", message=rest[0])
            elif kind in ("frame", "closed") and self.session and rest[0] == self.session["sid"]:
                if kind == "frame":
                    self.on_frame(rest[1])
                else:
                    self.on_closed(rest[1])
        if self.session:
            self.session["out"].put(chat_pb.ClientFrame(leave=chat_pb.Leave()))
            time.sleep(0.2)
            self.end_session("leaving")
        emit("done", shown=self.shown)
        return 0


class _Sent:
    """A SendMessage seen with its sender's name, as the signed layout wants."""

    def __init__(self, m, sender):
        self.m, self.sender = m, sender

    def __getattr__(self, name):
        return self.sender if name == "from" else getattr(self.m, name)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relay", default="127.0.0.1:5000", help="relay address, host:port (plaintext)")
    p.add_argument("--name", required=True)
    p.add_argument("--room", default="lobby", help="room name, with or without #")
    p.add_argument("--say", action="append", default=[], help="a message to send (repeatable)")
    p.add_argument("--stdin", action="store_true", help="also send each line of standard input")
    p.add_argument("--expect", type=int, default=0, help="exit after showing this many messages")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    p.add_argument("--key", help="file holding this member's Ed25519 key (created if absent)")
    p.add_argument("--protos", default=str(REPO_PROTOS), help="directory of the .proto files")
    args = p.parse_args()
    load_protos(args.protos)
    sys.exit(Client(args).run())


if __name__ == "__main__":
    main()
